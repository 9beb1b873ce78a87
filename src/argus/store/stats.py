"""Counts for `/metrics`: read at scrape time, in the caller's read transaction."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from argus.store.schema import ServeEvent, ServeModel, Task
from argus.store.states import ServeState, TaskState


def count_models_by_state(session: Session) -> dict[ServeState, int]:
    """How many models are in each state; every state is present, 0 when none."""
    counts = dict.fromkeys(ServeState, 0)
    rows = session.execute(select(ServeModel.state, func.count()).group_by(ServeModel.state)).all()
    for state, n in rows:
        counts[ServeState(state)] = int(n)
    return counts


def count_waiting(session: Session, event_type: str) -> int:
    """QUEUED models whose newest event is `event_type` (PENDING_RESOURCES: waiting for room)."""
    newest = (
        select(ServeEvent.model_key, func.max(ServeEvent.id).label("id"))
        .join(ServeModel, ServeModel.model_key == ServeEvent.model_key)
        .where(ServeModel.state == ServeState.QUEUED.value)
        .group_by(ServeEvent.model_key)
        .subquery()
    )
    n = session.scalar(
        select(func.count())
        .select_from(ServeEvent)
        .join(newest, ServeEvent.id == newest.c.id)
        .where(ServeEvent.event_type == event_type)
    )
    return int(n or 0)


def count_tasks_by_state(session: Session) -> dict[TaskState, int]:
    """How many training tasks are in each state; every state is present, 0 when none."""
    counts = dict.fromkeys(TaskState, 0)
    for state, n in session.execute(select(Task.state, func.count()).group_by(Task.state)):
        counts[TaskState(state)] = int(n)
    return counts
