"""`argus task ...`: submit training tasks, list them, follow their logs, cancel them."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from argus.cli.api_client import ApiClient, ApiError
from argus.cli.common import fail, print_json, user_call, user_client

task_app = typer.Typer(
    help="Training tasks (Ray jobs): submit a spec, list, show, logs, cancel "
    "(your token in ARGUS_TOKEN).",
    no_args_is_help=True,
)

FINISHED = ("SUCCEEDED", "FAILED", "CANCELED")
FOLLOW_POLL_S = 2.0


@task_app.command("submit")
def task_submit(
    file: Annotated[
        typer.FileText, typer.Option("-f", "--file", help="The task spec (YAML); - for stdin.")
    ],
    follow: Annotated[
        bool, typer.Option("--follow", help="Stream the task's log until it finishes.")
    ] = False,
) -> None:
    """Submit a training task; with --follow, stream its log and exit with its outcome."""
    text = file.read()
    task = user_call(
        lambda c: c.request(
            "POST",
            "/api/v2/tasks",
            content=text.encode(),
            headers={"Content-Type": "application/yaml"},
        )
    )
    if not follow:
        print_json(task)
        return
    typer.echo(f"task {task['task_id']} ({task['name']}) is {task['state']}", err=True)
    _follow(task["task_id"])


@task_app.command("ls")
def task_ls(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only tasks in this state (repeatable).")
    ] = None,
) -> None:
    """List your tasks, newest first."""
    params: dict[str, Any] = {"limit": 500}
    if state:
        params["state"] = [s.upper() for s in state]
    body = user_call(lambda c: c.request("GET", "/api/v2/tasks", params=params))
    typer.echo(f"{'TASK ID':<22} {'STATE':<10} {'WORKLOAD':<8} {'CREATED':<20} NAME")
    for t in body["items"]:
        created = t["created_at"][:19].replace("T", " ")
        typer.echo(
            f"{t['task_id']:<22} {t['state']:<10} {t['workload']:<8} {created:<20} {t['name']}"
        )


@task_app.command("get")
def task_get(task_id: str) -> None:
    """Show a task: state, resolved spec, events, Ray job status."""
    print_json(user_call(lambda c: c.request("GET", f"/api/v2/tasks/{task_id}")))


@task_app.command("logs")
def task_logs(
    task_id: str,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Stream until it ends.")] = False,
    tail: Annotated[int, typer.Option("--tail", help="Lines to show first.")] = 200,
) -> None:
    """Print the tail of a task's log; -f streams it until the task finishes."""
    if follow:
        _follow(task_id, tail)
        return
    client = user_client()
    try:
        for chunk in client.stream_text(f"/api/v2/tasks/{task_id}/logs", {"tail": tail}):
            sys.stdout.write(chunk)
    except ApiError as e:
        fail(e.message)
    finally:
        client.close()


@task_app.command("cancel")
def task_cancel(task_id: str) -> None:
    """Cancel a task: a queued one at once, a running one by stopping its Ray job."""
    print_json(user_call(lambda c: c.request("POST", f"/api/v2/tasks/{task_id}:cancel")))


def _follow(task_id: str, tail: int = 200) -> None:
    """Stream the log until the task finishes; exit 0 on SUCCEEDED, 1 otherwise."""
    client = user_client()
    try:
        params = {"tail": tail, "follow": True}
        for chunk in client.stream_text(f"/api/v2/tasks/{task_id}/logs", params):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        task = _wait_finished(client, task_id)
    except ApiError as e:
        fail(e.message)
    finally:
        client.close()
    state = task["state"]
    reason = f": {task['error_summary']}" if task.get("error_summary") else ""
    typer.echo(f"task {task_id} {state}{reason}", err=True)
    raise typer.Exit(0 if state == "SUCCEEDED" else 1)


def _wait_finished(client: ApiClient, task_id: str) -> dict[str, Any]:
    while True:
        task: dict[str, Any] = client.request("GET", f"/api/v2/tasks/{task_id}")["task"]
        if task["state"] in FINISHED:
            return task
        time.sleep(FOLLOW_POLL_S)
