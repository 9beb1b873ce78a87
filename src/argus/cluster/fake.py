"""A ServeClient for tests: records what was applied, and lets a test step what Serve reports.

`apply` puts deployments into UPDATING with STARTING replicas; a test then calls
`set_ready`, `set_unhealthy`, `fail` or `lose_replicas` to move them, as Serve would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from argus.cluster.serve_client import (
    DeploymentStatus,
    ModelDeployment,
    NodeResources,
    ServeObservation,
)
from argus.serving.llm_config import INGRESS_DEPLOYMENT, deployment_name


@dataclass
class _FakeDeployment:
    model_id: str
    config: dict[str, object]
    status: str = "UPDATING"
    message: str = ""
    running: int = 0
    starting: int = 0
    generation: int = 0  # bumped whenever the fake "restarts" its replicas


@dataclass
class FakeServeClient:
    nodes: list[NodeResources] = field(
        default_factory=lambda: [NodeResources("node-1", {"CPU": 16.0}, {"CPU": 16.0})]
    )
    reachable: bool = True
    serve_started: bool = False
    apply_calls: list[list[str]] = field(default_factory=list)
    delete_calls: int = 0
    app_name: str | None = None
    deployments: dict[str, _FakeDeployment] = field(default_factory=dict)
    apply_error: str | None = None

    # -- the protocol ---------------------------------------------------------
    def ensure_serve(self) -> None:
        self._check()
        self.serve_started = True

    def ping(self) -> None:
        self._check()

    def apply(self, app_name: str, models: Sequence[ModelDeployment]) -> None:
        self._check()
        if self.apply_error:
            raise RuntimeError(self.apply_error)
        self.apply_calls.append(sorted(m.model_id for m in models))
        self.app_name = app_name
        wanted = {deployment_name(m.model_id): m for m in models}
        for name in list(self.deployments):
            if name not in wanted:
                del self.deployments[name]
        for name, m in wanted.items():
            replicas = int(m.llm_config["deployment_config"]["num_replicas"])
            current = self.deployments.get(name)
            same_code = current is not None and _code(current.config) == _code(m.llm_config)
            if current is not None and same_code:
                current.config = m.llm_config
                if replicas > current.running:
                    current.starting = replicas - current.running
                    current.status = "UPSCALING"
                elif replicas < current.running:
                    current.running = replicas
                    current.starting = 0
                continue
            self.deployments[name] = _FakeDeployment(m.model_id, m.llm_config, starting=replicas)

    def disconnect(self) -> None:
        self.serve_started = False

    def delete_app(self, app_name: str) -> None:
        self._check()
        self.delete_calls += 1
        self.app_name = None
        self.deployments.clear()

    def observe(self, app_name: str) -> ServeObservation:
        self._check()
        if self.app_name != app_name:
            return ServeObservation(None, nodes=tuple(self.nodes))
        deps = {
            name: DeploymentStatus(
                d.status,
                d.message,
                {k: v for k, v in (("RUNNING", d.running), ("STARTING", d.starting)) if v},
            )
            for name, d in self.deployments.items()
        }
        deps[INGRESS_DEPLOYMENT] = DeploymentStatus("HEALTHY", "", {"RUNNING": 1})
        statuses = {d.status for d in self.deployments.values()}
        app_status = (
            "DEPLOY_FAILED"
            if "DEPLOY_FAILED" in statuses
            else "RUNNING"
            if statuses <= {"HEALTHY"}
            else "DEPLOYING"
        )
        return ServeObservation(app_status, "", deps, tuple(self.nodes), {"node-1": "HEALTHY"})

    # -- steps a test takes ---------------------------------------------------
    def _dep(self, model_id: str) -> _FakeDeployment:
        return self.deployments[deployment_name(model_id)]

    def set_ready(self, model_id: str) -> None:
        d = self._dep(model_id)
        d.running += d.starting
        d.starting = 0
        d.status = "HEALTHY"

    def set_unhealthy(self, model_id: str, message: str = "replica health check failed") -> None:
        d = self._dep(model_id)
        d.status, d.message = "UNHEALTHY", message

    def fail(self, model_id: str, message: str) -> None:
        d = self._dep(model_id)
        d.status, d.message, d.running, d.starting = "DEPLOY_FAILED", message, 0, 0

    def lose_replicas(self, model_id: str, n: int = 1) -> None:
        d = self._dep(model_id)
        d.running -= n
        d.starting += n
        d.status = "UNHEALTHY"

    def restart_cluster(self) -> None:
        """Ray restarted: every app is gone."""
        self.app_name = None
        self.deployments.clear()
        self.serve_started = False

    def _check(self) -> None:
        if not self.reachable:
            raise ConnectionError("Ray cluster unreachable")

    def is_deployed(self, model_id: str) -> bool:
        return deployment_name(model_id) in self.deployments


def _code(config: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in config.items() if k != "deployment_config"}
