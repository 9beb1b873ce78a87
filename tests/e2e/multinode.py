"""A multi-node Ray cluster on one machine, for the end-to-end placement tests.

A head and worker nodes, each one `ray start ... --block` subprocess in a process group
of its own, so a test can kill one node the way a machine dies (SIGKILL to everything it
runs, vLLM engines included) and start it again with the same command. The cluster keeps
to its own temp dir and its own ports, so it runs beside the shared stack's head (which
uses /tmp/ray and Ray's default ports). What it stops is a descendant of a `ray start` it
launched, plus `VLLM::` engines of its own that were already orphaned to init;
it never runs `ray stop`, which would end every Ray cluster of this user on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from argus.runtime.head import KEPT_FROM_RAY, descendants, kernel_cache_env, orphan_engines
from tests.ports import port_blocks
from tests.priority import nice_session

RAY = str(Path(sys.executable).with_name("ray"))
T = TypeVar("T")

# GCS health checks: Ray's defaults (3 s period, 5 failures) take 15 s or more to call a
# killed node dead. A killed raylet refuses the check at once, so a 1 s period notices it
# in about 5 s; the timeout stays at Ray's 10 s so that two busy cores starting an engine
# never make a live node look dead.
HEAD_ENV = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}
OBJECT_STORE_BYTES = 200 * 1024 * 1024  # 30% of RAM per node by default; nothing big is put
WORKER_PORTS = 100  # worker processes per node, far more than these tests start


START_TRIES = 3


class NodeStartFailed(AssertionError):
    """`ray start` for a node exited before the node joined."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    num_cpus: int
    num_gpus: int = 0
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class _Node:
    spec: NodeSpec
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    node_id: str | None = None


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Cluster:
    """A head and workers on 127.0.0.1; `start()`, `kill()`, `restart()`, `stop()`.
    Node ids are learnt as each node joins (a restarted node gets a new one). `head_env`
    and `head_args` go to the head only (GCS fault tolerance: `RAY_REDIS_ADDRESS`, and
    `--redis-password`), `worker_env` to the workers."""

    def __init__(
        self,
        head: NodeSpec,
        workers: list[NodeSpec],
        log_dir: Path,
        head_env: dict[str, str] | None = None,
        head_args: tuple[str, ...] = (),
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self.head_env = {**HEAD_ENV, **(head_env or {})}
        self.worker_env = worker_env or {}
        # A short temp dir: Ray's unix sockets live under it (108 bytes at most).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="argus-mn-", dir="/tmp"))
        self._pids: set[int] = set()  # every process of the cluster's that a kill has seen
        self.log_dir = log_dir
        blocks = iter(port_blocks(1 + len(workers), 2 * WORKER_PORTS))
        base = next(blocks)
        self.gcs_port, self.dashboard_port = base + WORKER_PORTS, base + WORKER_PORTS + 1
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        head_extra = [
            "--head",
            f"--port={self.gcs_port}",
            f"--dashboard-port={self.dashboard_port}",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={base + WORKER_PORTS + 2}",
            *head_args,
        ]
        self.head = _Node(head, self._command(head, base, head_extra))
        self.workers = {
            w.name: _Node(w, self._command(w, b, [f"--address={self.address}"]))
            for w, b in zip(workers, blocks, strict=False)
        }

    def _command(self, spec: NodeSpec, base: int, extra: list[str]) -> list[str]:
        # Ports: [base, base+100) worker processes, then this node's own services.
        own = base + WORKER_PORTS + 3
        return [
            RAY,
            "start",
            "--block",
            *extra,
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.temp_dir}",
            f"--num-cpus={spec.num_cpus}",
            f"--num-gpus={spec.num_gpus}",
            f"--resources={json.dumps(spec.resources)}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--min-worker-port={base}",
            f"--max-worker-port={base + WORKER_PORTS - 1}",
            f"--node-manager-port={own}",
            f"--object-manager-port={own + 1}",
            f"--metrics-export-port={own + 2}",
            f"--dashboard-agent-listen-port={own + 3}",
            f"--dashboard-agent-grpc-port={own + 4}",
            f"--runtime-env-agent-port={own + 5}",
            "--disable-usage-stats",
        ]

    # -- nodes ------------------------------------------------------------------
    def _env(self, node: _Node) -> dict[str, str]:
        return self.head_env if node is self.head else self.worker_env

    def _launch(self, node: _Node) -> None:
        known = {n["node_id"] for n in self.nodes()} if node is not self.head else set()
        log = (self.log_dir / f"ray-{node.spec.name}.log").open("ab")
        # A coverage run's variables stay out, as they do from argus's own head: Ray's
        # processes are not argus's, and tracing every one (vLLM engines too) slowed the
        # modules on this cluster in a full run (multinode 214 s, 169 s without).
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(KEPT_FROM_RAY)}
        # Its engines' temp files (vLLM's IPC sockets...) go with the cluster and their
        # compiled kernels to the machine's cache, as argus's own head keeps them
        # (argus/runtime/head.py).
        (self.temp_dir / "tmp").mkdir(exist_ok=True)
        inherited.update(TMPDIR=str(self.temp_dir / "tmp"), **kernel_cache_env())
        node.proc = subprocess.Popen(
            node.command,
            env={**inherited, **self._env(node)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group a node: kill() ends it all
        )
        log.close()

        def joined() -> str | None:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise NodeStartFailed(f"ray start for {node.spec.name} exited:\n{self._tail(node)}")
            with contextlib.suppress(Exception):  # the dashboard may not answer yet
                for n in self.nodes():
                    if (
                        n["node_id"] not in known
                        and n["alive"]
                        and n["head"] == (node is self.head)
                    ):
                        return str(n["node_id"])
            return None

        node.node_id = wait_for(f"Ray node {node.spec.name} to join", joined, timeout=120)
        # Once joined, its session's scheduler group takes this process's priority (the
        # niced worker beside the line starts test_multinode's nodes): tests/priority.py.
        # Not before: `ray start` gives the node 30 s to register with its GCS, and a head
        # starting niced beside the line's engines missed it in two full runs of three
        # (its retry cost 60 to 75 s, at the end of the run); at the line's priority it
        # joins in about 13 s.
        nice_session(node.proc.pid, os.nice(0))

    def _tail(self, node: _Node) -> str:
        path = self.log_dir / f"ray-{node.spec.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start(self) -> None:
        self.start_head()
        self.start_workers()

    def start_head(self) -> None:
        self._start(self.head)

    def start_workers(self) -> None:
        for worker in self.workers.values():
            self._start(worker)

    def nodes(self) -> list[dict[str, Any]]:
        """Every node as Ray's state API reports it (dead ones included)."""
        from ray.util.state import list_nodes

        return [
            {
                "node_id": n.node_id,
                "alive": n.state == "ALIVE",
                "head": bool(n.is_head_node),
            }
            for n in list_nodes(
                address=self.dashboard_url, limit=1000, raise_on_missing_output=False
            )
        ]

    def node_id(self, name: str) -> str:
        node = self._node(name)
        assert node.node_id is not None, f"{name} is not running"
        return node.node_id

    def is_up(self, name: str) -> bool:
        """Whether the node has joined since it was last started (not killed since)."""
        return self._node(name).node_id is not None

    def _node(self, name: str) -> _Node:
        return self.head if name == self.head.spec.name else self.workers[name]

    def kill(self, name: str) -> str:
        """Kill a node and all it runs at once (as a machine that dies); its old id."""
        node = self._node(name)
        assert node.proc is not None and node.node_id is not None
        _kill_tree(node.proc, self._pids)
        node.proc, old = None, node.node_id
        node.node_id = None
        return old

    def restart(self, name: str) -> str:
        """Start a killed node again with the same command; its new node id."""
        node = self._node(name)
        assert node.proc is None, f"{name} still runs"
        self._start(node)
        assert node.node_id is not None
        return node.node_id

    def _start(self, node: _Node) -> None:
        for attempt in range(1, START_TRIES + 1):
            if node is self.head:
                # On one machine the workers' raylets carry the head's GCS address on
                # their command lines, and `ray start --head` takes that, with the address
                # the last head wrote here, for a head that still runs ("already running
                # at"). On machines of their own it cannot see them; forget the address.
                (self.temp_dir / "ray_current_cluster").unlink(missing_ok=True)
            try:
                self._launch(node)
                return
            except NodeStartFailed:
                # `ray start` gives a raylet 30 s (not configurable) to register with its
                # GCS; a head restarting on Redis beside a busy engine missed it once in
                # a full suite, and a worker starting on the niced worker beside the
                # line's engines once more. A supervisor (systemd, KubeRay) starts it
                # again: so do we.
                assert node.proc is not None
                _kill_tree(node.proc, self._pids)
                node.proc = None
                if attempt == START_TRIES:
                    raise

    def stop(self) -> None:
        for node in [*self.workers.values(), self.head]:
            if node.proc is not None:
                _kill_tree(node.proc, self._pids)
                node.proc = None
        # Engines whose replica died before its node was killed were re-parented to init.
        for pid in orphan_engines(self._pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Ray's own logs, kept beside the test's for a post-mortem; the temp dir must go.
        with contextlib.suppress(OSError):
            shutil.copytree(self.temp_dir / "session_latest" / "logs", self.log_dir / "ray-logs")
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _kill_tree(proc: subprocess.Popen[bytes], seen: set[int]) -> None:
    """SIGKILL a node's process group and every process below it, wherever its group."""
    pids = descendants(proc.pid)
    seen.update(pids)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(30)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tiny_model(dest: Path) -> Path:
    """A Llama with random weights and a byte-level tokenizer (1.5 MB) that vLLM's CPU
    engine runs at tensor parallel 1 or 2: two attention heads of 64 (the demo model's 9
    heads do not divide by 2, and the CPU attention kernels refuse a head size of 16).
    Its answers mean nothing; it takes seconds to make, where the demo model takes 40."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    byte_vocab = {ch: i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    vocab = {**byte_vocab, **{t: len(byte_vocab) + i for i, t in enumerate(specials)}}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|end|>", additional_special_tokens=specials[1:]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=vocab["<|end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(dest)  # float32, torch's default
    tokenizer.save_pretrained(dest)
    return dest
