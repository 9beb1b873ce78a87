"""A served model's states and the one function that moves between them (design D3)."""

from __future__ import annotations

from enum import StrEnum


class ServeState(StrEnum):
    QUEUED = "QUEUED"  # accepted, waiting to be applied (e.g. for resources)
    DEPLOYING = "DEPLOYING"  # applied to Serve, waiting for it to report healthy
    RUNNING = "RUNNING"  # serving requests
    FAILED = "FAILED"  # taken out of the app; error_summary says why
    DELETING = "DELETING"  # delete asked for, waiting for Serve to drop it
    DELETED = "DELETED"  # gone from Serve, kept as a record

    @property
    def is_live(self) -> bool:
        """Holds its (user, suffix): everything but DELETED."""
        return self is not ServeState.DELETED

    @property
    def is_settled(self) -> bool:
        """Nothing will change without a new request from the user."""
        return self in SETTLED_STATES


SETTLED_STATES = frozenset({ServeState.RUNNING, ServeState.FAILED, ServeState.DELETED})


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
    Trigger.DELETE_REQUESTED: (_ALIVE, S.DELETING),
    Trigger.REMOVED: ({S.DELETING}, S.DELETED),
    Trigger.REDEPLOY: (_IN_SERVE, S.QUEUED),
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
