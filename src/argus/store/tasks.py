"""Training tasks and their events. A state change and its event share one transaction.

The caller opens the transaction (`Database.write()`); these functions never commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from argus.ids import new_task_id, ray_job_id_for
from argus.store.schema import Task, TaskEvent
from argus.training.states import (
    ACTIVE_STATES,
    FINISHED_STATES,
    TaskState,
    TaskTrigger,
    next_task_state,
)


def get_task(session: Session, task_id: str, user_id: str | None = None) -> Task | None:
    """The task, or None; with user_id, None also for another user's task."""
    task = session.get(Task, task_id)
    if task is None or (user_id is not None and task.user_id != user_id):
        return None
    return task


def list_tasks(
    session: Session,
    user_id: str | None = None,
    states: Iterable[TaskState] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Task], int]:
    """A page of tasks, newest first, and the total that matched."""
    q = select(Task)
    if user_id is not None:
        q = q.where(Task.user_id == user_id)
    if states is not None:
        q = q.where(Task.state.in_([s.value for s in states]))
    total = int(session.scalar(select(func.count()).select_from(q.subquery())) or 0)
    rows = session.scalars(
        q.order_by(Task.created_at.desc(), Task.task_id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def list_active_tasks(session: Session) -> list[Task]:
    """Every task the scheduler must act on, oldest first (first in, first out)."""
    return list(
        session.scalars(
            select(Task)
            .where(Task.state.in_([s.value for s in ACTIVE_STATES]))
            .order_by(Task.created_at, Task.task_id)
        )
    )


def count_active_tasks(session: Session, user_id: str) -> int:
    q = select(func.count()).where(
        Task.user_id == user_id, Task.state.in_([s.value for s in ACTIVE_STATES])
    )
    return int(session.scalar(q) or 0)


def count_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(Task.state, func.count()).group_by(Task.state))
    return {str(state): int(n) for state, n in rows}


def create_task(
    session: Session,
    *,
    user_id: str,
    spec_yaml: str,
    resolved_spec: dict[str, Any],
    now: datetime,
    task_id: str | None = None,
) -> Task:
    task_id = task_id or new_task_id()
    task = Task(
        task_id=task_id,
        user_id=user_id,
        name=resolved_spec["name"],
        workload=resolved_spec["workload"],
        spec_yaml=spec_yaml,
        resolved_spec=resolved_spec,
        state=next_task_state(None, TaskTrigger.CREATED).value,
        ray_job_id=ray_job_id_for(task_id),
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    session.flush()
    append_task_event(session, task_id, TaskTrigger.CREATED.value, now, {"to": task.state})
    session.flush()
    return task


def append_task_event(
    session: Session,
    task_id: str,
    event_type: str,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> TaskEvent:
    event = TaskEvent(task_id=task_id, time=now, event_type=event_type, payload=payload or {})
    session.add(event)
    return event


def list_task_events(session: Session, task_id: str) -> list[TaskEvent]:
    return list(
        session.scalars(
            select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)
        )
    )


def last_event_types(session: Session, task_ids: list[str]) -> dict[str, str]:
    if not task_ids:
        return {}
    latest = (
        select(TaskEvent.task_id, func.max(TaskEvent.id).label("id"))
        .where(TaskEvent.task_id.in_(task_ids))
        .group_by(TaskEvent.task_id)
        .subquery()
    )
    rows = session.execute(
        select(TaskEvent.task_id, TaskEvent.event_type).join(latest, TaskEvent.id == latest.c.id)
    )
    return {k: t for k, t in rows}


def set_task_state(
    session: Session,
    task: Task,
    trigger: TaskTrigger,
    now: datetime,
    *,
    error_summary: str | None = None,
    payload: dict[str, Any] | None = None,
) -> TaskState:
    """Apply `trigger` to the task and append its event, in the caller's transaction."""
    old = TaskState(task.state)
    new = next_task_state(old, trigger)
    task.state = new.value
    task.updated_at = now
    if new is TaskState.FAILED:
        task.error_summary = error_summary
    if trigger is TaskTrigger.STARTED:
        task.started_at = now
    if trigger is TaskTrigger.CANCEL_REQUESTED:
        task.cancel_requested_at = now
    if new in FINISHED_STATES and task.finished_at is None:
        task.finished_at = now
    body: dict[str, Any] = {"from": old.value, "to": new.value, **(payload or {})}
    if error_summary:
        body["error"] = error_summary
    append_task_event(session, task.task_id, trigger.value, now, body)
    session.flush()
    return new
