from __future__ import annotations

from typing import Any

import pytest

from argus.cluster.serve_app import EngineMode, deployment_name, llm_server_version
from argus.serving.llm_config import (
    NO_MEDIA_HOSTS,
    EngineSettings,
    build_llm_config,
    replica_demand,
)
from argus.serving.spec import ResolvedServingSpec
from argus.yamlspec import SpecInvalid

pytestmark = pytest.mark.unit
GPU = EngineSettings(EngineMode.GPU, "H20", 1, "/private/.hf-home")
CPU = EngineSettings(EngineMode.CPU, None, 3, "/data/.hf-home")


def stored(gpus: int = 1, replicas: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "model_id": "smol",
        "model_source": "/private/hf/m",
        "num_replicas": replicas,
        "gpus_per_replica": gpus,
        "engine_kwargs": kw,
    }


def spec(gpus: int = 1, replicas: int = 1, **kw: Any) -> ResolvedServingSpec:
    return ResolvedServingSpec.from_stored(stored(gpus, replicas, **kw))


NO_MEDIA = {"allowed_media_domains": list(NO_MEDIA_HOSTS)}


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_gpu_mode(gpus: int) -> None:
    c = build_llm_config("alice-202611281200-smol", spec(gpus, 3, max_model_len=4096), GPU)
    assert c["model_loading_config"] == {
        "model_id": "alice-202611281200-smol",
        "model_source": "/private/hf/m",
    }
    assert c["deployment_config"] == {
        "num_replicas": 3,
        "graceful_shutdown_timeout_s": 300,
        "max_constructor_retry_count": 2,
    }
    assert c["engine_kwargs"] == {"max_model_len": 4096, "tensor_parallel_size": gpus, **NO_MEDIA}
    assert c["accelerator_type"] == "H20"
    assert c["placement_group_config"] == {
        "bundles": [{"GPU": 1}] * gpus,
        "strategy": "STRICT_PACK",
    }
    env = c["runtime_env"]["env_vars"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HOME"] == "/private/.hf-home"
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert replica_demand(spec(gpus), GPU) == {
        "GPU": gpus,
        "CPU": 1.0,
        "accelerator_type:H20": 0.001,
    }


def test_cpu_mode() -> None:
    c = build_llm_config("m", spec(1, 2), CPU)
    assert "accelerator_type" not in c
    assert c["accelerator_config"] == {"kind": "cpu"}
    assert c["placement_group_config"]["bundles"] == [{"CPU": 1}]
    assert c["engine_kwargs"] == {
        "tensor_parallel_size": 1,
        "dtype": "float32",
        "enforce_eager": True,
        "use_fp64_gumbel": True,
        **NO_MEDIA,
    }
    compiled = build_llm_config("m", spec(enforce_eager=False), CPU)
    assert compiled["engine_kwargs"]["enforce_eager"] is False
    assert c["runtime_env"]["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert c["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert replica_demand(spec(), CPU) == {"CPU": 2.0}


HOLDS = EngineSettings(EngineMode.CPU, "H20", 1, "/data/.hf-home", cpu_holds_gpus=True)


@pytest.mark.parametrize("gpus", [1, 2])
def test_cpu_engine_on_logical_gpus_places_like_gpu_mode(gpus: int) -> None:
    c = build_llm_config("m", spec(gpus), HOLDS)
    assert c["placement_group_config"] == {
        "bundles": [{"GPU": 1, "accelerator_type:H20": 0.001}] * gpus,
        "strategy": "STRICT_PACK",
    }
    # the engine stays vLLM's CPU build: Ray refuses accelerator_type with a CPU config
    assert "accelerator_type" not in c and c["accelerator_config"] == {"kind": "cpu"}
    assert c["engine_kwargs"] == {
        "tensor_parallel_size": gpus,
        "dtype": "float32",
        "enforce_eager": True,
        "use_fp64_gumbel": True,
        **NO_MEDIA,
    }
    env = c["runtime_env"]["env_vars"]
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env.get("VLLM_CPU_OMP_THREADS_BIND") == ("nobind" if gpus > 1 else None)
    assert replica_demand(spec(gpus), HOLDS) == replica_demand(spec(gpus), GPU)
    assert replica_demand(spec(gpus), HOLDS)["GPU"] == gpus


def test_logical_gpus_without_an_accelerator_type_and_only_in_cpu_mode() -> None:
    bare = EngineSettings(EngineMode.CPU, None, 1, "/hf", cpu_holds_gpus=True)
    assert build_llm_config("m", spec(), bare)["placement_group_config"]["bundles"] == [{"GPU": 1}]
    ignored = EngineSettings(EngineMode.GPU, "H20", 1, "/hf", cpu_holds_gpus=True)
    plain = EngineSettings(EngineMode.GPU, "H20", 1, "/hf")
    assert build_llm_config("m", spec(2), ignored) == build_llm_config("m", spec(2), plain)
    assert replica_demand(spec(), CPU) == {"CPU": 2.0}


@pytest.mark.parametrize(
    "option", ["tensor_parallel_size", "trust_remote_code", "allowed_media_domains", "model"]
)
def test_a_stored_spec_cannot_set_what_argus_sets_or_refuses(option: str) -> None:
    """A spec written into the database by a restore or by hand is checked again when read."""
    with pytest.raises(SpecInvalid, match=f"engine_kwargs.{option}: not allowed"):
        ResolvedServingSpec.from_stored(stored(2, **{option: True}))


def test_a_stored_spec_with_a_broken_field_is_refused_when_read() -> None:
    with pytest.raises(SpecInvalid, match="num_replicas"):
        ResolvedServingSpec.from_stored(stored(replicas=0))
    with pytest.raises(SpecInvalid, match="not a mapping"):
        ResolvedServingSpec.from_stored(["not", "a", "spec"])


def test_media_urls_reach_only_the_configured_hosts() -> None:
    c = build_llm_config("m", spec(), CPU)
    assert c["engine_kwargs"]["allowed_media_domains"] == list(NO_MEDIA_HOSTS)
    assert all(h.endswith(".invalid") for h in NO_MEDIA_HOSTS)  # a reserved, unreachable domain
    assert c["runtime_env"]["env_vars"]["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    open_to = EngineSettings(EngineMode.CPU, None, 1, "/hf", allowed_media_domains=("img.lan",))
    assert build_llm_config("m", spec(), open_to)["engine_kwargs"]["allowed_media_domains"] == [
        "img.lan"
    ]


def test_version_ignores_the_replica_count_only() -> None:
    one, two = (
        build_llm_config("m", spec(replicas=1), CPU),
        build_llm_config("m", spec(replicas=2), CPU),
    )
    assert llm_server_version(one) == llm_server_version(two)
    longer = build_llm_config("m", spec(max_model_len=512), CPU)
    assert llm_server_version(longer) != llm_server_version(one)
    assert llm_server_version(build_llm_config("other", spec(), CPU)) != llm_server_version(one)


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("alice-202611281200-smol", "LLMServer:alice-202611281200-smol"),
        ("bob-202611281200-Qwen2.5", "LLMServer:bob-202611281200-Qwen2_5"),
    ],
)
def test_deployment_name(model_id: str, name: str) -> None:
    assert deployment_name(model_id) == name
