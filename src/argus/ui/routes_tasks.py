"""Task pages: the list, the spec editor, a task's page with its live log, and cancel.

Every change goes through `argus.training.control`, the functions the API calls, so
the pages refuse what the API refuses with the same messages. The log is read from
the task's folder on the shared storage as the API reads it: a task's page asks
`/ui/tasks/<id>/log?offset=N` for what the file gained, until the task has finished.
A task that SUCCEEDED with a checkpoint opens the serving editor prefilled
(`/ui/serving/new?from_task=<id>`), for its owner only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from argus.api.deps import AppContext, Ctx
from argus.demo import DEMO_TASK_YAML
from argus.errors import ArgusError, NotFound
from argus.store.schema import Task
from argus.store.states import TaskState
from argus.training import control
from argus.ui.pages import PageError, posted_spec, render, spec_editor
from argus.ui.session import Form, Session, UiSession, flash_redirect
from argus.views import event_view, task_view

router = APIRouter()

LIST_LIMIT = 200
LOG_TAIL_LINES = control.DEFAULT_TAIL_LINES
LOG_CHUNK_BYTES = 256 * 1024  # per poll; a page that gets a full chunk asks again at once


def _not_found(session: UiSession, task_id: str) -> PageError:
    return PageError(404, "Task not found", f"There is no task {task_id!r} of yours.", session)


def _owned(ctx: AppContext, session: UiSession, task_id: str) -> Task:
    try:
        return control.get_owned(ctx.tasks, session.principal, task_id)
    except NotFound:
        raise _not_found(session, task_id) from None


def _is_active(state: str) -> bool:
    return not TaskState(state).is_finished


@router.get("/tasks")
def task_list(request: Request, ctx: Ctx, session: Session) -> HTMLResponse:
    items, total = control.list_tasks(ctx.tasks, session.principal, limit=LIST_LIMIT)
    tasks = [task_view(t) for t in items]
    context = {"section": "tasks", "tasks": tasks, "total": total}
    refresh = any(_is_active(t["state"]) for t in tasks)
    return render(request, "tasks_list.html", context, session=session, refresh=refresh)


def _editor(
    request: Request,
    session: UiSession,
    text: str,
    *,
    error: ArgusError | None = None,
    again: Task | None = None,
) -> HTMLResponse:
    return spec_editor(
        request, session, "tasks_new.html", text, error=error, section="tasks", again=again
    )


@router.get("/tasks/new")
def new_task(
    request: Request, ctx: Ctx, session: Session, again: str | None = Query(None)
) -> HTMLResponse:
    if again:
        task = _owned(ctx, session, again)
        return _editor(request, session, task.spec_yaml, again=task)
    return _editor(request, session, DEMO_TASK_YAML)


@router.post("/tasks/new")
def submit(request: Request, ctx: Ctx, session: Session, form: Form) -> Response:
    text, too_large = posted_spec(form, control.MAX_SPEC_BYTES)
    if too_large is not None:
        return _editor(request, session, text, error=too_large)
    try:
        task = control.submit_task(ctx.tasks, session.principal, text, ctx.clock())
    except ArgusError as e:
        return _editor(request, session, text, error=e)
    return flash_redirect(
        f"/ui/tasks/{task.task_id}",
        f"Submitted {task.name} ({task.task_id}): it is {task.state}; this page follows it.",
    )


@router.get("/tasks/{task_id}")
def task_page(request: Request, ctx: Ctx, session: Session, task_id: str) -> HTMLResponse:
    try:
        task, events, total = control.events(ctx.tasks, session.principal, task_id)
    except NotFound:
        raise _not_found(session, task_id) from None
    ready = control.checkpoint_ready(ctx.tasks, task)
    head, size = control.read_tail(control.log_path(ctx.tasks, task), LOG_TAIL_LINES)
    shown = whole_chars(head)
    active = _is_active(task.state)
    context: dict[str, Any] = {
        "section": "tasks",
        "task": task_view(task, ready),
        "active": active,
        "can_serve": (
            task.state == TaskState.SUCCEEDED.value and ready and task.user_id == session.user_id
        ),
        "spec_yaml": control.task_spec_yaml(task),
        "events": [event_view(e) for e in events],
        "events_total": total,
        "job": ctx.status.job_status(task.ray_job_id),
        "log_text": shown.decode("utf-8", "replace"),
        "log_offset": size - (len(head) - len(shown)),
        "log_tail_lines": LOG_TAIL_LINES,
    }
    return render(request, "task.html", context, session=session, refresh=active)


@router.get("/tasks/{task_id}/log")
def task_log(
    ctx: Ctx,
    session: Session,
    task_id: str,
    offset: int = Query(0, ge=0, le=control.MAX_LOG_OFFSET),
) -> JSONResponse:
    """What the log gained from `offset`; `done` once the task has finished and all is read."""
    try:
        task = control.get_owned(ctx.tasks, session.principal, task_id)
    except NotFound:
        return JSONResponse({"error": "no such task of yours"}, status_code=404)
    # The state first, then the file: a finished task's driver has written all it will.
    finished = TaskState(task.state).is_finished
    data = control.read_from(control.log_path(ctx.tasks, task), offset, LOG_CHUNK_BYTES)
    done = finished and len(data) < LOG_CHUNK_BYTES
    if not done:
        data = whole_chars(data)  # the rest of a character comes with the next poll
    body = {"text": data.decode("utf-8", "replace"), "offset": offset + len(data), "done": done}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/tasks/{task_id}/cancel")
def cancel(ctx: Ctx, session: Session, form: Form, task_id: str) -> Response:
    task = _owned(ctx, session, task_id)
    back = "/ui/tasks" if form.get("back") == "list" else f"/ui/tasks/{task.task_id}"
    try:
        after = control.cancel(ctx.tasks, session.principal, task.task_id, ctx.clock())
    except ArgusError as e:
        return flash_redirect(back, f"Could not cancel {task.name}: {e.message}", "error")
    if after.state == TaskState.CANCELED.value:
        return flash_redirect(back, f"Canceled {after.name} ({after.task_id}).")
    return flash_redirect(
        back, f"Canceling {after.name} ({after.task_id}): its Ray job is being stopped."
    )


def whole_chars(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut at its end (a log read while it is written)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        need = 1 if byte < 0x80 or byte >= 0xF8 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return data if need <= back else data[:-back]
    return data
