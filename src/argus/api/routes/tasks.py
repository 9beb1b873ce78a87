"""`/api/v2/tasks`: training tasks as Ray jobs. Validate, write desired state, return.

The scheduler (part of the reconciler's tick) submits, follows and stops the Ray
jobs; logs are read from the task's folder on the shared storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from argus.api.bodies import in_thread, read_yaml_body
from argus.api.deps import AppContext, Caller, Ctx
from argus.api.errors import error_responses
from argus.demo import DEMO_TASK_YAML
from argus.store.schema import Task
from argus.store.states import TaskState
from argus.training import control
from argus.views import event_page, event_view, task_view

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


MAX_QUERY_OFFSET = 1_000_000_000
TASK_PATH = Path(max_length=64, description="The task's id, as the list returns it.")


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
    responses={
        **_example(202, {**EXAMPLE_TASK, "state": "QUEUED", "started_at": None}),
        **error_responses(400, 401, 403, 404, 409, 413, 415, 422),
    },
)
async def post_task(request: Request, ctx: Ctx, caller: Caller) -> JSONResponse:
    text = await read_yaml_body(request, control.MAX_SPEC_BYTES)
    task = await in_thread(control.submit_task, ctx.tasks, caller, text, ctx.clock())
    return JSONResponse(_view(ctx, task), status_code=202)


@router.get(
    "/tasks",
    summary="List your tasks (the admin sees everyone's), newest first",
    responses={
        **_example(200, {"items": [EXAMPLE_TASK], "total": 1}),
        **error_responses(400, 401, 413, 422),
    },
)
def list_tasks(
    ctx: Ctx,
    caller: Caller,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_QUERY_OFFSET),
    state: list[TaskState] | None = Query(None, description="Only tasks in these states."),
) -> dict[str, Any]:
    items, total = control.list_tasks(ctx.tasks, caller, states=state, limit=limit, offset=offset)
    return {"items": [_view(ctx, t) for t in items], "total": total}


@router.get(
    "/tasks/{task_id}",
    summary="A task: state, resolved spec, its newest events, Ray job status",
    responses=error_responses(400, 401, 404, 413, 422)
    | _example(
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
            "events_total": 1,
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
def get_task(ctx: Ctx, caller: Caller, task_id: str = TASK_PATH) -> dict[str, Any]:
    task, events, total = control.events(ctx.tasks, caller, task_id)
    return {
        "task": _view(ctx, task),
        "resolved_spec_yaml": control.task_spec_yaml(task),
        "events": [event_view(e) for e in events],
        "events_total": total,
        "ray_job": ctx.status.job_status(task.ray_job_id),
    }


@router.get(
    "/tasks/{task_id}/events",
    summary="A task's events, newest first; page back with before=<the last id you saw>",
    responses=error_responses(400, 401, 404, 413, 422)
    | _example(
        200,
        {
            "items": [
                {
                    "id": 4,
                    "time": "2026-11-28T12:00:09+00:00",
                    "event_type": "STARTED",
                    "payload": {"from": "SUBMITTED", "to": "RUNNING"},
                }
            ],
            "total": 4,
            "next_before": None,
        },
    ),
)
def task_events(
    ctx: Ctx,
    caller: Caller,
    task_id: str = TASK_PATH,
    limit: int = Query(control.EVENTS_PAGE, ge=1, le=500),
    before: int | None = Query(None, ge=1, le=2**62, description="Events older than this id."),
) -> dict[str, Any]:
    _, events, total = control.events(ctx.tasks, caller, task_id, limit, before)
    return event_page(events, total, limit)


@router.post(
    "/tasks/{task_id}:cancel",
    status_code=202,
    summary="Cancel a task: a queued one at once, a running one by stopping its Ray job",
    responses={
        **_example(202, {**EXAMPLE_TASK, "cancel_requested": True}),
        **error_responses(400, 401, 404, 409, 413, 422),
    },
)
def cancel_task(ctx: Ctx, caller: Caller, task_id: str = TASK_PATH) -> JSONResponse:
    task = control.cancel(ctx.tasks, caller, task_id, ctx.clock())
    return JSONResponse(_view(ctx, task), status_code=202)


@router.get(
    "/tasks/{task_id}/logs",
    summary="The tail of a task's log; with follow=true, streamed until the task ends",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {"example": "argus-sft: step 3/20 loss 2.34\n"}}},
        **error_responses(400, 401, 404, 413, 422),
    },
)
async def task_logs(
    ctx: Ctx,
    caller: Caller,
    task_id: str = TASK_PATH,
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
        finished = await in_thread(control.is_finished, ctx.tasks, task.task_id)
        path = control.log_path(ctx.tasks, task)
        while chunk := await in_thread(control.read_from, path, offset):
            offset += len(chunk)
            yield chunk
        if finished:
            return
        await asyncio.sleep(FOLLOW_POLL_S)
