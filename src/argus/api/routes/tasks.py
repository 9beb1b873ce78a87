"""`/api/v2/tasks`: training tasks as Ray jobs. Validate, write desired state, return.

The scheduler (part of the reconciler's tick) submits, follows and stops the Ray
jobs; logs are read from the task's folder on the shared storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from argus.api.bodies import in_thread, read_yaml_body
from argus.api.deps import AppContext, Caller, Ctx
from argus.demo import DEMO_TASK_YAML
from argus.store import tasks as store
from argus.store.schema import Task
from argus.training import control
from argus.training.states import TaskState
from argus.views import event_view, task_spec_yaml, task_view

router = APIRouter(prefix="/api/v2", tags=["tasks"])

FOLLOW_POLL_S = 0.5
EXAMPLE_TASK: dict[str, Any] = {
    "task_id": "tsk_3f9a2c41d0b7e655",
    "name": "sft-smol",
    "user_id": "alice",
    "workload": "sft",
    "state": "RUNNING",
    "error_summary": None,
    "ray_job_id": "argus-tsk_3f9a2c41d0b7e655",
    "nnodes": 1,
    "gpus_per_node": 1,
    "cpus_per_node": 1,
    "cancel_requested": False,
    "checkpoint": {"model_source": "$HOME/tasks/tsk_3f9a2c41d0b7e655/checkpoint", "ready": False},
    "created_at": "2026-11-28T12:00:05+00:00",
    "updated_at": "2026-11-28T12:00:09+00:00",
    "started_at": "2026-11-28T12:00:09+00:00",
    "finished_at": None,
}


def _example(status: int, body: Any) -> dict[int | str, dict[str, Any]]:
    return {status: {"content": {"application/json": {"example": body}}}}


def _view(ctx: AppContext, task: Task) -> dict[str, Any]:
    return task_view(task, control.checkpoint_ready(ctx.tasks, task))


@router.post(
    "/tasks",
    status_code=202,
    summary="Submit a training task from a YAML spec",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}, "example": DEMO_TASK_YAML}
            },
        }
    },
    responses=_example(202, {**EXAMPLE_TASK, "state": "QUEUED", "started_at": None}),
)
async def post_task(request: Request, ctx: Ctx, caller: Caller) -> JSONResponse:
    text = await read_yaml_body(request, control.MAX_SPEC_BYTES)
    task = await in_thread(control.submit_task, ctx.tasks, caller, text, ctx.clock())
    return JSONResponse(_view(ctx, task), status_code=202)


@router.get(
    "/tasks",
    summary="List your tasks (the admin sees everyone's), newest first",
    responses=_example(200, {"items": [EXAMPLE_TASK], "total": 1}),
)
def list_tasks(
    ctx: Ctx,
    caller: Caller,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    state: list[TaskState] | None = Query(None, description="Only tasks in these states."),
) -> dict[str, Any]:
    with ctx.db.read() as s:
        items, total = store.list_tasks(
            s,
            user_id=None if caller.is_admin else caller.user_id,
            states=state,
            limit=limit,
            offset=offset,
        )
        views = [_view(ctx, t) for t in items]
    return {"items": views, "total": total}


@router.get(
    "/tasks/{task_id}",
    summary="A task: state, resolved spec, events, Ray job status",
    responses=_example(
        200,
        {
            "task": EXAMPLE_TASK,
            "resolved_spec_yaml": "name: sft-smol\nworkload: sft\n",
            "events": [
                {
                    "id": 1,
                    "time": "2026-11-28T12:00:05+00:00",
                    "event_type": "CREATED",
                    "payload": {"to": "QUEUED"},
                }
            ],
            "ray_job": {
                "job_id": "argus-tsk_3f9a2c41d0b7e655",
                "status": "RUNNING",
                "message": "Job is currently running.",
                "exit_code": None,
                "start_time_ms": 1795867209000,
                "end_time_ms": None,
            },
        },
    ),
)
def get_task(task_id: str, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    task, events = control.get_with_events(ctx.tasks, caller, task_id)
    return {
        "task": _view(ctx, task),
        "resolved_spec_yaml": task_spec_yaml(task),
        "events": [event_view(e) for e in events],
        "ray_job": ctx.status.job_status(task.ray_job_id),
    }


@router.post(
    "/tasks/{task_id}:cancel",
    status_code=202,
    summary="Cancel a task: a queued one at once, a running one by stopping its Ray job",
    responses={
        **_example(202, {**EXAMPLE_TASK, "cancel_requested": True}),
        409: {"description": "The task has already finished."},
    },
)
def cancel_task(task_id: str, ctx: Ctx, caller: Caller) -> JSONResponse:
    task = control.cancel(ctx.tasks, caller, task_id, ctx.clock())
    return JSONResponse(_view(ctx, task), status_code=202)


@router.get(
    "/tasks/{task_id}/logs",
    summary="The tail of a task's log; with follow=true, streamed until the task ends",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {"example": "argus-sft: step 3/20 loss 2.34\n"}}}},
)
async def task_logs(
    task_id: str,
    ctx: Ctx,
    caller: Caller,
    tail: int = Query(control.DEFAULT_TAIL_LINES, ge=0, le=100_000, description="Lines to show."),
    follow: bool = Query(False, description="Keep the response open and stream new lines."),
) -> StreamingResponse:
    task = await in_thread(control.get_owned, ctx.tasks, caller, task_id)
    path = control.log_path(ctx.tasks, task)
    head, offset = await in_thread(control.read_tail, path, tail)
    if not follow:
        return StreamingResponse(iter([head]), media_type="text/plain; charset=utf-8")
    return StreamingResponse(
        _follow(ctx, task, head, offset), media_type="text/plain; charset=utf-8"
    )


async def _follow(ctx: AppContext, task: Task, head: bytes, offset: int) -> AsyncIterator[bytes]:
    """Yield the tail, then what the log gains, until the task has finished and is read."""
    yield head
    while True:
        finished = await in_thread(_finished, ctx, task.task_id)
        path = control.log_path(ctx.tasks, task)
        while chunk := await in_thread(control.read_from, path, offset):
            offset += len(chunk)
            yield chunk
        if finished:
            return
        await asyncio.sleep(FOLLOW_POLL_S)


def _finished(ctx: AppContext, task_id: str) -> bool:
    with ctx.db.read() as s:
        task = store.get_task(s, task_id)
        return task is None or TaskState(task.state).is_finished
