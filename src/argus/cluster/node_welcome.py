"""One tiny task on every Ray node the agent sees join, so that Ray's GCS sees it whole.

Ray 2.60's GCS can keep a wrong view of a node that has just joined. It places a waiting
placement group (a replica whose node died) on the node the moment the node registers,
before its raylet answers; the prepare fails, and the GCS goes on believing the node's
resources are taken until the node reports a change (ray-project/ray#62858 and its fix
#63723 rely on that report). A node that comes back with nothing to run reports none: in
the e2e node-loss test a replica waited five minutes beside the two free GPUs it needed,
and the moment one task ran on that node, Ray placed it.

So the agent runs one task on each node it has not welcomed yet (every node once when
the agent starts, then each node that joins): the task holds a kibibyte of the node's
`memory` resource, which every node has (a node with no CPU too), for as long as it
runs. Its grant changes the node's resources, the raylet reports them, and the GCS's
view is whole again. Fire and forget: `welcome` never waits, and a task that cannot
start in `GIVE_UP_AFTER_S` is cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

GIVE_UP_AFTER_S = 120.0
TASK_NAME = "argus-node-welcome"
MEMORY_BYTES = 1024


def _hello() -> None:
    """Nothing: being granted its resources on the node is the point."""


class NodeWelcome:
    def __init__(self) -> None:
        self.welcomed: set[str] = set()
        self._pending: dict[str, tuple[Any, float]] = {}  # node id -> (its task, sent at)
        self._hello: Any = None  # the remote function, made once
        self._lock = threading.Lock()  # the agent observes from a pool of threads

    def welcome(self, alive_nodes: Iterable[str], now: float | None = None) -> None:
        """Send the task to each alive node not welcomed yet; forget finished ones."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._pending:
                self._forget_finished(now)
            for node_id in alive_nodes:
                if node_id not in self.welcomed:
                    self._pending[node_id] = (self._send(node_id), now)
                    self.welcomed.add(node_id)

    def _send(self, node_id: str) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self._hello is None:
            self._hello = ray.remote(num_cpus=0, memory=MEMORY_BYTES, max_retries=0)(_hello)
        on_it = NodeAffinitySchedulingStrategy(node_id, soft=False)
        return self._hello.options(name=TASK_NAME, scheduling_strategy=on_it).remote()

    def _forget_finished(self, now: float) -> None:
        import ray

        for node_id, (ref, sent) in list(self._pending.items()):
            done, _ = ray.wait([ref], timeout=0)
            if done:
                del self._pending[node_id]
            elif now - sent > GIVE_UP_AFTER_S:
                log.warning("node %s did not run argus's welcome task; cancelled", node_id)
                ray.cancel(ref, force=True)
                del self._pending[node_id]
