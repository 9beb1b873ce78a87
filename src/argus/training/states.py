"""A training task's states and the one function that moves between them.

QUEUED → SUBMITTED → RUNNING → SUCCEEDED | FAILED | CANCELED (the states are the
store's, `argus.store.states.TaskState`); every transition appends one event, and a few
events (PENDING_RESOURCES, PENDING_QUOTA, CANCEL_REQUESTED) record what happened without
a transition. `task_transition()` is how every change is written.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from argus.store import tasks as store
from argus.store.schema import Task
from argus.store.states import TaskState


class TaskTrigger(StrEnum):
    """What happened; also the event_type written for it."""

    CREATED = "CREATED"
    PENDING_RESOURCES = "PENDING_RESOURCES"  # does not fit the cluster yet
    PENDING_QUOTA = "PENDING_QUOTA"  # its owner's GPU quota is taken by other work
    SUBMITTED = "SUBMITTED"  # the Ray job was submitted (or found, after a restart)
    STARTED = "STARTED"  # Ray reports the job RUNNING
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"  # the owner asked; the job is being stopped
    CANCELED = "CANCELED"


class InvalidTaskTransition(Exception):
    def __init__(self, state: TaskState | None, trigger: TaskTrigger) -> None:
        super().__init__(f"{trigger.value} is not allowed in state {state}")
        self.state = state
        self.trigger = trigger


T = TaskState
_WITH_JOB = {T.SUBMITTED, T.RUNNING}

# trigger -> (from states, to state); None as "to" means "stay where you are".
_TABLE: dict[TaskTrigger, tuple[set[TaskState], TaskState | None]] = {
    TaskTrigger.PENDING_RESOURCES: ({T.QUEUED}, None),
    TaskTrigger.PENDING_QUOTA: ({T.QUEUED}, None),
    TaskTrigger.SUBMITTED: ({T.QUEUED}, T.SUBMITTED),
    TaskTrigger.STARTED: ({T.SUBMITTED}, T.RUNNING),
    TaskTrigger.SUCCEEDED: (_WITH_JOB, T.SUCCEEDED),
    TaskTrigger.FAILED: ({T.QUEUED, *_WITH_JOB}, T.FAILED),
    TaskTrigger.CANCEL_REQUESTED: (_WITH_JOB, None),
    TaskTrigger.CANCELED: ({T.QUEUED, *_WITH_JOB}, T.CANCELED),
}


def next_task_state(state: TaskState | None, trigger: TaskTrigger) -> TaskState:
    """The state after `trigger` happens in `state`; raises InvalidTaskTransition."""
    if trigger is TaskTrigger.CREATED:
        if state is not None:
            raise InvalidTaskTransition(state, trigger)
        return T.QUEUED
    if state is None:
        raise InvalidTaskTransition(state, trigger)
    allowed, to = _TABLE[trigger]
    if state not in allowed:
        raise InvalidTaskTransition(state, trigger)
    return state if to is None else to


def task_transition(
    session: Session,
    task: Task,
    trigger: TaskTrigger,
    now: datetime,
    *,
    error_summary: str | None = None,
    payload: dict[str, Any] | None = None,
) -> TaskState:
    """Apply `trigger` to the task and append its event; raises InvalidTaskTransition."""
    new = next_task_state(TaskState(task.state), trigger)
    store.write_task_transition(
        session,
        task,
        new,
        trigger.value,
        now,
        error_summary=error_summary,
        started=trigger is TaskTrigger.STARTED,
        cancel_requested=trigger is TaskTrigger.CANCEL_REQUESTED,
        payload=payload,
    )
    return new
