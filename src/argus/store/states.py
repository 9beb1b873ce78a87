"""The states a stored model or task can be in: the store owns these enums.

Which moves between them are allowed is the domain's to decide (`serving.states`,
`training.states`); the store keeps the values and the groups its queries use.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ServeState(StrEnum):
    QUEUED = "QUEUED"  # accepted, waiting to be applied (e.g. for resources)
    DEPLOYING = "DEPLOYING"  # applied to Serve, waiting for it to report healthy
    RUNNING = "RUNNING"  # serving requests
    FAILED = "FAILED"  # taken out of the app; error_summary says why
    SUSPENDED = "SUSPENDED"  # its owner is disabled: out of the app, kept, back on enable
    DELETING = "DELETING"  # delete asked for, waiting for Serve to drop it
    DELETED = "DELETED"  # gone from Serve, kept as a record

    @property
    def is_live(self) -> bool:
        """Holds its (user, suffix): everything but DELETED."""
        return self is not ServeState.DELETED

    @property
    def is_settled(self) -> bool:
        """Nothing will change without a new request from a user or the admin."""
        return self in SETTLED_STATES


SETTLED_STATES = frozenset(
    {ServeState.RUNNING, ServeState.FAILED, ServeState.SUSPENDED, ServeState.DELETED}
)
# Models that hold (or are about to hold) their GPUs: what a user's quota counts.
HOLDING_STATES = frozenset(
    {ServeState.QUEUED, ServeState.DEPLOYING, ServeState.RUNNING, ServeState.DELETING}
)


class TaskState(StrEnum):
    QUEUED = "QUEUED"  # accepted, waiting for resources (or for the user's earlier tasks)
    SUBMITTED = "SUBMITTED"  # a Ray job exists; its driver waits to be placed
    RUNNING = "RUNNING"  # the Ray job's driver runs
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # error_summary says why
    CANCELED = "CANCELED"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_TASK_STATES


FINISHED_TASK_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED})
ACTIVE_TASK_STATES = frozenset({TaskState.QUEUED, TaskState.SUBMITTED, TaskState.RUNNING})
# Tasks whose Ray job holds (or is about to hold) its GPUs.
TASK_HOLDING_STATES = frozenset({TaskState.SUBMITTED, TaskState.RUNNING})


def transition_payload(
    old: str, new: str, payload: dict[str, Any] | None, error_summary: str | None
) -> dict[str, Any]:
    """The body of a state change's event, the same for models and tasks: from, to, what
    the caller adds, and the error when there is one."""
    body: dict[str, Any] = {"from": old, "to": new, **(payload or {})}
    if error_summary:
        body["error"] = error_summary
    return body
