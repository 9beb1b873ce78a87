"""A write the API accepts wakes the control loop: a revoked key leaves the ingress's table
at once, not after the loop's interval (here a minute, so only the wake can explain it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from argus.cluster.access import key_hash
from argus.runtime.bootstrap import build_loop
from argus.runtime.loop import MIN_GAP_S, ControlLoop
from tests.conftest import spec_yaml
from tests.fake_cluster import FakeServeClient
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration
MINUTE_S = 60.0
SOON_S = 5.0  # far under the interval: a tick this soon was woken


class Ticks:
    """The loop's ticks, counted as they start."""

    def __init__(self, loop: ControlLoop) -> None:
        self.at: list[float] = []
        self.changed = threading.Condition()
        inner = loop.tick

        def counted():  # type: ignore[no-untyped-def]
            with self.changed:
                self.at.append(time.monotonic())
                self.changed.notify_all()
            return inner()

        loop.tick = counted  # type: ignore[method-assign]

    def wait_for(self, n: int, within_s: float = SOON_S) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.at) >= n, within_s), (
                f"{len(self.at)} ticks, not {n}, within {within_s} s"
            )


def until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SOON_S
    while not check():
        assert time.monotonic() < deadline, f"not within {SOON_S} s"
        time.sleep(0.05)


@pytest.fixture
def running(api: Api, fake: FakeServeClient) -> Iterator[tuple[ControlLoop, Ticks]]:
    loop = build_loop(api.settings, api.ctx.db, fake)
    loop.interval_s = MINUTE_S
    ticks = Ticks(loop)
    api.ctx.wake = loop.wake
    loop.start()
    ticks.wait_for(1)
    yield loop, ticks
    started = time.monotonic()
    loop.stop()
    assert time.monotonic() - started < SOON_S  # stop does not wait out the interval


def test_a_revoked_key_leaves_the_ingress_table_at_once(
    api: Api, fake: FakeServeClient, running: tuple[ControlLoop, Ticks]
) -> None:
    bob = api.new_user("bob")
    assert api.post_spec(bob, spec_yaml()).status_code == 202
    made = api.client.post("/api/v2/keys", json={"name": "laptop"}, headers=api.headers(bob))
    assert made.status_code == 201
    held = key_hash(made.json()["key"])
    until(lambda: held in fake.gate.get("principals", {}))  # the new key, at once too
    gone = api.client.delete(f"/api/v2/keys/{made.json()['key_id']}", headers=api.headers(bob))
    assert gone.status_code == 200
    until(lambda: held not in fake.gate["principals"])
    assert key_hash(bob) in fake.gate["principals"]  # his token still works


def test_reads_and_refused_writes_do_not_wake_the_loop(
    api: Api, running: tuple[ControlLoop, Ticks]
) -> None:
    _, ticks = running
    time.sleep(MIN_GAP_S * 2)
    seen = len(ticks.at)
    assert api.client.get("/api/v2/keys", headers=api.headers()).status_code == 200
    refused = api.client.post("/api/v2/keys", json={"name": ""}, headers=api.headers())
    assert refused.status_code == 422
    assert api.client.post("/api/v2/keys", json={"name": "x"}).status_code == 401
    time.sleep(MIN_GAP_S * 3)
    assert len(ticks.at) == seen


def test_a_client_writing_in_a_tight_loop_cannot_make_the_loop_spin(
    running: tuple[ControlLoop, Ticks],
) -> None:
    loop, ticks = running
    seen = len(ticks.at)
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        loop.wake()
        time.sleep(0.001)
    ticks.wait_for(seen + 1)
    woken = ticks.at[seen:]
    assert len(woken) <= 1.0 / MIN_GAP_S + 2
    assert all(b - a >= MIN_GAP_S * 0.9 for a, b in zip(ticks.at, ticks.at[1:], strict=False))
