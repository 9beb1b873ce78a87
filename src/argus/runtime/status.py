"""What the control loop last saw, as the API and the pages show it.

The loop writes here after every tick; routes read from here and never call Ray on a
request's path. It also keeps whether the cluster answers: since when it has not, and
why, so `/readyz`, the admin status, the Cluster page and every model's page can say so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from argus.cluster.job_client import JobInfo
from argus.cluster.serve_app import deployment_name
from argus.cluster.serve_client import ServeObservation
from argus.serving.plan import LastApply, Plan

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    at: datetime
    seconds: float
    plan: Plan | None = None
    error: str | None = None


class JobSource(Protocol):
    last_jobs: dict[str, JobInfo]
    last_error: str | None
    errors: int


class ClusterStatus:
    def __init__(self, app_name: str, interval_s: float, jobs: JobSource | None = None) -> None:
        self.app_name = app_name
        self.interval_s = interval_s
        self.jobs = jobs
        self.ticks = 0
        self.errors = 0
        self.last_tick: TickReport | None = None
        self.last_observation: ServeObservation | None = None
        self.last_apply: LastApply | None = None
        self.unreachable_since: datetime | None = None
        self.unreachable_reason: str | None = None
        self._lock = threading.Lock()
        self._observers: list[Callable[[TickReport], None]] = []
        # What keeps argus linked to Ray (the supervised agent, the head), for the admin.
        self.extras: Callable[[], dict[str, object]] | None = None

    def add_tick_observer(self, observer: Callable[[TickReport], None]) -> None:
        """Call `observer` with every tick's report (metrics record durations this way)."""
        self._observers.append(observer)

    # -- written by the loop -------------------------------------------------------
    def record_tick(self, report: TickReport) -> None:
        with self._lock:
            self.ticks += 1
            if report.error is not None:
                self.errors += 1
            self.last_tick = report
        for observer in tuple(self._observers):
            try:
                observer(report)
            except Exception:  # an observer (metrics) must never stop the loop
                log.exception("a tick observer failed")

    def lost(self, at: datetime, reason: str) -> bool:
        """The cluster did not answer; True the first time (since it last answered)."""
        with self._lock:
            self.unreachable_reason = reason
            if self.unreachable_since is not None:
                return False
            self.unreachable_since = at
            return True

    def back(self, observed: ServeObservation) -> bool:
        """The cluster answered; True when it had been unreachable until now."""
        with self._lock:
            self.last_observation = observed
            was_lost = self.unreachable_since is not None
            self.unreachable_since = None
            self.unreachable_reason = None
            return was_lost

    def record_apply(self, last_apply: LastApply | None) -> None:
        with self._lock:
            self.last_apply = last_apply

    # -- read by the API (the StatusView protocol) ------------------------------------
    def cluster_note(self) -> dict[str, object] | None:
        """None while the cluster answers; else since when it has not, and why."""
        since = self.unreachable_since
        if since is None:
            return None
        return {"reachable": False, "unreachable_since": since.isoformat()}

    def model_status(self, model_id: str) -> dict[str, object] | None:
        observed = self.last_observation
        if observed is None:
            return None
        name = deployment_name(model_id)
        dep = observed.deployments.get(name)
        return {
            "deployment": name,
            "application_status": observed.app_status,
            "status": dep.status if dep else None,
            "message": dep.message if dep else "",
            "replicas": dict(dep.replica_states) if dep else {},
            "cluster_reachable": self.unreachable_since is None,
        }

    def job_status(self, job_id: str) -> dict[str, object] | None:
        job = self.jobs.last_jobs.get(job_id) if self.jobs is not None else None
        if job is None:
            return None
        return {
            "job_id": job.job_id,
            "status": job.status.value,
            "message": job.message[-2000:],
            "exit_code": job.exit_code,
            "start_time_ms": job.start_time_ms,
            "end_time_ms": job.end_time_ms,
        }

    def cluster_status(self) -> dict[str, object] | None:
        observed = self.last_observation
        tick = self.last_tick
        applied = sorted(self.last_apply.versions) if self.last_apply else []
        since = self.unreachable_since
        body: dict[str, Any] = {
            "application": self.app_name,
            "cluster": {
                "reachable": since is None,
                "unreachable_since": since.isoformat() if since else None,
                "reason": self.unreachable_reason,
            },
            "reconciler": {
                "interval_s": self.interval_s,
                "ticks": self.ticks,
                "errors": self.errors,
                "last_tick_at": tick.at.isoformat() if tick else None,
                "last_tick_seconds": round(tick.seconds, 4) if tick else None,
                "last_error": tick.error if tick else None,
            },
            "applied_model_keys": applied,
        }
        if self.extras is not None:
            body["ray_link"] = self.extras()
        if self.jobs is not None:
            body["tasks"] = {"job_api_error": self.jobs.last_error, "errors": self.jobs.errors}
        if observed is not None:
            body["serve"] = {
                "application_status": observed.app_status,
                "message": observed.app_message,
                "deployments": {
                    name: {"status": d.status, "replicas": d.replica_states, "message": d.message}
                    for name, d in observed.deployments.items()
                },
                "proxies": observed.proxies,
            }
            body["nodes"] = [
                {"node_id": n.node_id, "alive": n.alive, "total": n.total, "available": n.available}
                for n in observed.nodes
            ]
        return body
