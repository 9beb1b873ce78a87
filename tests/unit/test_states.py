from __future__ import annotations

import pytest

from argus.serving.states import InvalidTransition, Trigger, next_state
from argus.store.states import ServeState

pytestmark = pytest.mark.unit
S, T = ServeState, Trigger


@pytest.mark.parametrize(
    ("state", "trigger", "to"),
    [
        (None, T.CREATED, S.QUEUED),
        (S.QUEUED, T.PENDING_RESOURCES, S.QUEUED),
        (S.QUEUED, T.APPLIED, S.DEPLOYING),
        (S.DEPLOYING, T.READY, S.RUNNING),
        (S.RUNNING, T.SCALED, S.RUNNING),
        (S.RUNNING, T.APPLIED, S.DEPLOYING),
        (S.RUNNING, T.SCALE_APPLIED, S.RUNNING),
        (S.DEPLOYING, T.SCALE_APPLIED, S.DEPLOYING),
        (S.RUNNING, T.DEGRADED, S.RUNNING),
        (S.RUNNING, T.SPEC_UPDATED, S.RUNNING),
        (S.FAILED, T.SPEC_UPDATED, S.QUEUED),
        (S.FAILED, T.SCALED, S.QUEUED),
        (S.DEPLOYING, T.FAILED, S.FAILED),
        (S.RUNNING, T.DELETE_REQUESTED, S.DELETING),
        (S.FAILED, T.DELETE_REQUESTED, S.DELETING),
        (S.DELETING, T.REMOVED, S.DELETED),
        (S.RUNNING, T.REDEPLOY, S.QUEUED),
    ],
)
def test_transitions(state: ServeState | None, trigger: Trigger, to: ServeState) -> None:
    assert next_state(state, trigger) is to


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        (S.QUEUED, T.CREATED),
        (None, T.APPLIED),
        (S.DELETED, T.DELETE_REQUESTED),
        (S.DELETED, T.SCALED),
        (S.DELETING, T.SCALED),
        (S.DELETING, T.READY),
        (S.QUEUED, T.REMOVED),
        (S.FAILED, T.READY),
        (S.QUEUED, T.SCALE_APPLIED),
    ],
)
def test_refused_transitions(state: ServeState | None, trigger: Trigger) -> None:
    with pytest.raises(InvalidTransition):
        next_state(state, trigger)


def test_state_groups() -> None:
    assert [s for s in S if not s.is_live] == [S.DELETED]
    assert {s for s in S if s.is_settled} == {S.RUNNING, S.FAILED, S.SUSPENDED, S.DELETED}
