"""A training task's states and the one function that moves between them.

QUEUED → SUBMITTED → RUNNING → SUCCEEDED | FAILED | CANCELED; every transition
appends one event, and a few events (PENDING_RESOURCES, CANCEL_REQUESTED) record
what happened without a transition.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    QUEUED = "QUEUED"  # accepted, waiting for resources (or for the user's earlier tasks)
    SUBMITTED = "SUBMITTED"  # a Ray job exists; its driver waits to be placed
    RUNNING = "RUNNING"  # the Ray job's driver runs
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # error_summary says why
    CANCELED = "CANCELED"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_STATES

    @property
    def holds_job(self) -> bool:
        """A Ray job exists for the task and may hold resources."""
        return self in (TaskState.SUBMITTED, TaskState.RUNNING)


FINISHED_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED})
ACTIVE_STATES = frozenset({TaskState.QUEUED, TaskState.SUBMITTED, TaskState.RUNNING})


class TaskTrigger(StrEnum):
    """What happened; also the event_type written for it."""

    CREATED = "CREATED"
    PENDING_RESOURCES = "PENDING_RESOURCES"  # does not fit the cluster yet
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
