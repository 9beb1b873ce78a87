"""Many nodes on one machine: placement by Ray's own view, node loss and return.

A real Ray cluster of three nodes on this machine (tests/e2e/multinode.py): a head with no
GPU, a worker declaring two logical GPUs and one declaring one, both of type H20. argus
runs against it as against a real cluster (`argus up` with `ARGUS_RAY_ADDRESS`), in CPU
engine mode with `cpu_holds_gpus`, so each replica's bundles hold `gpus_per_replica`
logical GPUs while vLLM's CPU build runs the engine: real engines, placed as on GPUs.
The tests run in order and share the cluster, argus and the models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from argus.cluster.serve_app import deployment_name
from argus.runtime.head import descendants
from tests.e2e.conftest import Stack, beside_the_head
from tests.e2e.multinode import Cluster, NodeSpec, make_tiny_model, wait_for

pytestmark = pytest.mark.e2e

H20 = {"accelerator_type:H20": 1.0}
# The head runs Serve's controller, proxy and ingress (1 CPU), and no replica: it has no
# GPU. A worker's CPUs are for its replica actors (one each, in the first bundle).
HEAD = NodeSpec("head", num_cpus=2)
W2 = NodeSpec("w2", num_cpus=2, num_gpus=2, resources=H20)
W1 = NodeSpec("w1", num_cpus=1, num_gpus=1, resources=H20)
TINY = "tiny-llama"
ENGINE_START_S = 420  # one engine starts in about 60-90 s on two idle cores


@dataclass
class MultiNode:
    cluster: Cluster
    argus: Stack
    keys: dict[str, str] = field(default_factory=dict)  # suffix -> model_key
    ids: dict[str, str] = field(default_factory=dict)  # suffix -> public model id

    def status(self) -> dict[str, Any]:
        r = self.argus.call("GET", "/api/v2/serve/status", self.argus.admin)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def free_gpus(self) -> dict[str, float]:
        """Node id -> GPUs Ray reports available, as argus's admin status shows them."""
        return {n["node_id"]: n["available"].get("GPU", 0.0) for n in self.status()["nodes"]}

    def post(self, suffix: str, gpus: int) -> str:
        posted = self.argus.post_spec(
            f"model_id: {suffix}\nmodel_source: $HOME/common/hf/{TINY}\nnum_replicas: 1\n"
            f"gpus_per_replica: {gpus}\nengine_kwargs:\n  max_model_len: 512\n"
        )
        self.keys[suffix], self.ids[suffix] = posted["model_key"], posted["model_id"]
        return str(posted["model_key"])

    def placements(self, suffix: str) -> list[list[str]]:
        """For each placed replica of the model, the nodes its bundles sit on (Ray's view)."""
        from ray.util.state import list_placement_groups

        prefix = f"SERVE_REPLICA::argus-llm#{deployment_name(self.ids[suffix])}#"
        groups = list_placement_groups(
            address=self.cluster.dashboard_url,
            filters=[("state", "=", "CREATED")],
            detail=True,
            limit=1000,
            raise_on_missing_output=False,
        )
        return [
            [b["node_id"] for b in pg.bundles or []] for pg in groups if pg.name.startswith(prefix)
        ]

    def welcome_tasks(self, node_id: str) -> list[str]:
        """The states of the agent's welcome tasks that ran on a node (Ray's view)."""
        from ray.util.state import list_tasks

        tasks = list_tasks(
            address=self.cluster.dashboard_url,
            filters=[("name", "=", "argus-node-welcome"), ("node_id", "=", node_id)],
            limit=100,
            raise_on_missing_output=False,
        )
        return [str(t.state) for t in tasks]

    def generates(self, suffix: str) -> int:
        """Tokens one chat generated (the weights are random, so only the count says much)."""
        reply = self.argus.openai().chat.completions.create(
            model=self.ids[suffix],
            max_tokens=8,
            messages=[{"role": "user", "content": "Say something."}],
            extra_body={"ignore_eos": True},
        )
        assert reply.usage is not None
        return reply.usage.completion_tokens


def events(got: dict[str, Any]) -> list[str]:
    return [e["event_type"] for e in reversed(got["events"])]


def pending_resources(
    whose: str, detail: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's or task's detail once it has its one PENDING_RESOURCES event, and that
    event's payload (what it needs, what each node has free)."""
    got = wait_for(
        f"{whose} PENDING_RESOURCES event",
        lambda: g if "PENDING_RESOURCES" in events(g := detail()) else None,
        timeout=30,
    )
    (pending,) = [e["payload"] for e in got["events"] if e["event_type"] == "PENDING_RESOURCES"]
    return got, pending


@pytest.fixture(scope="module")
def mn(tmp_path_factory: pytest.TempPathFactory, quiet_machine: None) -> Iterator[MultiNode]:
    data = tmp_path_factory.mktemp("argus-multinode")
    storage = data / "storage"
    make_tiny_model(storage / "hf" / TINY)
    cluster = Cluster(HEAD, [W2, W1], log_dir=data)
    shape = beside_the_head(data, cluster.address, cluster.dashboard_url)
    stack = Stack(data, shape.env)
    agent: subprocess.Popen[bytes] | None = None
    try:
        cluster.start_head()
        with (data / "agent.log").open("ab") as out:
            agent = subprocess.Popen(
                shape.agent_command, env=shape.agent_env, stdout=out, stderr=subprocess.STDOUT
            )
        with ThreadPoolExecutor(1) as pool:
            up = pool.submit(stack.start_argus)  # argus needs only the head and its agent
            cluster.start_workers()
            up.result()
        stack.admin = (data / "admin-token").read_text().strip()
        stack.token = stack.new_user("alice", allow_commands=True)
        yield MultiNode(cluster, stack)
    finally:
        try:
            stack.stop_argus()
            if agent is not None:
                agent.terminate()
                try:
                    agent.wait(10)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
        finally:
            cluster.stop()  # whatever failed above


# Another driver's actor that holds one GPU of a given node until its stdin closes.
HOLD_A_GPU = """
import sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], namespace="someone-else", log_to_driver=False)

@ray.remote(num_cpus=0, num_gpus=1)
class Hold:
    def ok(self):
        return True

on_node = NodeAffinitySchedulingStrategy(sys.argv[2], soft=False)
held = Hold.options(scheduling_strategy=on_node).remote()  # lives while this handle does
ray.get(held.ok.remote())
sys.stdin.read()
"""


@contextmanager
def another_workload_holds_a_gpu(
    mn: MultiNode, node: str, held_after: dict[str, float]
) -> Iterator[None]:
    """A Ray actor of another driver holds one GPU of `node` until the block ends, which
    starts once argus sees the free GPUs of the workers as `held_after` says."""
    node_id = mn.cluster.node_id(node)
    log = mn.argus.data / "holder.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_A_GPU, mn.cluster.address, node_id],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def held() -> bool:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        free = mn.free_gpus()
        return {n: free.get(n) for n in held_after} == held_after

    try:
        wait_for(f"a GPU of {node} to be held", held, 90)
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the driver exits and Ray ends its actor
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_admin_status_shows_each_node_and_its_free_gpus(mn: MultiNode) -> None:
    c = mn.cluster
    expected = {c.node_id("head"): 0.0, c.node_id("w2"): 2.0, c.node_id("w1"): 1.0}

    def alive_nodes() -> dict[str, dict[str, Any]]:
        return {n["node_id"]: n for n in mn.status().get("nodes", []) if n["alive"]}

    nodes = wait_for(
        "the three nodes in argus's status",
        lambda: got if (got := alive_nodes()).keys() == expected.keys() else None,
        timeout=60,
    )
    for node_id, gpus in expected.items():
        node = nodes[node_id]
        assert node["total"].get("GPU", 0.0) == gpus
        assert node["available"].get("GPU", 0.0) == gpus  # nothing holds one yet
        assert ("accelerator_type:H20" in node["total"]) == (gpus > 0)
    assert mn.argus.call("GET", "/api/v2/serve/status").status_code == 403  # admin only


def test_a_two_gpu_replica_needs_two_free_gpus_on_one_node(mn: MultiNode) -> None:
    """argus admits a replica by Ray's own view of free GPUs, whoever holds them: with
    another driver's actor on one GPU of w2, two GPUs are free in the cluster but not two
    on one node, so the model waits (argus asks nothing of Ray); once the actor is gone,
    it starts on w2 with both GPUs. (The holder stands in for a second model: one engine
    start fewer, and the placement rule is the same.)"""
    c, s = mn.cluster, mn.argus
    w1, w2 = c.node_id("w1"), c.node_id("w2")
    with another_workload_holds_a_gpu(mn, "w2", held_after={w1: 1.0, w2: 1.0}):
        # One free GPU on each worker: two in the cluster, but not two on one node.
        two = mn.post("two", gpus=2)
        got, pending = pending_resources("the model's", lambda: s.model(two))
        assert got["model"]["state"] == "QUEUED"
        assert pending["needs_per_replica"]["GPU"] == 2
        assert {n: pending["free"][n].get("GPU", 0.0) for n in (w1, w2)} == {w1: 1.0, w2: 1.0}
        assert s.model(two)["model"]["state"] == "QUEUED"  # still, ticks later
        assert mn.placements("two") == []  # argus asked nothing of Ray

    # The other driver's actor is gone: the two-GPU model starts on w2.
    got = s.wait(two, "RUNNING", timeout=ENGINE_START_S)
    assert events(got) == ["CREATED", "PENDING_RESOURCES", "APPLIED", "READY"]
    assert mn.placements("two") == [[w2, w2]]  # both bundles, both logical GPUs, on w2
    wait_for("w2 full, w1 free", lambda: (g := mn.free_gpus())[w2] == 0 and g[w1] == 1, 30)
    assert mn.generates("two") == 8  # tensor parallel 2: two CPU workers, one engine


def test_a_killed_node_takes_its_replicas_and_they_return_with_it(mn: MultiNode) -> None:
    c, s = mn.cluster, mn.argus
    two = mn.keys["two"]
    lost = c.kill("w2")
    got = wait_for(
        "the model to lose its replica",
        lambda: g if (g := s.model(two))["model"]["ready_replicas"] == 0 else None,
        timeout=120,
    )
    assert got["model"]["state"] == "RUNNING"  # still wanted; serving nothing now
    assert events(got)[-1] == "DEGRADED"
    assert got["model"]["target_replicas"] == 1
    wait_for(
        "the lost node to leave argus's status",
        lambda: lost not in {n["node_id"] for n in mn.status()["nodes"] if n["alive"]},
        timeout=60,
    )
    assert not [n for n in c.nodes() if n["node_id"] == lost and n["alive"]]  # Ray: dead
    # Nowhere else has two GPUs on one node: the replica waits for one to come.
    assert mn.placements("two") == []
    with pytest.raises((openai.APIStatusError, openai.APITimeoutError)):  # nothing answers
        mn.argus.openai().with_options(timeout=5).chat.completions.create(
            model=mn.ids["two"], max_tokens=1, messages=[{"role": "user", "content": "hi"}]
        )

    back = c.restart("w2")
    got = s.wait(two, "RUNNING", ready=1, timeout=ENGINE_START_S)
    assert events(got)[-2:] == ["DEGRADED", "READY"]
    assert mn.placements("two") == [[back, back]]
    assert mn.generates("two") == 8
    # The agent welcomed the node back with one task (argus.cluster.node_welcome): without
    # it, a Ray GCS that tried the replica's group on the node as it registered kept it
    # waiting beside two free GPUs (five minutes in one full run, until a task ran there).
    assert mn.welcome_tasks(back) == ["FINISHED"]


def test_a_task_waits_while_a_model_holds_its_gpus_and_starts_when_it_is_deleted(
    mn: MultiNode,
) -> None:
    """Serving and training draw on one count: a 2-GPU task waits for the model's GPUs."""
    c, s = mn.cluster, mn.argus
    w1, w2, two = c.node_id("w1"), c.node_id("w2"), mn.keys["two"]
    posted = s.post_task(
        "name: needs-two\nworkload: command\ngpus_per_node: 2\n"
        "entrypoint: echo gpus=$CUDA_VISIBLE_DEVICES; sleep 3\n"
    )
    task_id = posted["task_id"]
    got, pending = pending_resources("the task's", lambda: s.task(task_id))
    assert got["task"]["state"] == "QUEUED"
    assert pending["needs"]["GPU"] == 2 and pending["needs"]["accelerator_type:H20"] > 0
    assert {n: pending["free"][n].get("GPU", 0.0) for n in (w1, w2)} == {w1: 1.0, w2: 0.0}

    assert s.call("DELETE", f"/api/v2/serve/models/{two}").status_code == 202
    got = s.wait_task(task_id, "SUCCEEDED", timeout=180)
    assert events(got) == ["CREATED", "PENDING_RESOURCES", "SUBMITTED", "STARTED", "SUCCEEDED"]
    log = s.call("GET", f"/api/v2/tasks/{task_id}/logs").text
    gpus = next(ln for ln in log.splitlines() if ln.startswith("gpus="))
    assert len(gpus.removeprefix("gpus=").split(",")) == 2, log  # Ray gave its driver two GPUs
    s.wait(two, "DELETED", timeout=120)


def test_with_nothing_left_every_gpu_is_free(mn: MultiNode) -> None:
    c, s = mn.cluster, mn.argus
    every = {c.node_id("head"): 0.0, c.node_id("w2"): 2.0, c.node_id("w1"): 1.0}
    wait_for("every GPU free again", lambda: mn.free_gpus() == every, timeout=60)
    assert httpx.get(f"{s.openai_url}/models", timeout=10).status_code == 404  # no app left


SPY = """
import json, os, ray

ray.init(log_to_driver=False)  # the cluster of the job this runs in


@ray.remote(num_cpus=0)
class Spy:
    def where(self):
        return {"node": ray.get_runtime_context().get_node_id(), "env": dict(os.environ)}


spies = [Spy.remote() for _ in range(6)]
print("SPIES " + json.dumps([ray.get(s.where.remote()) for s in spies]))
"""


def test_no_task_or_actor_can_run_where_argus_keeps_its_secrets(mn: MultiNode) -> None:
    """The deployment's shape: argus calls the agent beside the head and is no Ray node, so
    Ray places a user's 0-CPU actors on Ray nodes only, and none holds argus's secrets."""
    home = mn.argus.storage / "users" / "alice"
    home.mkdir(parents=True, exist_ok=True)
    (home / "spy.py").write_text(SPY)
    posted = mn.argus.post_task(
        f"name: spy\nworkload: command\nworking_dir: $HOME\nentrypoint: {sys.executable} spy.py\n"
    )
    mn.argus.wait_task(posted["task_id"], "SUCCEEDED", timeout=240)
    log = mn.argus.call("GET", f"/api/v2/tasks/{posted['task_id']}/logs").text
    line = next(ln for ln in log.splitlines() if ln.startswith("SPIES "))
    spies = json.loads(line.removeprefix("SPIES "))
    nodes = {n["node_id"] for n in mn.cluster.nodes() if n["alive"]}
    assert len(nodes) == 3  # the head and two workers: argus added no node
    assert {s["node"] for s in spies} <= nodes
    for spy in spies:
        assert not any(
            k.startswith("ARGUS_")
            and k
            not in ("ARGUS_TASK_ID", "ARGUS_USER_ID", "ARGUS_TASK_DIR", "ARGUS_CHECKPOINT_DIR")
            for k in spy["env"]
        )
        assert mn.argus.admin not in json.dumps(spy["env"])
    argus_tree = descendants(mn.argus.argus_pid())
    names = {
        Path(f"/proc/{p}/comm").read_text().strip()
        for p in argus_tree
        if Path(f"/proc/{p}").exists()
    }
    assert "raylet" not in names and "gcs_server" not in names
