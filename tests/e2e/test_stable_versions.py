"""The private hook argus relies on: `serve.run` keeps each deployment's `_version`.

If a Ray upgrade renames or stops honouring `Deployment._version`, every apply would
restart every model's replicas; this test (and the replica-pid checks in
test_serving.py) fails first.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from argus.cluster.ray_client import build
from argus.cluster.serve_app import (
    INGRESS_DEPLOYMENT,
    INGRESS_VERSION,
    LLM_GRACEFUL_SHUTDOWN_S,
    ROUTES,
    EngineMode,
    deployment_name,
    llm_server_version,
)
from argus.cluster.serve_client import ModelDeployment
from argus.serving.llm_config import EngineSettings, build_llm_config
from argus.serving.spec import ResolvedServingSpec
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def test_built_app_keeps_the_pinned_versions(stack: Stack) -> None:
    import ray
    from ray.serve._private.build_app import build_app

    engine = EngineSettings(EngineMode.CPU, None, 1, "/hf")
    spec = ResolvedServingSpec.from_stored(
        {
            "model_id": "x",
            "model_source": "/m",
            "num_replicas": 2,
            "gpus_per_replica": 1,
            "engine_kwargs": {},
        }
    )
    configs = {m: build_llm_config(m, spec, engine) for m in ("u-1-a", "u-1-Qwen2.5")}
    # Ray Serve LLM's builder reads the job's runtime env from Ray's runtime context, and
    # Ray starts a local instance for that when no driver is connected: one in /tmp/ray,
    # on Ray's default ports, beside whatever runs there. This test connects to the
    # stack's head, as the agent that builds the app is.
    address = f"127.0.0.1:{stack.env['ARGUS_RAY_PORT_BASE']}"
    ray.init(address=address, namespace="argus-test", log_to_driver=False)
    try:
        gate = {"principals": {}, "models": {m: {"owner": "u"} for m in configs}}
        app = build([ModelDeployment(m, c) for m, c in configs.items()], gate)
        built = build_app(app, name="argus-llm", make_deployment_handle=lambda d, a: None)
        versions = {d.name: d._version for d in built.deployments}
        assert versions == {
            deployment_name("u-1-a"): llm_server_version(configs["u-1-a"]),
            deployment_name("u-1-Qwen2.5"): llm_server_version(configs["u-1-Qwen2.5"]),
            INGRESS_DEPLOYMENT: INGRESS_VERSION,
        }
        for d in built.deployments:
            if d.name == INGRESS_DEPLOYMENT:  # reconfigured in place: access and routes
                user_config = d._deployment_config.user_config
                assert {k: v for k, v in user_config.items() if k != ROUTES} == gate
                routes = user_config[ROUTES]
                assert sorted(routes) == sorted(configs)
                assert routes["u-1-a"]["id"] == "u-1-a" and routes["u-1-a"]["object"] == "model"
            else:
                assert d._deployment_config.num_replicas == 2
                assert d._deployment_config.graceful_shutdown_timeout_s == LLM_GRACEFUL_SHUTDOWN_S
        # One model fewer: the same ingress version, so Serve reconfigures it, not replaces it.
        fewer = build([ModelDeployment("u-1-a", configs["u-1-a"])], gate)
        built = build_app(fewer, name="argus-llm", make_deployment_handle=lambda d, a: None)
        (ingress,) = [d for d in built.deployments if d.name == INGRESS_DEPLOYMENT]
        assert ingress._version == INGRESS_VERSION
        assert list(ingress._deployment_config.user_config[ROUTES]) == ["u-1-a"]
    finally:
        ray.shutdown()


def test_ray_serve_client_reports_the_live_app(stack: Stack, smol: tuple[str, str]) -> None:
    import ray

    from argus.cluster.ray_client import RayServeClient
    from argus.cluster.serve_client import ApplyError, ModelDeployment

    address = f"127.0.0.1:{stack.env['ARGUS_RAY_PORT_BASE']}"
    port = int(stack.env["ARGUS_SERVE_PORT"])
    client = RayServeClient(address, "127.0.0.1", port, "HeadOnly")
    try:
        with pytest.raises(RuntimeError, match="not connected"):
            client.ping()
        client.ensure_serve()  # Serve already runs: a no-op
        client.ping()
        assert client.cluster_resources()["CPU"] == 16.0
        observed = client.observe("argus-llm")
        assert observed.app_status == "RUNNING"
        assert observed.deployments[INGRESS_DEPLOYMENT].status == "HEALTHY"
        (node,) = observed.nodes
        assert node.total["CPU"] == 16.0 and node.available["CPU"] < 16.0
        assert not any("_group_" in k for k in node.available)
        assert client.observe("no-such-app").app_status is None
        # The reconciler observes while the API checks a spec, from the agent's threads:
        # each is judged alone (a check builds configs under a lock; observe parses none).
        good = _deployment("u-1-x")
        with ThreadPoolExecutor(8) as pool:
            seen = list(
                pool.map(
                    lambda i: (
                        client.observe("argus-llm").app_status if i % 2 else client.check([good])
                    ),
                    range(96),
                )
            )
        assert seen == [{}, "RUNNING"] * 48
        with pytest.raises(ApplyError) as e:
            client.apply("argus-llm", [ModelDeployment("bad", {"model_loading_config": 5})], {})
        assert e.value.model_id == "bad"
        assert client.observe("argus-llm").app_status == "RUNNING"  # untouched
    finally:
        client.disconnect()
    assert not ray.is_initialized()


def test_configs_checked_from_many_threads_at_once_are_judged_alone() -> None:
    """The agent answers calls from a thread pool: checks (and applies) at once must not
    refuse a valid config (Ray's config build shares cloudpickle state across threads; a
    CI run got a 422 for a valid spec that way), and a refusal says what is wrong."""
    from argus.cluster.ray_client import RayServeClient

    good = _deployment("u-1-x")
    bad = _deployment("u-1-y")
    bad.llm_config["deployment_config"]["max_constructor_retry_count"] = 0
    client = RayServeClient("unused", "127.0.0.1", 0, "HeadOnly")  # check needs no cluster
    with ThreadPoolExecutor(8) as pool:
        judged = list(pool.map(lambda _: client.check([good, bad]), range(48)))
    assert all(set(refused) == {"u-1-y"} for refused in judged), judged
    assert "max_constructor_retry_count" in judged[0]["u-1-y"]


def test_the_request_router_is_pickled_once_and_still_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Serve pickles the request router class for each config it makes; the agent does it
    once per path (ray_client), and every later config carries the same bytes, which load
    the same router."""
    from ray.serve import config
    from ray.serve.config import RequestRouterConfig

    from argus.cluster.ray_client import RayServeClient

    client = RayServeClient("unused", "127.0.0.1", 0, "HeadOnly")  # check needs no cluster
    assert client.check([_deployment("u-1-x")]) == {}
    first = RequestRouterConfig()
    pickled: list[object] = []
    dumps = config.cloudpickle.dumps
    monkeypatch.setattr(
        config.cloudpickle, "dumps", lambda *a, **k: pickled.append(a) or dumps(*a, **k)
    )
    again = RequestRouterConfig()
    assert pickled == []
    assert again.get_serialized_request_router_cls() == first.get_serialized_request_router_cls()
    assert again.request_router_class == first.request_router_class
    assert again.get_request_router_class().__name__ == "PowerOfTwoChoicesRequestRouter"


def _deployment(model_id: str) -> ModelDeployment:
    engine = EngineSettings(EngineMode.CPU, None, 1, "/hf")
    spec = ResolvedServingSpec.from_stored(
        {"model_id": "x", "model_source": "/m", "num_replicas": 1, "gpus_per_replica": 1}
    )
    return ModelDeployment(model_id, build_llm_config(model_id, spec, engine))
