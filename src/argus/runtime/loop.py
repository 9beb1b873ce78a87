"""The control loop: one tick every interval makes the cluster match what users asked for.

Each tick observes the cluster once (Serve's app and deployments, each node's resources,
the task jobs), then runs the serving controller (models -> one Serve app) and the task
scheduler (tasks -> Ray jobs) on that one view, so serving and training draw on one
count, and stores the usage the ingress metered (`argus.usage`). What it saw goes to
the status view (`runtime.status`), which the API reads.

A write the API accepted wakes the loop (`wake`): the next tick starts at once instead of
at the end of the interval, so a revoked key or a new model does not wait out a sleep.
Wakes closer together than `MIN_GAP_S` wait for it: a client writing in a tight loop
cannot make the loop spin.

When the cluster cannot be reached the tick stops after the observation: no state is
changed on a guess. Each live model gets one CLUSTER_LOST event when that starts and one
CLUSTER_BACK when it ends, not one per tick. A cluster that took the call but answered
late (`ClusterBusy`) is busy, not lost: its ticks stop the same way, and it is marked lost
only once it has been busy for `BUSY_IS_LOST_AFTER_S`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from argus.cluster.serve_client import ClusterBusy, ServeClient
from argus.runtime.status import ClusterStatus, TickReport
from argus.serving.controller import ServingController
from argus.serving.plan import Plan
from argus.training.scheduler import TaskScheduler
from argus.usage import UsageCollector

log = logging.getLogger(__name__)
MIN_GAP_S = 0.2  # between the starts of two ticks, however often the loop is woken
BUSY_IS_LOST_AFTER_S = 60.0  # a Ray hung for a minute is as good as gone


@dataclass
class ControlLoop:
    client: ServeClient
    serving: ServingController
    status: ClusterStatus
    interval_s: float
    clock: Callable[[], datetime]
    tasks: TaskScheduler | None = None
    usage: UsageCollector | None = None
    monotonic: Callable[[], float] = time.monotonic
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _serve_ready: bool = False
    _busy_since: float | None = None

    # -- one tick -----------------------------------------------------------------
    def tick(self) -> TickReport:
        started = self.monotonic()
        report = TickReport(at=self.clock(), seconds=0.0)
        try:
            report.plan = self._tick(report)
        except Exception as e:  # the loop must survive anything one tick meets
            report.error = f"{type(e).__name__}: {e}"
            log.warning("control tick failed: %s", report.error)
        report.seconds = self.monotonic() - started
        self.status.record_tick(report)
        return report

    def _tick(self, report: TickReport) -> Plan | None:
        try:
            if not self._serve_ready:
                self.client.ensure_serve()
                self._serve_ready = True
            observed = self.client.observe(self.serving.app_name)
        except Exception as e:
            self._serve_ready = False
            report.error = f"the Ray cluster did not answer: {type(e).__name__}: {e}"
            if self._busy_for(e) < BUSY_IS_LOST_AFTER_S:
                return None
            if self.status.lost(report.at, report.error):
                self._mark(lost=True)
            return None
        self._busy_since = None
        if self.status.back(observed):
            self._mark(lost=False)
        task_view = self.tasks.observe() if self.tasks is not None else None
        claims = task_view.claims() if task_view is not None else ()
        decided = self.serving.step(observed, self.monotonic(), claims)
        self.status.record_apply(self.serving.last_apply)
        if self.tasks is not None and task_view is not None:
            self.tasks.step(task_view, decided.free)
        self._collect_usage()
        return decided

    def _busy_for(self, failure: Exception) -> float:
        """How long the cluster has been only busy, as of this failure; inf when it was not."""
        if not isinstance(failure, ClusterBusy):
            self._busy_since = None
            return float("inf")
        now = self.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        return now - self._busy_since

    def _collect_usage(self) -> None:
        if self.usage is None:
            return
        try:
            self.usage.collect()
        except Exception as e:  # usage waits in the sink for the next tick; serving goes on
            log.warning("usage not collected: %s: %s", type(e).__name__, e)

    def _mark(self, lost: bool) -> None:
        try:
            self.serving.mark_cluster(lost, self.clock(), self.status.unreachable_reason)
        except Exception:  # the database may be the thing that failed; the status says it
            log.exception("could not record that the cluster is %s", "lost" if lost else "back")

    # -- the thread ---------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="argus-control-loop", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tick now: something the next tick acts on was just written."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()  # real time: this is how long the thread sleeps
            self._wake.clear()  # a wake during the tick below starts the next one at once
            self.tick()
            self._wake.wait(self.interval_s)
            gap = min(MIN_GAP_S, self.interval_s) - (time.monotonic() - started)
            if gap > 0:
                self._stop.wait(gap)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
