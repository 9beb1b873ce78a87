from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from argus.cluster.serve_app import (
    INGRESS_DEPLOYMENT,
    EngineMode,
    deployment_name,
    llm_server_version,
)
from argus.cluster.serve_client import (
    DeploymentStatus,
    ModelDeployment,
    NodeResources,
    ServeObservation,
)
from argus.serving.llm_config import EngineSettings, build_llm_config
from argus.serving.plan import (
    APPLY_GRACE_S,
    LastApply,
    ModelRecord,
    app_hash_of,
    plan,
)
from argus.serving.spec import EngineKwargs, ResolvedServingSpec
from argus.serving.states import Trigger
from argus.store.states import ServeState
from argus.text import summarize_error

pytestmark = pytest.mark.unit
CPU = EngineSettings(EngineMode.CPU, None, 1, "/hf")
GPU = EngineSettings(EngineMode.GPU, "H20", 1, "/hf")
H20 = {"accelerator_type:H20": 1.0}
S = ServeState
NOW = 1000.0


def rec(
    key: str = "a",
    state: ServeState = S.QUEUED,
    gen: int = 1,
    obs: int = 0,
    target: int = 1,
    ready: int = 0,
    gpus: int = 1,
    **kw: Any,
) -> ModelRecord:
    spec = ResolvedServingSpec(
        model_id=key, model_source=f"/m/{key}", num_replicas=target, gpus_per_replica=gpus
    )
    return ModelRecord(key, f"u-202611281200-{key}", state, gen, obs, ready, spec, **kw)


def dep(
    status: str = "HEALTHY", running: int = 1, starting: int = 0, msg: str = ""
) -> DeploymentStatus:
    states = {k: v for k, v in (("RUNNING", running), ("STARTING", starting)) if v}
    return DeploymentStatus(status, msg, states)


def cpu_nodes(free: float = 16.0) -> tuple[NodeResources, ...]:
    return (NodeResources("n1", {"CPU": 16.0}, {"CPU": free}),)


def obs(
    deps: dict[str, DeploymentStatus] | None = None,
    nodes: tuple[NodeResources, ...] = (),
    app: str | None = "RUNNING",
) -> ServeObservation:
    named = {deployment_name(f"u-202611281200-{k}"): d for k, d in (deps or {}).items()}
    if app is not None:
        named[INGRESS_DEPLOYMENT] = dep()
    return ServeObservation(app, "", named, nodes or cpu_nodes())


def applied(*recs: ModelRecord, at: float = NOW - 100, engine: EngineSettings = CPU) -> LastApply:
    """What a reconciler that applied these records (as they are) remembers."""
    deps = sorted(
        (ModelDeployment(r.model_id, build_llm_config(r.model_id, r.spec, engine)) for r in recs),
        key=lambda d: d.model_id,
    )
    versions = {
        r.model_key: llm_server_version(d.llm_config)
        for r, d in zip(sorted(recs, key=lambda r: r.model_id), deps, strict=True)
    }
    return LastApply(at, app_hash_of(deps), versions)


def triggers(p: Any) -> dict[str, Trigger | None]:
    return {c.model_key: c.trigger for c in p.changes}


def test_queued_model_that_fits_is_applied() -> None:
    p = plan([rec()], obs(app=None), None, CPU, NOW)
    assert triggers(p) == {"a": Trigger.APPLIED}
    assert p.changes[0].observed_generation == 1
    assert p.apply and not p.delete_app
    assert [m.model_id for m in p.app] == ["u-202611281200-a"]


def test_queued_model_that_does_not_fit_waits_with_one_event() -> None:
    full = cpu_nodes(free=1.0)
    p = plan([rec()], obs(app=None, nodes=full), None, CPU, NOW)
    assert triggers(p) == {"a": Trigger.PENDING_RESOURCES}
    assert p.changes[0].payload["needs_per_replica"] == {"CPU": 2.0}
    assert not p.apply and p.app == ()
    again = plan([rec(pending_reported=True)], obs(app=None, nodes=full), None, CPU, NOW)
    assert again.changes == ()


def test_fit_is_per_node_for_gpus() -> None:
    two_singles = (
        NodeResources("n1", {"GPU": 1.0, "CPU": 8.0, **H20}, {"GPU": 1.0, "CPU": 8.0, **H20}),
        NodeResources("n2", {"GPU": 1.0, "CPU": 8.0, **H20}, {"GPU": 1.0, "CPU": 8.0, **H20}),
    )
    p = plan([rec(gpus=2)], obs(app=None, nodes=two_singles), None, GPU, NOW)
    assert triggers(p) == {"a": Trigger.PENDING_RESOURCES}
    one_double = (
        NodeResources("n3", {"GPU": 2.0, "CPU": 8.0, **H20}, {"GPU": 2.0, "CPU": 8.0, **H20}),
    )
    p = plan([rec(gpus=2)], obs(app=None, nodes=one_double), None, GPU, NOW)
    assert triggers(p) == {"a": Trigger.APPLIED}


def test_applied_but_not_yet_running_replicas_count_against_the_fit() -> None:
    nodes = (NodeResources("n1", {"GPU": 2.0, "CPU": 8.0, **H20}, {"GPU": 2.0, "CPU": 8.0, **H20}),)
    deploying = rec("a", S.DEPLOYING, obs=1, gpus=2)
    queued = rec("b", gpus=1)
    p = plan(
        [deploying, queued],
        obs({"a": dep("UPDATING", 0, 1)}, nodes),
        applied(deploying, engine=GPU),
        GPU,
        NOW,
    )
    assert triggers(p) == {"b": Trigger.PENDING_RESOURCES}
    # once a is deleted its GPUs count again
    gone = replace(deploying, state=S.DELETING)
    p = plan([gone, queued], obs({}, nodes), applied(deploying, engine=GPU), GPU, NOW)
    assert triggers(p) == {"a": Trigger.REMOVED, "b": Trigger.APPLIED}


def test_deploying_becomes_running_when_serve_reports_healthy() -> None:
    m = rec(state=S.DEPLOYING, obs=1)
    last = applied(m)
    assert plan([m], obs({"a": dep("UPDATING", 0, 1)}), last, CPU, NOW).changes == ()
    p = plan([m], obs({"a": dep("HEALTHY", 1)}), last, CPU, NOW)
    assert triggers(p) == {"a": Trigger.READY}
    assert p.changes[0].ready_replicas == 1
    assert not p.apply  # nothing changed in what the app should hold


def test_a_failed_deployment_is_taken_out_and_the_others_stay() -> None:
    a, b = rec("a", S.DEPLOYING, obs=1), rec("b", S.RUNNING, obs=1, ready=1)
    last = applied(a, b)
    tb = (
        "Traceback (most recent call last):\n  File x\nValueError: bad weights in model.safetensors"
    )
    p = plan([a, b], obs({"a": dep("DEPLOY_FAILED", 0, msg=tb), "b": dep()}), last, CPU, NOW)
    assert triggers(p) == {"a": Trigger.FAILED}
    assert p.changes[0].error_summary == (
        "Traceback (most recent call last): ... ValueError: bad weights in model.safetensors"
    )
    assert [m.model_id for m in p.app] == ["u-202611281200-b"]
    assert p.apply


def test_failed_models_are_not_applied() -> None:
    p = plan([rec(state=S.FAILED, obs=1)], obs(app=None), None, CPU, NOW)
    assert p.app == () and p.changes == () and not p.apply


def test_scale_of_a_running_model_applies_in_place() -> None:
    before = rec(state=S.RUNNING, obs=1, ready=1)
    last = applied(before)
    assert before.spec is not None
    scaled = replace(before, generation=2, spec=before.spec.with_replicas(2))
    p = plan([scaled], obs({"a": dep()}), last, CPU, NOW)
    assert triggers(p) == {"a": Trigger.SCALE_APPLIED}
    assert p.apply
    assert p.app[0].llm_config["deployment_config"]["num_replicas"] == 2
    assert p.versions == last.versions  # same code version: Serve scales in place
    # then Serve brings the second replica up
    now_applied = replace(scaled, observed_generation=2)
    last2 = LastApply(NOW, p.app_hash, p.versions)
    assert plan([now_applied], obs({"a": dep("UPSCALING", 1, 1)}), last2, CPU, NOW).changes == ()
    p = plan([now_applied], obs({"a": dep("HEALTHY", 2)}), last2, CPU, NOW)
    assert triggers(p) == {"a": Trigger.READY}


def test_a_spec_change_redeploys() -> None:
    before = rec(state=S.RUNNING, obs=1, ready=1)
    assert before.spec is not None
    changed = replace(
        before,
        generation=2,
        spec=before.spec.model_copy(update={"engine_kwargs": EngineKwargs(max_model_len=512)}),
    )
    p = plan([changed], obs({"a": dep()}), applied(before), CPU, NOW)
    assert triggers(p) == {"a": Trigger.APPLIED}


def test_lost_replicas_degrade_then_recover() -> None:
    m = rec(state=S.RUNNING, obs=1, target=2, ready=2)
    last = applied(m)
    p = plan([m], obs({"a": dep("UNHEALTHY", 1, 1)}), last, CPU, NOW)
    assert triggers(p) == {"a": Trigger.DEGRADED}
    assert p.changes[0].payload["ready"] == 1
    degraded = replace(m, ready_replicas=1)
    assert plan([degraded], obs({"a": dep("UNHEALTHY", 1, 1)}), last, CPU, NOW).changes == ()
    p = plan([degraded], obs({"a": dep("HEALTHY", 2)}), last, CPU, NOW)
    assert triggers(p) == {"a": Trigger.READY}


def test_a_replica_reconfigured_in_place_still_serves() -> None:
    """Serve reconfigures a replica in place (UPDATING) when a model turns autoscaled or
    fixed: the same actor and engine, so argus records no lost replica, no autoscaling."""
    updating = DeploymentStatus("UPDATING", "", {"UPDATING": 1})
    fixed = rec(state=S.RUNNING, obs=1, target=1, ready=1)
    assert plan([fixed], obs({"a": updating}), applied(fixed), CPU, NOW).changes == ()
    ranged = auto(ready=1)
    assert plan([ranged], obs({"a": updating}), applied(ranged), CPU, NOW).changes == ()


def test_deleting_waits_until_serve_drops_it() -> None:
    m = rec(state=S.DELETING, obs=1, ready=1)
    other = rec("b", S.RUNNING, obs=1, ready=1)
    last = applied(replace(m, state=S.RUNNING), other)
    p = plan([m, other], obs({"a": dep(), "b": dep()}), last, CPU, NOW)
    assert p.changes == ()
    assert [d.model_id for d in p.app] == ["u-202611281200-b"] and p.apply
    p = plan([m, other], obs({"b": dep()}), LastApply(NOW - 100, p.app_hash, p.versions), CPU, NOW)
    assert triggers(p) == {"a": Trigger.REMOVED}


def test_the_last_model_deleted_deletes_the_app() -> None:
    m = rec(state=S.DELETING, obs=1, ready=1)
    p = plan([m], obs({"a": dep()}), applied(replace(m, state=S.RUNNING)), CPU, NOW)
    assert p.delete_app and not p.apply and p.app == ()
    p = plan([m], obs(app=None), LastApply(NOW - 100, p.app_hash, {}), CPU, NOW)
    assert triggers(p) == {"a": Trigger.REMOVED}
    assert not p.delete_app


def test_an_unchanged_config_is_not_reapplied() -> None:
    m = rec(state=S.RUNNING, obs=1, ready=1)
    p = plan([m], obs({"a": dep()}), applied(m), CPU, NOW)
    assert not p.apply and not p.delete_app and p.changes == ()


def test_after_an_argus_restart_the_running_app_is_adopted() -> None:
    m = rec(state=S.RUNNING, obs=1, ready=1)
    p = plan([m], obs({"a": dep()}), None, CPU, NOW)
    assert p.changes == ()
    assert p.apply  # once, with the same stable versions: Serve changes nothing
    assert p.versions == {"a": llm_server_version(build_llm_config(m.model_id, m.spec, CPU))}


def test_a_lost_app_redeploys_every_model() -> None:
    a, b = rec("a", S.RUNNING, obs=1, ready=1), rec("b", S.DEPLOYING, obs=1)
    p = plan([a, b], obs(app=None), None, CPU, NOW)
    assert triggers(p) == {"a": Trigger.REDEPLOY, "b": Trigger.REDEPLOY}
    assert p.changes[0].payload["reason"] == "the Serve application is gone"
    assert p.app == ()


def test_a_fresh_apply_gets_a_grace_period() -> None:
    m = rec(state=S.DEPLOYING, obs=1)
    last = applied(m, at=NOW - APPLY_GRACE_S / 2)
    p = plan([m], obs(app=None), last, CPU, NOW)
    assert p.changes == () and not p.apply


@pytest.mark.parametrize(
    ("message", "summary"),
    [
        ("", "the deployment failed without a message; see the Ray Serve logs"),
        ("just one line", "just one line"),
        (
            "Replica failed\nTraceback\nRuntimeError: Engine core initialization failed",
            "Replica failed ... RuntimeError: Engine core initialization failed",
        ),
        ("x" * 5000, "x" * 1000),
        (
            "\x1b[36mray::Replica\x1b[39m failed\nValueError: no weights",
            "ray::Replica failed ... ValueError: no weights",
        ),
        (
            "The deployment failed to start 3 times in a row.\nTraceback (most recent call last):\n"
            '  File "x.py", line 1\n'
            "RuntimeError: Failed to create vLLM engine config: 1 validation error for VllmConfig\n"
            "  Value error, Expecting property name [type=value_error, input_value=x]\n"
            "    For further information visit https://errors.pydantic.dev",
            "The deployment failed to start 3 times in a row. ... RuntimeError: Failed to create "
            "vLLM engine config: 1 validation error for VllmConfig: Value error, Expecting "
            "property name",
        ),
        (  # what LLMConfig.model_validate raises: no exception name, the field on its own line
            "1 validation error for LLMConfig\naccelerator_type\n  Value error, Unsupported "
            "accelerator type: BOGUS [type=value_error, input_value='BOGUS', input_type=str]\n"
            "    For further information visit https://errors.pydantic.dev/2.14/v/value_error",
            "1 validation error for LLMConfig: accelerator_type: Value error, Unsupported "
            "accelerator type: BOGUS",
        ),
    ],
)
def test_summarize_error(message: str, summary: str) -> None:
    assert summarize_error(message) == summary


def test_the_cpu_engine_on_logical_gpus_is_placed_by_its_gpus() -> None:
    holds = EngineSettings(EngineMode.CPU, "H20", 1, "/hf", cpu_holds_gpus=True)
    two_singles = (
        NodeResources("n1", {"GPU": 1.0, "CPU": 8.0, **H20}, {"GPU": 1.0, "CPU": 8.0, **H20}),
        NodeResources("n2", {"GPU": 1.0, "CPU": 8.0, **H20}, {"GPU": 1.0, "CPU": 8.0, **H20}),
    )
    waiting = plan([rec(gpus=2)], obs(app=None, nodes=two_singles), None, holds, NOW)
    assert triggers(waiting) == {"a": Trigger.PENDING_RESOURCES}
    assert waiting.changes[0].payload["needs_per_replica"] == {
        "GPU": 2.0,
        "CPU": 1.0,
        "accelerator_type:H20": 0.001,
    }
    one_double = (
        NodeResources("n3", {"GPU": 2.0, "CPU": 8.0, **H20}, {"GPU": 2.0, "CPU": 8.0, **H20}),
    )
    placed = plan([rec(gpus=2)], obs(app=None, nodes=one_double), None, holds, NOW)
    assert triggers(placed) == {"a": Trigger.APPLIED}
    assert placed.free["n3"]["GPU"] == 0.0


def test_claims_of_submitted_tasks_are_taken_first() -> None:
    node = (NodeResources("n1", {"GPU": 2.0, "CPU": 8.0, **H20}, {"GPU": 2.0, "CPU": 8.0, **H20}),)
    p = plan([rec(gpus=2)], obs(app=None, nodes=node), None, GPU, NOW, [{"GPU": 1.0}])
    assert triggers(p) == {"a": Trigger.PENDING_RESOURCES}
    assert p.free["n1"]["GPU"] == 1.0


def test_gpus_of_another_type_do_not_fit() -> None:
    a100 = {"GPU": 8.0, "CPU": 64.0, "accelerator_type:A100": 1.0}
    nodes = (NodeResources("n1", a100, dict(a100)),)
    p = plan([rec(gpus=1)], obs(app=None, nodes=nodes), None, GPU, NOW)
    assert triggers(p) == {"a": Trigger.PENDING_RESOURCES}


# -- autoscaling (issue 14) ----------------------------------------------------------------
def auto(
    key: str = "a", state: ServeState = S.RUNNING, low: int = 0, ready: int = 0, **kw: Any
) -> ModelRecord:
    """A model of `low` to 2 replicas, applied (generation 1 observed)."""
    scaling = {"min_replicas": low, "max_replicas": 2, "idle_seconds": 10}
    spec = ResolvedServingSpec.model_validate(
        {"model_id": key, "model_source": f"/m/{key}", "autoscaling": scaling}
    )
    return replace(rec(key, state, obs=1, ready=ready, **kw), spec=spec)


def test_an_autoscaled_model_is_placed_by_its_minimum_and_settles_at_zero() -> None:
    queued = replace(auto(state=S.QUEUED), observed_generation=0)
    full = cpu_nodes(free=1.0)  # no room for one replica (2 CPUs), room for zero
    p = plan([queued], obs(app=None, nodes=full), None, CPU, NOW)
    assert triggers(p) == {"a": Trigger.APPLIED}
    assert p.changes[0].payload["autoscaling"]["max_replicas"] == 2
    config = p.app[0].llm_config["deployment_config"]
    assert "num_replicas" not in config
    assert config["autoscaling_config"]["min_replicas"] == 0
    assert config["autoscaling_config"]["downscale_to_zero_delay_s"] == 10.0
    deploying = auto(state=S.DEPLOYING)
    p = plan([deploying], obs({"a": dep("HEALTHY", 0)}), applied(deploying), CPU, NOW)
    assert triggers(p) == {"a": Trigger.READY}
    assert p.changes[0].ready_replicas == 0


def test_serve_moving_an_autoscaled_model_is_an_event_with_its_reason() -> None:
    m = auto(ready=1)
    last = applied(m)
    p = plan([m], obs({"a": dep("UPSCALING", 2)}), last, CPU, NOW)
    assert triggers(p) == {"a": Trigger.AUTOSCALED}
    assert p.changes[0].payload == {"from": 1, "to": 2, "reason": "load"}
    assert p.changes[0].ready_replicas == 2
    two = replace(m, ready_replicas=2)
    p = plan([two], obs({"a": dep("DOWNSCALING", 0)}), last, CPU, NOW)
    assert p.changes[0].payload == {"from": 2, "to": 0, "reason": "idle"}
    assert not p.apply  # nothing to apply: Serve did it
    # Below its minimum it is DEGRADED, as a fixed count would be.
    kept = auto(low=1, ready=1)
    p = plan([kept], obs({"a": dep("UNHEALTHY", 0, 1)}), applied(kept), CPU, NOW)
    assert triggers(p) == {"a": Trigger.DEGRADED}


def test_a_model_at_zero_without_room_is_refused_by_the_ingress_until_there_is() -> None:
    m = auto()
    last = applied(m)
    full = cpu_nodes(free=1.0)
    p = plan([m], obs({"a": dep("HEALTHY", 0)}, full), last, CPU, NOW)
    assert triggers(p) == {"a": Trigger.NO_ROOM}
    assert p.gate["no_room"] == ["u-202611281200-a"]
    assert p.apply  # the gate changed: the ingress is reconfigured in place
    again = plan(
        [replace(m, no_room_reported=True)], obs({"a": dep("HEALTHY", 0)}, full), last, CPU, NOW
    )
    assert again.changes == () and again.gate["no_room"] == ["u-202611281200-a"]
    # A replica starting (a request arrived) is not "no room"; nor is a free node.
    assert "no_room" not in plan([m], obs({"a": dep("UPSCALING", 0, 1)}, full), last, CPU, NOW).gate
    assert "no_room" not in plan([m], obs({"a": dep("HEALTHY", 0)}), last, CPU, NOW).gate


def test_scaling_an_autoscaled_model_changes_no_code_version() -> None:
    m = auto()
    fixed = rec("a", S.RUNNING, obs=1, target=2, ready=2)
    a = build_llm_config(m.model_id, m.spec, CPU)  # type: ignore[arg-type]
    b = build_llm_config(fixed.model_id, fixed.spec, CPU)  # type: ignore[arg-type]
    assert a["deployment_config"] != b["deployment_config"]
    assert llm_server_version(a) == llm_server_version(b)
