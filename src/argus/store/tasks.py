"""Training tasks and their events: rows in, rows out, in the caller's transaction.

The caller opens the transaction (`Database.write()`); these functions never commit.
Which state follows which is `argus.training.states`' to decide; `write_task_transition`
stores the outcome and its event together.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from argus.ids import ray_job_id_for
from argus.store.schema import Task, TaskEvent
from argus.store.states import (
    ACTIVE_TASK_STATES,
    FINISHED_TASK_STATES,
    TASK_HOLDING_STATES,
    TaskState,
    transition_payload,
)

MAX_OFFSET = 1_000_000_000


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
        q.order_by(Task.created_at.desc(), Task.task_id.desc())
        .limit(limit)
        .offset(min(offset, MAX_OFFSET))
    )
    return list(rows), total


def list_active_tasks(session: Session) -> list[Task]:
    """Every task the scheduler must act on, oldest first (first in, first out)."""
    return list(
        session.scalars(
            select(Task)
            .where(Task.state.in_([s.value for s in ACTIVE_TASK_STATES]))
            .order_by(Task.created_at, Task.task_id)
        )
    )


def count_active_tasks(session: Session, user_id: str) -> int:
    q = select(func.count()).where(
        Task.user_id == user_id, Task.state.in_([s.value for s in ACTIVE_TASK_STATES])
    )
    return int(session.scalar(q) or 0)


def gpus_held(session: Session, user_id: str) -> int:
    """GPUs the user's tasks hold while their Ray job exists (quotas count these)."""
    q = select(func.coalesce(func.sum(Task.gpus), 0)).where(
        Task.user_id == user_id, Task.state.in_([s.value for s in TASK_HOLDING_STATES])
    )
    return int(session.scalar(q) or 0)


def list_user_tasks(session: Session, user_id: str, states: frozenset[TaskState]) -> list[Task]:
    return list(
        session.scalars(
            select(Task)
            .where(Task.user_id == user_id, Task.state.in_([s.value for s in states]))
            .order_by(Task.created_at, Task.task_id)
        )
    )


def insert_task(
    session: Session,
    *,
    task_id: str,
    user_id: str,
    name: str,
    workload: str,
    spec_yaml: str,
    resolved_spec: dict[str, Any],
    gpus: int,
    state: TaskState,
    event_type: str,
    now: datetime,
) -> Task:
    task = Task(
        task_id=task_id,
        user_id=user_id,
        name=name,
        workload=workload,
        spec_yaml=spec_yaml,
        resolved_spec=resolved_spec,
        gpus=gpus,
        state=state.value,
        ray_job_id=ray_job_id_for(task_id),
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    session.flush()
    append_task_event(session, task_id, event_type, now, {"to": task.state})
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


def list_task_events(
    session: Session, task_id: str, limit: int | None = None, before: int | None = None
) -> tuple[list[TaskEvent], int]:
    """A task's events, newest first (at most `limit`, older than id `before`), and the total."""
    where = [TaskEvent.task_id == task_id]
    total = int(session.scalar(select(func.count()).where(*where)) or 0)
    if before is not None:
        where.append(TaskEvent.id < before)
    q = select(TaskEvent).where(*where).order_by(TaskEvent.id.desc())
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q)), total


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


def write_task_transition(
    session: Session,
    task: Task,
    to: TaskState,
    event_type: str,
    now: datetime,
    *,
    error_summary: str | None = None,
    started: bool = False,
    cancel_requested: bool = False,
    payload: dict[str, Any] | None = None,
) -> None:
    """Move the task to `to` and append its event, in the caller's transaction."""
    old = task.state
    task.state = to.value
    task.updated_at = now
    if to is TaskState.FAILED:
        task.error_summary = error_summary
    if started:
        task.started_at = now
    if cancel_requested:
        task.cancel_requested_at = now
    if to in FINISHED_TASK_STATES and task.finished_at is None:
        task.finished_at = now
    body = transition_payload(old, to.value, payload, error_summary)
    append_task_event(session, task.task_id, event_type, now, body)
    session.flush()
