"""`build_llm_config`: a resolved spec -> the LLMConfig (as a plain dict) Ray Serve LLM takes.

Pure: no Ray import, so it is tested table-driven without a cluster. The Ray agent
turns the dict into `ray.serve.llm.LLMConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from argus.cluster.placement import gpu_demand
from argus.cluster.serve_app import LLM_GRACEFUL_SHUTDOWN_S, EngineMode
from argus.serving.spec import ResolvedServingSpec
from argus.storage import offline_hf_env

# Media a request may make an engine fetch: `data:` URLs always; http(s) only from these
# hosts. vLLM reads an empty list as "any host", so with none configured argus names a
# host under the reserved `.invalid` domain, which no URL can reach: a vision model cannot
# be made to probe the private network.
NO_MEDIA_HOSTS = ("media-urls-are-off.invalid",)
CONSTRUCTOR_TRIES = 2
# Load must last this long (Serve averages it over its 30 s look-back) before a replica is
# added: Ray's default is 30 s, on top of an engine start of half a minute or more.
UPSCALE_DELAY_S = 5.0
# How often the ingress's handle records its queue and sends it to Serve's controller
# (Ray's default 10 s). Ray 2.60's router reads this field, not the environment variable
# its deprecation note names; a request that finds zero replicas pushes at once, but what
# it pushes is the queue as last recorded, so Serve started a replica 8.7-9.1 s after the
# first request at 10 s, and 1.0-1.3 s after it at 1 s (bench/autoscaling_probe.py). It
# costs one small call a second to the controller per autoscaled model and ingress replica.
METRICS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class EngineSettings:
    mode: EngineMode
    accelerator_type: str | None
    cpu_kvcache_space_gib: int
    hf_cache: str  # HF_HOME for the replicas; nothing is downloaded into it
    # CPU mode only: each replica's bundles hold gpus_per_replica logical GPUs, as in
    # GPU mode, while vLLM's CPU build runs the engine. For placement tests on nodes
    # that declare GPUs they do not have (`ray start --num-gpus=N`).
    cpu_holds_gpus: bool = False
    allowed_media_domains: tuple[str, ...] = ()

    @property
    def holds_gpus(self) -> bool:
        """Replicas hold GPUs in Ray's books (GPU mode, or the CPU engine on logical GPUs)."""
        return self.mode is EngineMode.GPU or self.cpu_holds_gpus


def runtime_env_defaults(engine: EngineSettings) -> dict[str, str]:
    env = {
        **offline_hf_env(engine.hf_cache),
        "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "0",  # a redirect must not leave the allowed hosts
    }
    if engine.mode is EngineMode.CPU:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(engine.cpu_kvcache_space_gib)
    return env


def build_llm_config(
    model_id: str, spec: ResolvedServingSpec, engine: EngineSettings
) -> dict[str, Any]:
    """The LLMConfig for one model: its public id, local weights, replicas and placement."""
    gpus = spec.gpus_per_replica
    engine_kwargs: dict[str, Any] = {
        **spec.engine_kwargs.given(),
        "tensor_parallel_size": gpus,
        "allowed_media_domains": list(engine.allowed_media_domains or NO_MEDIA_HOSTS),
    }
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": model_id, "model_source": spec.model_source},
        "deployment_config": {
            **replicas_config(spec),
            "graceful_shutdown_timeout_s": LLM_GRACEFUL_SHUTDOWN_S,
            # An engine that does not start seldom starts on a third try (a bad config,
            # weights, no memory): Serve's default of three tries a replica made a broken
            # model take a minute to say FAILED here; two say it in half that.
            "max_constructor_retry_count": CONSTRUCTOR_TRIES,
        },
        "engine_kwargs": engine_kwargs,
        "runtime_env": {"env_vars": runtime_env_defaults(engine)},
    }
    if engine.mode is EngineMode.GPU:
        # One bundle per GPU, all on one node: a replica's tensor-parallel group
        # must not span nodes (design D5).
        config["accelerator_type"] = engine.accelerator_type
        config["placement_group_config"] = {
            "bundles": [{"GPU": 1} for _ in range(gpus)],
            "strategy": "STRICT_PACK",
        }
        return config
    # vLLM's CPU engine: no accelerator_type (Ray refuses it with a CPU accelerator
    # config), and float32, since bfloat16 answers nonsense there (design D6).
    engine_kwargs["dtype"] = "float32"
    # torch.compile on the CPU engine cost 170-250 s per first start of a model on
    # 2 cores against 57 s eager, for 14% lower latency (0.83 s vs 0.96 s p50 on a
    # short chat); eager unless the spec asks otherwise.
    engine_kwargs.setdefault("enforce_eager", True)
    # vLLM's CPU sampler draws its fp32 noise in a torch.compile'd function, compiled by
    # gcc in each engine at its first sampled request (23-26 s of CPU per fresh kernel
    # cache here, 1.3 s per engine with a warm one, and a C++ compiler the laptop must
    # have). Its fp64 noise is drawn eagerly, and keeps the lower tail fp32 truncates.
    engine_kwargs["use_fp64_gumbel"] = True
    config["accelerator_config"] = {"kind": "cpu"}
    if engine.cpu_holds_gpus:
        # GPU mode's placement: one logical GPU a bundle, the accelerator type as the
        # bundle resource Ray itself adds in GPU mode (0.001 of accelerator_type:<T>).
        bundles = [gpu_demand(1, engine.accelerator_type) for _ in range(gpus)]
        if gpus > 1:
            # The CPU engine pins each tensor-parallel rank to a NUMA node of its own and
            # refuses to start with fewer ("Not enough allowed NUMA nodes to bind threads
            # of 2 local CPUWorkers"); unpinned, TP=2 ran on one NUMA node here.
            env_vars = config["runtime_env"]["env_vars"]
            env_vars.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    else:
        bundles = [{"CPU": 1}]
    config["placement_group_config"] = {"bundles": bundles, "strategy": "STRICT_PACK"}
    return config


def replicas_config(spec: ResolvedServingSpec) -> dict[str, Any]:
    """The deployment's replica count, or its autoscaling: Ray Serve LLM's own default
    target (1e9 requests a replica) never adds one, so argus sets each figure.

    Part of `deployment_config`, which the code version leaves out: a change scales the
    model in place, its running replicas untouched."""
    scaling = spec.autoscaling
    if scaling is None:
        return {"num_replicas": spec.num_replicas}
    return {
        "autoscaling_config": {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": UPSCALE_DELAY_S,
            "metrics_interval_s": METRICS_INTERVAL_S,
            "downscale_delay_s": float(scaling.idle_seconds),
            "downscale_to_zero_delay_s": float(scaling.idle_seconds),
        }
    }


def replica_demand(spec: ResolvedServingSpec, engine: EngineSettings) -> dict[str, float]:
    """What one replica holds on its node: its bundles plus the replica actor's CPU.

    GPUs come with the accelerator type (Ray's `accelerator_type:<type>` node label, of
    which each bundle takes 0.001), so a node with GPUs of another type does not fit.
    """
    if engine.holds_gpus:
        return {**gpu_demand(spec.gpus_per_replica, engine.accelerator_type), "CPU": 1.0}
    return {"CPU": 2.0}
