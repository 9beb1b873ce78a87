"""What happens to a served model, and the one function that moves between states (design D3).

The states themselves are the store's (`argus.store.states.ServeState`). `transition()`
is how every change is written: the next state from `next_state()`, and its event, in
the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from argus.store import serving as store
from argus.store.schema import ServeModel
from argus.store.states import ServeState


class Trigger(StrEnum):
    """What happened; also the event_type written for the transition."""

    CREATED = "CREATED"  # a new spec was posted
    SPEC_UPDATED = "SPEC_UPDATED"  # a spec for a live suffix was posted again
    SCALED = "SCALED"  # num_replicas changed through PATCH
    PENDING_RESOURCES = "PENDING_RESOURCES"  # does not fit the cluster yet
    APPLIED = "APPLIED"  # the reconciler put this generation into the Serve app
    SCALE_APPLIED = "SCALE_APPLIED"  # a new replica count was applied; the model keeps serving
    READY = "READY"  # Serve reports every target replica healthy
    DEGRADED = "DEGRADED"  # fewer ready replicas than targeted, still serving
    FAILED = "FAILED"  # Serve reports the deployment failed
    DELETE_REQUESTED = "DELETE_REQUESTED"  # the owner asked for deletion
    REMOVED = "REMOVED"  # Serve no longer runs it
    REDEPLOY = "REDEPLOY"  # the cluster lost it (e.g. Ray restarted); deploy it again
    SUSPENDED = "SUSPENDED"  # its owner was disabled: taken out of Serve, kept
    RESUMED = "RESUMED"  # its owner was enabled again: deploy it again
    CLUSTER_LOST = "CLUSTER_LOST"  # the Ray cluster stopped answering; state kept as last seen
    CLUSTER_BACK = "CLUSTER_BACK"  # the Ray cluster answers again
    ACCESS_CHANGED = "ACCESS_CHANGED"  # who may call it changed (PATCH); nothing restarts
    AUTOSCALED = "AUTOSCALED"  # Serve added (load) or took away (idle) a replica in its range
    NO_ROOM = "NO_ROOM"  # at zero replicas, and its next replica fits no node: requests get 503


class InvalidTransition(Exception):
    def __init__(self, state: ServeState | None, trigger: Trigger) -> None:
        super().__init__(f"{trigger.value} is not allowed in state {state}")
        self.state = state
        self.trigger = trigger


S = ServeState
_ALIVE = {S.QUEUED, S.DEPLOYING, S.RUNNING, S.FAILED}
_IN_SERVE = {S.DEPLOYING, S.RUNNING}

# (from states) x trigger -> to state; None as "to" means "stay where you are".
_TABLE: dict[Trigger, tuple[set[ServeState], ServeState | None]] = {
    Trigger.SPEC_UPDATED: (_ALIVE, None),
    Trigger.SCALED: (_ALIVE, None),
    Trigger.PENDING_RESOURCES: ({S.QUEUED}, S.QUEUED),
    Trigger.APPLIED: ({S.QUEUED, S.DEPLOYING, S.RUNNING}, S.DEPLOYING),
    Trigger.SCALE_APPLIED: (_IN_SERVE, None),
    Trigger.READY: (_IN_SERVE, S.RUNNING),
    Trigger.DEGRADED: ({S.RUNNING}, S.RUNNING),
    Trigger.FAILED: ({S.QUEUED, S.DEPLOYING, S.RUNNING}, S.FAILED),
    Trigger.DELETE_REQUESTED: (_ALIVE | {S.SUSPENDED}, S.DELETING),
    Trigger.SUSPENDED: ({S.QUEUED, S.DEPLOYING, S.RUNNING}, S.SUSPENDED),
    Trigger.RESUMED: ({S.SUSPENDED}, S.QUEUED),
    Trigger.CLUSTER_LOST: (_ALIVE | {S.SUSPENDED, S.DELETING}, None),
    Trigger.CLUSTER_BACK: (_ALIVE | {S.SUSPENDED, S.DELETING}, None),
    Trigger.REMOVED: ({S.DELETING}, S.DELETED),
    Trigger.REDEPLOY: (_IN_SERVE, S.QUEUED),
    Trigger.ACCESS_CHANGED: (_ALIVE | {S.SUSPENDED}, None),
    Trigger.AUTOSCALED: ({S.RUNNING}, S.RUNNING),
    Trigger.NO_ROOM: ({S.RUNNING}, S.RUNNING),
}


def next_state(state: ServeState | None, trigger: Trigger) -> ServeState:
    """The state after `trigger` happens in `state`; raises InvalidTransition."""
    if trigger is Trigger.CREATED:
        if state is not None:
            raise InvalidTransition(state, trigger)
        return S.QUEUED
    if state is None:
        raise InvalidTransition(state, trigger)
    allowed, to = _TABLE[trigger]
    if state not in allowed:
        raise InvalidTransition(state, trigger)
    if to is not None:
        return to
    if trigger in (Trigger.SPEC_UPDATED, Trigger.SCALED) and state is S.FAILED:
        return S.QUEUED  # a new spec is a new try
    return state


# Triggers after which an old error no longer describes the model.
_CLEARS_ERROR = frozenset(
    {Trigger.SPEC_UPDATED, Trigger.SCALED, Trigger.CREATED, Trigger.REDEPLOY, Trigger.RESUMED}
)


def transition(
    session: Session,
    model: ServeModel,
    trigger: Trigger,
    now: datetime,
    *,
    error_summary: str | None = None,
    payload: dict[str, Any] | None = None,
) -> ServeState:
    """Apply `trigger` to the model and append its event; raises InvalidTransition."""
    new = next_state(ServeState(model.state), trigger)
    store.write_transition(
        session,
        model,
        new,
        trigger.value,
        now,
        error_summary=error_summary,
        clear_error=trigger in _CLEARS_ERROR,
        payload=payload,
    )
    return new
