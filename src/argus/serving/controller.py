"""The serving side of each control-loop tick: stored models in, one Serve app out.

`step()` reads the live models (each spec read back through its typed model, each model
folder that is about to be applied checked against the jail again) and who may call
them (`serving.gate`: a change of it alone applies the app again), asks `plan()` what
to do with what the loop observed, applies it (at most one `apply` or `delete_app`,
never waiting for a deployment), then records the state changes and their events in one
transaction. It writes only what changed, so an idle cluster costs one read per tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from argus.cluster.serve_client import ApplyError, ServeClient, ServeObservation
from argus.quotas import Quota
from argus.serving.gate import build_gate
from argus.serving.llm_config import EngineSettings
from argus.serving.plan import Change, LastApply, ModelRecord, Plan, plan
from argus.serving.spec import ResolvedServingSpec
from argus.serving.states import InvalidTransition, Trigger, transition
from argus.storage import PathForbidden, PathInvalid, recheck_model_source
from argus.store import serving as store
from argus.store.db import Database
from argus.store.schema import ServeModel
from argus.store.states import ServeState
from argus.text import summarize_error
from argus.yamlspec import SpecInvalid

log = logging.getLogger(__name__)
_APPLY_TRIGGERS = frozenset({Trigger.APPLIED, Trigger.SCALE_APPLIED})


@dataclass
class ServingController:
    db: Database
    client: ServeClient
    engine: EngineSettings
    app_name: str
    storage_root: Path
    clock: Callable[[], datetime]
    last_apply: LastApply | None = None
    admin_token_hash: str = ""  # the admin token may call every model
    cors_origins: tuple[str, ...] = ()  # the web origins allowed to call :8000
    quotas: Quota | None = None  # the config's defaults, for the rate limits in the gate

    def step(
        self, observed: ServeObservation, now: float, claims: Sequence[dict[str, float]] = ()
    ) -> Plan:
        records, gate = self.load()
        decided = plan(records, observed, self.last_apply, self.engine, now, claims, gate)
        changes = list(decided.changes)
        if decided.apply:
            try:
                self.client.apply(self.app_name, decided.app, decided.gate)
                self.last_apply = LastApply(now, decided.app_hash, decided.versions)
            except ApplyError as e:
                if e.model_id is None:
                    raise
                # Ray refused one model's config: that model fails alone. Nothing was
                # applied, so no apply is recorded; the next tick applies the others.
                changes = [c for c in changes if c.trigger not in _APPLY_TRIGGERS]
                changes.append(_refused(records, e))
        elif decided.delete_app:
            self.client.delete_app(self.app_name)
            self.last_apply = LastApply(now, decided.app_hash, {})
        elif self.last_apply is not None and self.last_apply.versions != decided.versions:
            self.last_apply = LastApply(self.last_apply.at, decided.app_hash, decided.versions)
        if changes:
            self.record(records, changes)
        return decided

    def mark_cluster(self, lost: bool, now: datetime, reason: str | None) -> None:
        """One CLUSTER_LOST (or CLUSTER_BACK) event on every live model; no state changes.

        A lost cluster may come back without the app: what was applied last no longer says
        what Serve holds, nor is a deployment missing then one "just applied" (the grace
        after an apply), so the next tick plans as a fresh argus would."""
        if lost:
            self.last_apply = None
        trigger = Trigger.CLUSTER_LOST if lost else Trigger.CLUSTER_BACK
        payload = {"reason": reason} if lost and reason else {}
        with self.db.write() as s:
            for model in store.list_active_models(s):
                transition(s, model, trigger, now, payload=payload)

    def load(self) -> tuple[list[ModelRecord], dict[str, Any]]:
        """The live models, and who may call them (the ingress's gate), in one read."""
        with self.db.read() as s:
            models = store.list_active_models(s)
            last_events = store.last_event_types(s, [m.model_key for m in models])
            gate = build_gate(
                s, self.admin_token_hash, self.cors_origins, self.clock(), models, self.quotas
            )
            return [self._record_of(m, last_events.get(m.model_key)) for m in models], gate

    def _record_of(self, m: ServeModel, last_event: str | None) -> ModelRecord:
        state = ServeState(m.state)
        spec: ResolvedServingSpec | None = None
        problem = None
        try:
            spec = ResolvedServingSpec.from_stored(m.resolved_spec)
        except SpecInvalid as e:
            problem = f"its stored spec breaks a rule ({e}); post the spec again"
        wants_apply = state is ServeState.QUEUED or m.generation != m.observed_generation
        if spec is not None and wants_apply:
            try:
                recheck_model_source(spec.model_source, self.storage_root, m.user_id)
            except (PathForbidden, PathInvalid) as e:
                problem = str(e)
        return ModelRecord(
            model_key=m.model_key,
            model_id=m.model_id,
            state=state,
            generation=m.generation,
            observed_generation=m.observed_generation,
            ready_replicas=m.ready_replicas,
            spec=spec,
            pending_reported=last_event == Trigger.PENDING_RESOURCES.value,
            no_room_reported=last_event == Trigger.NO_ROOM.value,
            problem=problem,
        )

    def record(self, records: Sequence[ModelRecord], changes: Sequence[Change]) -> None:
        """Write the plan's changes; skip a model the user changed since it was read."""
        seen = {r.model_key: r for r in records}
        now = self.clock()
        with self.db.write() as s:
            for change in changes:
                model = store.get_serve_model(s, change.model_key)
                before = seen[change.model_key]
                if model is None or _moved_on(model, before):
                    continue  # the next tick re-plans
                if change.observed_generation is not None:
                    model.observed_generation = change.observed_generation
                if change.ready_replicas is not None:
                    model.ready_replicas = change.ready_replicas
                if change.trigger is None:
                    model.updated_at = now
                    continue
                try:
                    transition(
                        s,
                        model,
                        change.trigger,
                        now,
                        error_summary=change.error_summary,
                        payload=change.payload,
                    )
                except InvalidTransition as e:  # a plan bug must not stop the loop
                    log.error("skipped %s for %s: %s", change.trigger, model.model_id, e)


def _moved_on(model: ServeModel, before: ModelRecord) -> bool:
    return model.generation != before.generation or model.state != before.state.value


def _refused(records: Sequence[ModelRecord], e: ApplyError) -> Change:
    key = next(r.model_key for r in records if r.model_id == e.model_id)
    reason = f"Ray Serve LLM refused its config: {summarize_error(str(e))}"
    return Change(key, Trigger.FAILED, ready_replicas=0, error_summary=reason)
