"""The Ray boundary as a process boundary: the agent's JSON calls, and the supervisor that
keeps an agent (and an owned head) alive. The Ray side is the fake ServeClient."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from argus.cluster.agent import GCS_LOST_AFTER_S, GcsWatch, build_app
from argus.cluster.agent_client import AgentServeClient
from argus.cluster.serve_client import ApplyError, ClusterBusy, ModelDeployment, NodeResources
from argus.config import Settings
from argus.runtime.head import LocalHead
from argus.runtime.supervisor import RaySupervisor
from tests.conftest import make_settings
from tests.fake_cluster import FakeServeClient

pytestmark = pytest.mark.integration


def serve_on(
    sock: Path, fake: FakeServeClient, token: str | None = None, gcs: str | None = None
) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(fake, token, gcs), uds=str(sock), log_level="warning", lifespan="off"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return server


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[AgentServeClient, FakeServeClient]]:
    fake = FakeServeClient(nodes=[NodeResources("n1", {"CPU": 8.0}, {"CPU": 6.0})])
    server = serve_on(tmp_path / "a.sock", fake)
    client = AgentServeClient(f"unix:{tmp_path / 'a.sock'}")
    yield client, fake
    client.close()
    server.should_exit = True


CONFIG = {"deployment_config": {"num_replicas": 1}, "placement_group_config": {"bundles": []}}


def test_every_call_crosses_as_json(agent: tuple[AgentServeClient, FakeServeClient]) -> None:
    client, fake = agent
    client.ensure_serve()
    client.ping()
    assert fake.serve_started
    gate = {"principals": {"ab" * 32: {"user": "u", "admin": False, "models": None}}}
    client.apply("app", [ModelDeployment("u-1-a", CONFIG)], gate)
    assert fake.apply_calls == [["u-1-a"]] and fake.gate == gate
    fake.set_ready("u-1-a")
    seen = client.observe("app")
    assert seen == fake.observe("app")  # the same values on both sides, nothing lost
    assert seen.deployments["LLMServer:u-1-a"].serving_replicas == 1
    assert seen.nodes[0].available == {"CPU": 5.0}  # 6 free, less the running replica
    client.delete_app("app")
    assert client.observe("app").app_status is None


def test_a_refused_config_names_its_model(agent: tuple[AgentServeClient, FakeServeClient]) -> None:
    client, fake = agent

    def refuse(app_name: str, models: object, gate: object) -> None:
        raise ApplyError("invalid LLMConfig: no", "u-1-bad")

    fake.apply = refuse  # type: ignore[method-assign]
    with pytest.raises(ApplyError) as e:
        client.apply("app", [ModelDeployment("u-1-bad", CONFIG)], {})
    assert e.value.model_id == "u-1-bad"


def test_a_lost_cluster_and_a_missing_agent_are_connection_errors(
    agent: tuple[AgentServeClient, FakeServeClient], tmp_path: Path
) -> None:
    client, fake = agent
    fake.reachable = False
    with pytest.raises(ConnectionError, match="answered 503"):
        client.observe("app")
    nobody = AgentServeClient(f"unix:{tmp_path / 'nobody.sock'}")
    with pytest.raises(ConnectionError, match="does not answer"):
        nobody.ping()


def test_a_call_the_agent_took_and_did_not_answer_in_time_is_busy_not_gone(
    agent: tuple[AgentServeClient, FakeServeClient], tmp_path: Path
) -> None:
    _, fake = agent
    impatient = AgentServeClient(f"unix:{tmp_path / 'a.sock'}", apply_timeout_s=0.3)
    fake.apply = lambda *_: time.sleep(1.5)  # type: ignore[method-assign]
    with pytest.raises(ClusterBusy, match=r"took apply but did not answer in 0\.3 s"):
        impatient.apply("app", [ModelDeployment("u-1-a", CONFIG)], {})
    nobody = AgentServeClient(f"unix:{tmp_path / 'nobody.sock'}")
    with pytest.raises(ConnectionError) as gone:
        nobody.apply("app", [ModelDeployment("u-1-a", CONFIG)], {})
    assert not isinstance(gone.value, ClusterBusy)  # no agent: that one is unreachable
    impatient.close()


def test_with_its_gcs_gone_the_agent_says_so_at_once(tmp_path: Path) -> None:
    """A Ray call can wait out Ray's minute of reconnecting while the GCS is gone (a head
    with GCS fault tolerance, between its death and its return); the agent answers 503
    without making it, so argus's /readyz and control loop hear "unreachable" at once."""
    with socket.socket() as listener:  # a port that takes connections, then one that does not
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        gcs = f"127.0.0.1:{listener.getsockname()[1]}"
        fake = FakeServeClient()
        asked: list[str] = []
        fake.observe = lambda app_name: asked.append(app_name)  # type: ignore[method-assign,assignment,return-value]
        server = serve_on(tmp_path / "g.sock", fake, gcs=gcs)
        client = AgentServeClient(f"unix:{tmp_path / 'g.sock'}")
        client.ping()
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionError, match=f"GCS at {gcs} does not answer"):
            client.observe("app")
        assert time.monotonic() - started < 2
        assert asked == []  # Ray was not asked
    finally:
        client.close()
        server.should_exit = True


def test_the_agent_gives_up_on_a_gcs_silent_for_five_seconds() -> None:
    """A driver that outlived its GCS hangs in Serve's calls (Ray 2.60): the agent ends
    itself then, and a fresh one connects when the cluster is back. A blip is no loss."""
    up = {"now": True}
    watch = GcsWatch("h:6379", answers=lambda address, timeout: up["now"])
    assert not watch.lost(0.0)
    up["now"] = False
    assert not watch.lost(1.0)
    assert not watch.lost(1.0 + GCS_LOST_AFTER_S - 0.5)
    up["now"] = True
    assert not watch.lost(1.0 + GCS_LOST_AFTER_S + 1)  # it answered again: the count restarts
    up["now"] = False
    assert not watch.lost(10.0)
    assert watch.lost(10.0 + GCS_LOST_AFTER_S)


def test_on_tcp_the_agent_wants_its_token(tmp_path: Path) -> None:
    fake = FakeServeClient()
    server = serve_on(tmp_path / "t.sock", fake, token="s3cret")
    try:
        with pytest.raises(ConnectionError, match="401"):
            AgentServeClient(f"unix:{tmp_path / 't.sock'}").ping()
        AgentServeClient(f"unix:{tmp_path / 't.sock'}", token="s3cret").ping()
    finally:
        server.should_exit = True


# -- the supervisor ---------------------------------------------------------------------------
class World:
    """The GCS port's answer and the head starts, as the supervisor sees them."""

    def __init__(self) -> None:
        self.up = True
        self.head_starts = 0

    def start_head(self, settings: Settings) -> LocalHead:
        self.head_starts += 1
        self.up = True
        return LocalHead("127.0.0.1:6379", True, 4242, fresh=True)


def supervisor(tmp_path: Path, world: World, owns: bool, script: str) -> RaySupervisor:
    settings = make_settings(tmp_path / "data")
    settings.data_path.mkdir(parents=True)
    return RaySupervisor(
        settings,
        LocalHead("127.0.0.1:6379", owns, 4241),
        owns_head=owns,
        say=lambda line: None,
        start_head=world.start_head,
        command=lambda s, address: ["python3", "-c", script],
        answers=lambda address: world.up,
    )


def test_the_agent_is_started_again_when_it_exits(tmp_path: Path) -> None:
    world = World()
    sup = supervisor(tmp_path, world, owns=False, script="import sys; sys.exit(3)")
    sup.step(0.0)
    assert sup.agent is not None and sup.agent_starts == 1
    sup.agent.wait(120)  # a Python start: 10 s was too short once, niced beside the e2e line
    sup.step(1.0)  # it exited: a short backoff before the next start
    assert sup.agent is None
    sup.step(1.6)
    assert sup.agent_starts == 2
    sup.stop()


def test_a_silent_gcs_ends_the_agent_and_an_owned_head_is_started_again(tmp_path: Path) -> None:
    world = World()
    sup = supervisor(tmp_path, world, owns=True, script="import time; time.sleep(60)")
    sup.step(0.0)
    agent = sup.agent
    assert agent is not None
    world.up = False
    sup._next_head_at = 1e9  # hold the head back to see the agent's end on its own
    sup.step(1.0)
    assert agent.poll() is None  # not yet: a blip is no outage
    sup.step(1.0 + GCS_LOST_AFTER_S)
    assert agent.poll() is not None and sup.agent is None
    sup._next_head_at = 0.0
    sup.step(10.0)
    assert world.head_starts == 1 and sup.head.pid == 4242 and sup.head_restarts == 1
    sup.step(10.5)
    assert sup.agent is not None  # the head is back: a fresh agent
    assert sup.describe()["head"] == {
        "address": "127.0.0.1:6379",
        "managed_by_argus": True,
        "restarts": 1,
    }
    sup.stop()


def test_an_agent_of_the_old_head_ends_when_argus_starts_its_head_again(tmp_path: Path) -> None:
    """A head back within GCS_LOST_AFTER_S: the agent never saw five silent seconds, but its
    driver belongs to the cluster that died (measured: Serve calls hang on a dead controller)."""
    world = World()
    sup = supervisor(tmp_path, world, owns=True, script="import time; time.sleep(60)")
    sup.step(0.0)
    agent = sup.agent
    assert agent is not None
    world.up = False
    sup.step(1.0)  # gone: argus starts its head at once, and the head answers at once
    assert world.head_starts == 1 and world.up
    assert agent.poll() is not None and sup.agent is None
    sup.step(1.5)
    assert sup.agent is not None and sup.agent is not agent
    sup.stop()


def test_someone_elses_head_is_waited_for_not_started(tmp_path: Path) -> None:
    world = World()
    world.up = False
    sup = supervisor(tmp_path, world, owns=False, script="pass")
    for t in range(20):
        sup.step(float(t))
    assert world.head_starts == 0 and sup.agent is None
    world.up = True
    sup.step(30.0)
    assert sup.agent is not None
    sup.stop()


def test_a_config_check_crosses_as_json(agent: tuple[AgentServeClient, FakeServeClient]) -> None:
    client, fake = agent
    fake.refuse = {"odd": "1 validation error for LLMConfig"}
    models = [ModelDeployment("u-1-odd", CONFIG), ModelDeployment("u-1-fine", CONFIG)]
    assert client.check(models) == {"u-1-odd": "1 validation error for LLMConfig"}
