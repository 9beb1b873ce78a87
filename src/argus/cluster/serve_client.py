"""The ServeClient protocol: everything argus asks of Ray, and the plain values it gets back.

Only the control loop calls it. The real one is `RayServeClient`, which runs in the Ray
agent process; the tests' `FakeServeClient` is a steppable stand-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ModelDeployment:
    """One model to put into the app: its public id and its LLMConfig (a dict)."""

    model_id: str
    llm_config: dict[str, Any]


_SERVING_STATES = ("RUNNING", "UPDATING")


@dataclass(frozen=True)
class DeploymentStatus:
    status: str  # Serve's DeploymentStatus: UPDATING, HEALTHY, UNHEALTHY, DEPLOY_FAILED, ...
    message: str
    replica_states: dict[str, int]  # Serve's ReplicaState name -> count

    @property
    def serving_replicas(self) -> int:
        """Replicas up and serving: RUNNING ones, and those Serve reconfigures in place
        (UPDATING: a model made autoscaled, or fixed again). Such a replica keeps its actor
        and engine; Serve holds its requests for the moment of the reconfigure and loses
        none, so it is no lost replica (no DEGRADED), nor a scale-down."""
        return sum(self.replica_states.get(state, 0) for state in _SERVING_STATES)


@dataclass(frozen=True)
class NodeResources:
    node_id: str
    total: dict[str, float]
    available: dict[str, float]
    alive: bool = True


@dataclass(frozen=True)
class ServeObservation:
    """What Serve and Ray report at one moment."""

    app_status: str | None  # None: the application does not exist
    app_message: str = ""
    deployments: dict[str, DeploymentStatus] = field(default_factory=dict)  # by deployment name
    nodes: tuple[NodeResources, ...] = ()
    proxies: dict[str, str] = field(default_factory=dict)  # node id -> proxy status

    @property
    def app_exists(self) -> bool:
        return self.app_status is not None


class ApplyError(RuntimeError):
    """The app could not be built; `model_id` names the model at fault when known."""

    def __init__(self, message: str, model_id: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id


class ClusterBusy(ConnectionError):
    """Ray took the call but did not answer in time: busy, not gone (an apply on two loaded
    cores took 38 s, and the calls after it waited for it). The control loop reads it as
    "unreachable" only once it has lasted (`argus.runtime.loop.BUSY_IS_LOST_AFTER_S`)."""


@dataclass(frozen=True)
class UsageBatch:
    """Usage rows drained from the sink under an id (`argus.cluster.usage_sink`)."""

    batch: str
    rows: tuple[dict[str, Any], ...]


class ServeClient(Protocol):
    def ensure_serve(self) -> None:
        """Connect to Ray and start Serve (HTTP port and proxy location from the config)."""

    def ping(self) -> None:
        """Raise if the Ray cluster cannot be reached."""

    def apply(self, app_name: str, models: Sequence[ModelDeployment], gate: dict[str, Any]) -> None:
        """Deploy the app with exactly these models; returns without waiting for it.

        `gate` is who may call which model (`argus.cluster.access`): the ingress's
        `user_config`, so a change of it alone reconfigures the ingress in place.
        Raises ApplyError naming the model whose config Ray Serve LLM refuses."""

    def delete_app(self, app_name: str) -> None:
        """Remove the app; returns without waiting for it."""

    def check(self, models: Sequence[ModelDeployment]) -> dict[str, str]:
        """Each model whose LLMConfig Ray Serve LLM's own model refuses, with the reason."""

    def observe(self, app_name: str) -> ServeObservation:
        """The app's and each deployment's status, and the cluster's resources per node."""

    def drain_usage(self) -> UsageBatch | None:
        """The usage sink's batch out (the same one until it is acked), or None."""

    def ack_usage(self, batch: str) -> None:
        """argus stored the batch: the sink forgets it."""


def observation_to_json(observed: ServeObservation) -> dict[str, Any]:
    """A ServeObservation as plain JSON (what the Ray agent answers)."""
    return {
        "app_status": observed.app_status,
        "app_message": observed.app_message,
        "deployments": {
            name: {"status": d.status, "message": d.message, "replica_states": d.replica_states}
            for name, d in observed.deployments.items()
        },
        "nodes": [
            {"node_id": n.node_id, "total": n.total, "available": n.available, "alive": n.alive}
            for n in observed.nodes
        ],
        "proxies": observed.proxies,
    }


def observation_from_json(data: dict[str, Any]) -> ServeObservation:
    """The other way; plain values only (JSON, never pickle, crosses the process boundary)."""
    return ServeObservation(
        app_status=data["app_status"],
        app_message=str(data.get("app_message", "")),
        deployments={
            str(name): DeploymentStatus(
                status=str(d["status"]),
                message=str(d.get("message", "")),
                replica_states={str(k): int(v) for k, v in d.get("replica_states", {}).items()},
            )
            for name, d in data.get("deployments", {}).items()
        },
        nodes=tuple(
            NodeResources(
                node_id=str(n["node_id"]),
                total={str(k): float(v) for k, v in n["total"].items()},
                available={str(k): float(v) for k, v in n["available"].items()},
                alive=bool(n.get("alive", True)),
            )
            for n in data.get("nodes", [])
        ),
        proxies={str(k): str(v) for k, v in data.get("proxies", {}).items()},
    )
