"""The serving controller's decision, as a pure function (design D4).

`plan(models, observed, last_apply, engine, now, claims, gate)` looks at what users
want (the stored models, and who may call them: a changed gate alone applies the app
again), what Serve and Ray report, and what this controller applied last,
and returns what to do: the exact set of models the one Serve app should hold (or
that it should go), and the state changes to record. No Ray, no database, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from argus.cluster.placement import Free, fits, free_resources, node_fits
from argus.cluster.serve_app import deployment_name, digest, llm_server_version
from argus.cluster.serve_client import DeploymentStatus, ModelDeployment, ServeObservation
from argus.serving.llm_config import EngineSettings, build_llm_config, replica_demand
from argus.serving.spec import ResolvedServingSpec
from argus.serving.states import Trigger
from argus.store.states import ServeState
from argus.text import summarize_error

# How long a freshly applied model may be missing from Serve's status before argus
# concludes the cluster lost it (Serve lists a deployment a few seconds after apply).
APPLY_GRACE_S = 30.0
# What Serve reports for a deployment that serves: autoscaling moves it between these.
_SERVING = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})


@dataclass(frozen=True)
class ModelRecord:
    """A stored model as the planner sees it."""

    model_key: str
    model_id: str
    state: ServeState
    generation: int
    observed_generation: int
    ready_replicas: int
    spec: ResolvedServingSpec | None  # None: the stored spec breaks a rule (`problem` says)
    pending_reported: bool = False  # a PENDING_RESOURCES event stands for this generation
    no_room_reported: bool = False  # a NO_ROOM event stands since the model last moved
    # Why this model must not be applied now: its stored spec breaks a rule, or its
    # model folder no longer passes the jail (checked again before every apply).
    problem: str | None = None

    @property
    def target_replicas(self) -> int:
        """Replicas it must hold to be placed and settled: an autoscaled model's minimum."""
        return self.spec.min_replicas if self.spec is not None else 0


@dataclass(frozen=True)
class LastApply:
    """What this reconciler last applied, and when (seconds on a monotonic clock)."""

    at: float
    app_hash: str
    versions: dict[str, str]  # model_key -> LLMServer version applied


@dataclass(frozen=True)
class Change:
    model_key: str
    trigger: Trigger | None  # None: update columns only, no transition, no event
    ready_replicas: int | None = None
    observed_generation: int | None = None
    error_summary: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    app: tuple[ModelDeployment, ...]  # what the app must hold after this tick
    apply: bool  # call ServeClient.apply(app)
    delete_app: bool  # call ServeClient.delete_app()
    app_hash: str
    versions: dict[str, str]  # model_key -> version, for LastApply
    free: Free = field(default_factory=dict)  # per node, after the models
    gate: dict[str, Any] = field(default_factory=dict)  # the ingress's table, as applied

    @property
    def touches_serve(self) -> bool:
        return self.apply or self.delete_app


def app_hash_of(app: Sequence[ModelDeployment], gate: dict[str, Any] | None = None) -> str:
    return digest([[[m.model_id, m.llm_config] for m in app], gate or {}])


def plan(
    models: Sequence[ModelRecord],
    observed: ServeObservation,
    last_apply: LastApply | None,
    engine: EngineSettings,
    now: float,
    claims: Sequence[dict[str, float]] = (),
    gate: dict[str, Any] | None = None,
) -> Plan:
    """What the app must hold and which transitions to record, from one look at the world."""
    changes: list[Change] = []
    keep: dict[str, ModelDeployment] = {}  # model_key -> deployment, in the app
    versions: dict[str, str] = {}
    recently_applied = last_apply is not None and now - last_apply.at < APPLY_GRACE_S
    free = free_resources(observed.nodes)
    # Resources that submitted training tasks are about to take (design: one count).
    for claim in claims:
        fits(claim, 1, free)

    def status_of(m: ModelRecord) -> DeploymentStatus | None:
        return observed.deployments.get(deployment_name(m.model_id))

    # Replicas applied but not yet running will take resources Ray still shows free.
    for m in models:
        if m.state in (ServeState.DEPLOYING, ServeState.RUNNING) and m.spec is not None:
            dep = status_of(m)
            running = dep.serving_replicas if dep else 0
            missing = max(0, m.target_replicas - running)
            fits(replica_demand(m.spec, engine), missing, free)
    no_room: list[str] = []  # models at zero whose next replica has nowhere to go

    for m in models:
        dep = status_of(m)

        if m.state is ServeState.DELETING:
            gone = dep is None and not (recently_applied and _was_applied(m, last_apply))
            if dep is None and (gone or not observed.app_exists):
                changes.append(Change(m.model_key, Trigger.REMOVED, ready_replicas=0))
            continue
        if m.state in (ServeState.FAILED, ServeState.DELETED, ServeState.SUSPENDED):
            continue
        wants_apply = m.state is ServeState.QUEUED or m.generation != m.observed_generation
        if m.spec is None or (wants_apply and m.problem is not None):
            # A spec that breaks a rule, or a folder that left the jail, fails alone.
            reason = m.problem or "its stored spec is not valid"
            changes.append(
                Change(m.model_key, Trigger.FAILED, ready_replicas=0, error_summary=reason)
            )
            continue
        config = build_llm_config(m.model_id, m.spec, engine)
        deployment = ModelDeployment(m.model_id, config)
        version = llm_server_version(config)

        if wants_apply:
            if m.state is ServeState.QUEUED:
                demand = replica_demand(m.spec, engine)
                if not fits(demand, m.target_replicas, free):
                    if not m.pending_reported:
                        changes.append(
                            Change(
                                m.model_key,
                                Trigger.PENDING_RESOURCES,
                                payload={
                                    "needs_per_replica": demand,
                                    "replicas": m.target_replicas,
                                    "free": {n: dict(r) for n, r in free.items()},
                                },
                            )
                        )
                    continue
                trigger = Trigger.APPLIED
            else:
                previous = last_apply.versions.get(m.model_key) if last_apply else None
                trigger = Trigger.SCALE_APPLIED if previous == version else Trigger.APPLIED
            keep[m.model_key] = deployment
            versions[m.model_key] = version
            changes.append(
                Change(
                    m.model_key,
                    trigger,
                    observed_generation=m.generation,
                    payload={"generation": m.generation, **_replicas_payload(m.spec)},
                )
            )
            continue

        # DEPLOYING or RUNNING, this generation applied: follow what Serve reports.
        keep[m.model_key] = deployment
        versions[m.model_key] = version
        if dep is None:
            if not recently_applied:
                # Applied earlier, now absent from Serve: the cluster lost it (a Ray
                # restart, an app removed by hand). Queue it to be deployed again.
                keep.pop(m.model_key)
                versions.pop(m.model_key)
                reason = (
                    "the Serve application is gone"
                    if not observed.app_exists
                    else ("its deployment is gone from the Serve application")
                )
                changes.append(
                    Change(
                        m.model_key, Trigger.REDEPLOY, ready_replicas=0, payload={"reason": reason}
                    )
                )
            continue
        followed = _follow_autoscaled(m, dep) if m.spec.autoscaling else _follow(m, dep)
        changes.extend(followed)
        if any(c.trigger is Trigger.FAILED for c in followed):
            keep.pop(m.model_key)
            versions.pop(m.model_key)
        elif (needs := _at_zero_without_room(m, dep, engine, free)) is not None:
            no_room.append(m.model_id)
            if not m.no_room_reported:
                payload = {"needs_per_replica": needs}
                changes.append(Change(m.model_key, Trigger.NO_ROOM, payload=payload))

    app = tuple(sorted(keep.values(), key=lambda d: d.model_id))
    if no_room:  # the ingress answers 503 for these (`argus.cluster.ingress`)
        gate = {**(gate or {}), "no_room": sorted(no_room)}
    app_hash = app_hash_of(app, gate)
    delete_app = not app and (observed.app_exists or bool(last_apply and last_apply.versions))
    apply = bool(app) and (
        last_apply is None
        or last_apply.app_hash != app_hash
        or (not observed.app_exists and not recently_applied)
    )
    return Plan(tuple(changes), app, apply, delete_app, app_hash, versions, free, gate or {})


def _replicas_payload(spec: ResolvedServingSpec) -> dict[str, Any]:
    if spec.autoscaling is None:
        return {"replicas": spec.num_replicas}
    return {"replicas": spec.min_replicas, "autoscaling": spec.autoscaling.model_dump()}


def _at_zero_without_room(
    m: ModelRecord, dep: DeploymentStatus, engine: EngineSettings, free: Free
) -> dict[str, float] | None:
    """What the next replica needs, for an autoscaled model at zero replicas (none starting
    either) whose next replica fits no node now: a request would wait for it without end,
    so the ingress answers 503. None for every other model."""
    if m.spec is None or m.state is not ServeState.RUNNING or m.target_replicas > 0:
        return None
    if any(n for state, n in dep.replica_states.items() if state != "STOPPING"):
        return None
    demand = replica_demand(m.spec, engine)
    return None if any(node_fits(demand, avail) for avail in free.values()) else demand


def _was_applied(m: ModelRecord, last_apply: LastApply | None) -> bool:
    return last_apply is not None and m.model_key in last_apply.versions


def _follow_autoscaled(m: ModelRecord, dep: DeploymentStatus) -> list[Change]:
    """Serve moves an autoscaled model between its minimum and maximum: each move is an
    AUTOSCALED event with its reason; fewer than the minimum is DEGRADED, as for a fixed
    count."""
    running = dep.serving_replicas
    if dep.status == "DEPLOY_FAILED":
        return _follow(m, dep)
    floor = m.target_replicas
    settled = dep.status in _SERVING and running >= floor
    if m.state is ServeState.DEPLOYING:
        if settled:
            return [Change(m.model_key, Trigger.READY, ready_replicas=running)]
    elif running < floor and running < m.ready_replicas:
        payload = {"ready": running, "target": floor, "serve": dep.status}
        return [Change(m.model_key, Trigger.DEGRADED, ready_replicas=running, payload=payload)]
    elif settled and m.ready_replicas < floor:
        return [Change(m.model_key, Trigger.READY, ready_replicas=running)]
    elif running != m.ready_replicas:
        if running > m.ready_replicas:
            reason = "load"
        elif dep.status in _SERVING:
            reason = "idle"
        else:
            reason = f"Serve reports {dep.status}"
        payload = {"from": m.ready_replicas, "to": running, "reason": reason}
        return [Change(m.model_key, Trigger.AUTOSCALED, ready_replicas=running, payload=payload)]
    if running != m.ready_replicas:
        return [Change(m.model_key, None, ready_replicas=running)]
    return []


def _follow(m: ModelRecord, dep: DeploymentStatus) -> list[Change]:
    running = dep.serving_replicas
    if dep.status == "DEPLOY_FAILED":
        return [
            Change(
                m.model_key,
                Trigger.FAILED,
                ready_replicas=0,
                error_summary=summarize_error(dep.message),
            )
        ]
    settled = dep.status == "HEALTHY" and running >= m.target_replicas
    if m.state is ServeState.DEPLOYING:
        if settled:
            return [Change(m.model_key, Trigger.READY, ready_replicas=running)]
    elif running < m.ready_replicas and running < m.target_replicas:
        return [
            Change(
                m.model_key,
                Trigger.DEGRADED,
                ready_replicas=running,
                payload={"ready": running, "target": m.target_replicas, "serve": dep.status},
            )
        ]
    elif settled and m.ready_replicas < m.target_replicas:
        return [Change(m.model_key, Trigger.READY, ready_replicas=running)]
    if running != m.ready_replicas:
        return [Change(m.model_key, None, ready_replicas=running)]
    return []
