"""Fakes of the two Ray boundaries, for tests: a ServeClient and a JobClient.

`FakeServeClient.apply` puts deployments into UPDATING with STARTING replicas; a test
then calls `set_ready`, `set_unhealthy`, `fail` or `lose_replicas` to move them, as
Serve would. `FakeJobClient` records submitted jobs as PENDING; a test calls
`start`, `finish` or `vanish`. A running fake job holds its resources on the fake
Serve client's first node that has room, as a Ray job's driver would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from argus.cluster.job_client import JobInfo, JobStatus, JobSubmission
from argus.cluster.placement import node_fits, take
from argus.cluster.serve_app import INGRESS_DEPLOYMENT, deployment_name
from argus.cluster.serve_client import (
    ClusterBusy,
    DeploymentStatus,
    ModelDeployment,
    NodeResources,
    ServeObservation,
    UsageBatch,
)
from argus.cluster.usage_sink import UsageSink


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
    busy: bool = False  # takes every call and answers none in time
    serve_started: bool = False
    apply_calls: list[list[str]] = field(default_factory=list)
    delete_calls: int = 0
    app_name: str | None = None
    deployments: dict[str, _FakeDeployment] = field(default_factory=dict)
    apply_error: str | None = None
    refuse: dict[str, str] = field(default_factory=dict)  # model id suffix -> Ray's reason
    held: dict[str, dict[str, float]] = field(default_factory=dict)  # node -> held by jobs
    gate: dict[str, Any] = field(default_factory=dict)  # the access table last applied
    usage: UsageSink = field(default_factory=UsageSink)  # the real sink, in this process

    # -- the protocol ---------------------------------------------------------
    def ensure_serve(self) -> None:
        self._check()
        self.serve_started = True

    def ping(self) -> None:
        self._check()

    def apply(self, app_name: str, models: Sequence[ModelDeployment], gate: dict[str, Any]) -> None:
        self._check()
        if self.apply_error:
            raise RuntimeError(self.apply_error)
        self.apply_calls.append(sorted(m.model_id for m in models))
        self.gate = gate
        self.app_name = app_name
        wanted = {deployment_name(m.model_id): m for m in models}
        for name in list(self.deployments):
            if name not in wanted:
                del self.deployments[name]
        for name, m in wanted.items():
            current = self.deployments.get(name)
            same_code = current is not None and _code(current.config) == _code(m.llm_config)
            replicas = _replicas(m.llm_config, current.running if same_code and current else None)
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

    def drain_usage(self) -> UsageBatch | None:
        self._check()
        got = self.usage.drain()
        return None if got is None else UsageBatch(got["batch"], tuple(got["rows"]))

    def ack_usage(self, batch: str) -> None:
        self._check()
        self.usage.ack(batch)

    def check(self, models: Sequence[ModelDeployment]) -> dict[str, str]:
        self._check()
        return {
            m.model_id: reason
            for m in models
            for suffix, reason in self.refuse.items()
            if m.model_id.endswith(f"-{suffix}")
        }

    def disconnect(self) -> None:
        self.serve_started = False

    def delete_app(self, app_name: str) -> None:
        self._check()
        self.delete_calls += 1
        self.app_name = None
        self.deployments.clear()

    def _nodes(self) -> tuple[NodeResources, ...]:
        """The nodes as Ray reports them: less what jobs and running replicas hold."""
        avail = {n.node_id: dict(n.available) for n in self.nodes}
        for node_id, held in self.held.items():
            for k, v in held.items():
                avail[node_id][k] = avail[node_id].get(k, 0.0) - v
        for d in self.deployments.values():
            demand = _replica_demand(d.config)
            for _ in range(d.running):
                for node in avail.values():
                    if node_fits(demand, node):
                        take(demand, node)
                        break
        return tuple(
            NodeResources(n.node_id, n.total, avail[n.node_id], n.alive) for n in self.nodes
        )

    def hold(self, demand: dict[str, float]) -> str | None:
        """Take `demand` on the first node with room; the node id, or None."""
        for n in self._nodes():
            if n.alive and node_fits(demand, n.available):
                held = self.held.setdefault(n.node_id, {})
                for k, v in demand.items():
                    held[k] = held.get(k, 0.0) + v
                return n.node_id
        return None

    def release(self, node_id: str, demand: dict[str, float]) -> None:
        held = self.held.get(node_id, {})
        for k, v in demand.items():
            held[k] = held.get(k, 0.0) - v

    def observe(self, app_name: str) -> ServeObservation:
        self._check()
        if self.app_name != app_name:
            return ServeObservation(None, nodes=self._nodes())
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
        return ServeObservation(app_status, "", deps, self._nodes(), {"node-1": "HEALTHY"})

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

    def autoscale(self, model_id: str, running: int) -> None:
        """Serve's autoscaler moved the model to `running` replicas (within its range)."""
        d = self._dep(model_id)
        scaling = d.config["deployment_config"]["autoscaling_config"]  # type: ignore[index]
        assert scaling["min_replicas"] <= running <= scaling["max_replicas"]
        d.running, d.starting, d.status = running, 0, "HEALTHY"

    def restart_cluster(self) -> None:
        """Ray restarted: every app is gone."""
        self.app_name = None
        self.deployments.clear()
        self.serve_started = False

    def _check(self) -> None:
        if not self.reachable:
            raise ConnectionError("Ray cluster unreachable")
        if self.busy:
            raise ClusterBusy("the Ray agent took the call but did not answer in 20 s")

    def is_deployed(self, model_id: str) -> bool:
        return deployment_name(model_id) in self.deployments


def _replica_demand(config: dict[str, object]) -> dict[str, float]:
    """A replica's placement bundles plus the replica actor's CPU, as Ray would hold them."""
    demand = {"CPU": 1.0}
    pg = config.get("placement_group_config")
    bundles = pg.get("bundles", []) if isinstance(pg, dict) else []
    for bundle in bundles:
        for k, v in bundle.items():
            demand[k] = demand.get(k, 0.0) + float(v)
    return demand


def _replicas(config: dict[str, Any], running: int | None) -> int:
    """The replicas Serve targets: the count, or an autoscaled deployment's current number
    kept within its range (its minimum when it is new)."""
    deployment = config["deployment_config"]
    scaling = deployment.get("autoscaling_config")
    if scaling is None:
        return int(deployment["num_replicas"])
    low, high = int(scaling["min_replicas"]), int(scaling["max_replicas"])
    return low if running is None else min(max(running, low), high)


def _code(config: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in config.items() if k != "deployment_config"}


@dataclass
class _FakeJob:
    submission: JobSubmission
    status: JobStatus = JobStatus.PENDING
    message: str = "Job has not started yet."
    exit_code: int | None = None
    node: str | None = None


@dataclass
class FakeJobClient:
    serve: FakeServeClient | None = None  # whose nodes running jobs hold resources on
    reachable: bool = True
    submit_error: str | None = None
    stop_takes_effect: bool = True  # False: a stop is asked for but the job keeps running
    submitted: dict[str, _FakeJob] = field(default_factory=dict)
    stop_calls: list[str] = field(default_factory=list)

    # -- the protocol ---------------------------------------------------------
    def submit(self, job: JobSubmission) -> None:
        self._check()
        if self.submit_error:
            raise RuntimeError(self.submit_error)
        if job.job_id in self.submitted:
            raise RuntimeError(f"Job with submission_id {job.job_id} already exists.")
        self.submitted[job.job_id] = _FakeJob(job)

    def jobs(self, prefix: str) -> dict[str, JobInfo]:
        self._check()
        return {
            job_id: JobInfo(job_id, j.status, j.message, j.exit_code)
            for job_id, j in self.submitted.items()
            if job_id.startswith(prefix)
        }

    def stop(self, job_id: str) -> None:
        self._check()
        self.stop_calls.append(job_id)
        job = self.submitted[job_id]
        if self.stop_takes_effect and not job.status.is_terminal:
            self._end(job, JobStatus.STOPPED, "Job was intentionally stopped.", -15)

    # -- steps a test takes ---------------------------------------------------
    def start(self, job_id: str) -> None:
        job = self.submitted[job_id]
        if self.serve is not None:
            job.node = self.serve.hold(self._demand(job))
            if job.node is None:
                raise AssertionError(f"{job_id} does not fit any node; Ray would keep it PENDING")
        job.status, job.message = JobStatus.RUNNING, "Job is currently running."

    def finish(self, job_id: str, exit_code: int = 0, message: str = "") -> None:
        job = self.submitted[job_id]
        if exit_code == 0:
            self._end(job, JobStatus.SUCCEEDED, message or "Job finished successfully.", 0)
        else:
            text = message or f"Job entrypoint command failed with exit code {exit_code}"
            self._end(job, JobStatus.FAILED, text, exit_code)

    def vanish(self, job_id: str) -> None:
        """The cluster forgot the job (Ray restarted)."""
        job = self.submitted.pop(job_id)
        self._release(job)

    def _end(self, job: _FakeJob, status: JobStatus, message: str, code: int) -> None:
        self._release(job)
        job.status, job.message, job.exit_code = status, message, code

    def _release(self, job: _FakeJob) -> None:
        if self.serve is not None and job.node is not None:
            self.serve.release(job.node, self._demand(job))
            job.node = None

    @staticmethod
    def _demand(job: _FakeJob) -> dict[str, float]:
        s = job.submission
        demand = {"CPU": s.num_cpus, **s.resources}
        if s.num_gpus:
            demand["GPU"] = s.num_gpus
        return demand

    def _check(self) -> None:
        if not self.reachable:
            raise ConnectionError("Ray's job API unreachable")
