"""The reconciler: a loop that makes the Serve app match the stored models (design D4).

Each tick: read the models, observe Serve, `plan()`, then apply the plan: at most
one `apply` or `delete_app` (never waiting for a deployment), then the state
changes and their events in one transaction. It writes only what changed, so an
idle cluster costs one read and one status call per interval.

Training tasks run in the same tick, after the models, from the same view of the
cluster's resources (`TaskScheduler`): serving and training draw on one count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from argus.cluster.serve_client import ServeClient, ServeObservation
from argus.serving.llm_config import EngineSettings, deployment_name
from argus.serving.plan import Change, LastApply, ModelRecord, Plan, plan
from argus.serving.states import InvalidTransition, ServeState, Trigger
from argus.store import serving as store
from argus.store.db import Database
from argus.store.schema import ServeEvent, ServeModel
from argus.training.scheduler import TaskScheduler

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    at: datetime
    seconds: float
    plan: Plan | None = None
    error: str | None = None


@dataclass
class Reconciler:
    db: Database
    client: ServeClient
    engine: EngineSettings
    app_name: str
    interval_s: float
    clock: Callable[[], datetime]
    tasks: TaskScheduler | None = None
    monotonic: Callable[[], float] = time.monotonic
    last_apply: LastApply | None = None
    last_observation: ServeObservation | None = None
    last_tick: TickReport | None = None
    ticks: int = 0
    errors: int = 0
    _observers: list[Callable[[TickReport], None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _serve_ready: bool = False

    # -- one tick -------------------------------------------------------------
    def tick(self) -> TickReport:
        started = self.monotonic()
        report = TickReport(at=self.clock(), seconds=0.0)
        try:
            report.plan = self._tick()
        except Exception as e:  # the loop must survive anything one tick meets
            self.errors += 1
            self._serve_ready = False
            report.error = f"{type(e).__name__}: {e}"
            log.warning("reconcile tick failed: %s", report.error)
        report.seconds = self.monotonic() - started
        self.ticks += 1
        self.last_tick = report
        for observer in tuple(self._observers):
            try:
                observer(report)
            except Exception:  # an observer (metrics) must never stop the loop
                log.exception("a tick observer failed")
        return report

    def add_tick_observer(self, observer: Callable[[TickReport], None]) -> None:
        """Call `observer` with every tick's report (metrics record durations this way)."""
        self._observers.append(observer)

    def _tick(self) -> Plan:
        if not self._serve_ready:
            self.client.ensure_serve()
            self._serve_ready = True
        records = self._load()
        observed = self.client.observe(self.app_name)
        self.last_observation = observed
        task_view = self.tasks.observe() if self.tasks is not None else None
        now = self.monotonic()
        claims = task_view.claims() if task_view is not None else ()
        decided = plan(records, observed, self.last_apply, self.engine, now, claims)
        if decided.apply:
            self.client.apply(self.app_name, decided.app)
            self.last_apply = LastApply(now, decided.app_hash, decided.versions)
        elif decided.delete_app:
            self.client.delete_app(self.app_name)
            self.last_apply = LastApply(now, decided.app_hash, {})
        elif self.last_apply is not None and self.last_apply.versions != decided.versions:
            self.last_apply = LastApply(self.last_apply.at, decided.app_hash, decided.versions)
        if decided.changes:
            self._record(records, decided.changes)
        if self.tasks is not None and task_view is not None:
            self.tasks.step(task_view, decided.free)
        return decided

    def _load(self) -> list[ModelRecord]:
        with self.db.read() as s:
            models = store.list_active_models(s)
            last_events = _last_event_types(s, [m.model_key for m in models])
            return [
                ModelRecord(
                    model_key=m.model_key,
                    model_id=m.model_id,
                    state=ServeState(m.state),
                    generation=m.generation,
                    observed_generation=m.observed_generation,
                    target_replicas=m.target_replicas,
                    ready_replicas=m.ready_replicas,
                    resolved_spec=m.resolved_spec,
                    pending_reported=last_events.get(m.model_key)
                    == Trigger.PENDING_RESOURCES.value,
                )
                for m in models
            ]

    def _record(self, records: list[ModelRecord], changes: tuple[Change, ...]) -> None:
        seen = {r.model_key: r for r in records}
        now = self.clock()
        with self.db.write() as s:
            for change in changes:
                model = store.get_serve_model(s, change.model_key)
                before = seen[change.model_key]
                if model is None or _moved_on(model, before):
                    continue  # the user changed it meanwhile; the next tick re-plans
                if change.observed_generation is not None:
                    model.observed_generation = change.observed_generation
                if change.ready_replicas is not None:
                    model.ready_replicas = change.ready_replicas
                if change.trigger is None:
                    model.updated_at = now
                    continue
                try:
                    store.set_serve_model_state(
                        s,
                        model,
                        change.trigger,
                        now,
                        error_summary=change.error_summary,
                        payload=change.payload,
                    )
                except InvalidTransition as e:  # a plan bug must not stop the loop
                    log.error("skipped %s for %s: %s", change.trigger, model.model_id, e)

    # -- the loop -------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="argus-reconciler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval_s)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- what the API shows (the StatusView protocol) -------------------------
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
        }

    def job_status(self, job_id: str) -> dict[str, object] | None:
        return self.tasks.job_status(job_id) if self.tasks is not None else None

    def cluster_status(self) -> dict[str, object] | None:
        observed = self.last_observation
        tick = self.last_tick
        applied = sorted(self.last_apply.versions) if self.last_apply else []
        body: dict[str, Any] = {
            "application": self.app_name,
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
        if self.tasks is not None:
            body["tasks"] = {"job_api_error": self.tasks.last_error, "errors": self.tasks.errors}
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


def _moved_on(model: ServeModel, before: ModelRecord) -> bool:
    return model.generation != before.generation or model.state != before.state.value


def _last_event_types(session: Any, keys: list[str]) -> dict[str, str]:
    if not keys:
        return {}
    latest = (
        select(ServeEvent.model_key, func.max(ServeEvent.id).label("id"))
        .where(ServeEvent.model_key.in_(keys))
        .group_by(ServeEvent.model_key)
        .subquery()
    )
    rows = session.execute(
        select(ServeEvent.model_key, ServeEvent.event_type).join(
            latest, ServeEvent.id == latest.c.id
        )
    )
    return {k: t for k, t in rows}
