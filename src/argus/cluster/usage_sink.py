"""The usage sink: a detached actor between the ingress replicas and argus.

Every ingress replica adds its rows (`argus.cluster.usage`) every few seconds; argus's Ray
agent drains them. A drain hands out one batch under an id and keeps it until argus acks
that id after storing it, so an argus or agent that dies between the two gets the same
batch again, and argus, which keeps the ids it stored, counts it once. The sink outlives
argus's restarts (it is detached and needs no CPU); rows still in a replica's book when
the replica dies, or in the sink when the Ray head is lost without GCS fault tolerance,
are lost: a few seconds of counts at most, or what the head held.
"""

from __future__ import annotations

import uuid
from typing import Any

from argus.cluster.usage import merge_rows

SINK_NAME = "argus-usage-sink"
SINK_NAMESPACE = "argus"
MAX_PENDING_ROWS = 100_000  # argus away for days: beyond this the oldest minutes go


class UsageSink:
    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.out: tuple[str, list[dict[str, Any]]] | None = None  # drained, not yet acked

    def add(self, rows: list[dict[str, Any]]) -> int:
        self.pending = merge_rows([*self.pending, *rows])
        if len(self.pending) > MAX_PENDING_ROWS:
            self.pending.sort(key=lambda r: r["minute"])
            del self.pending[: len(self.pending) - MAX_PENDING_ROWS]
        return len(self.pending)

    def drain(self) -> dict[str, Any] | None:
        """The batch out (again, until acked), or a new one of every pending row."""
        if self.out is None and self.pending:
            self.out, self.pending = (uuid.uuid4().hex, self.pending), []
        if self.out is None:
            return None
        return {"batch": self.out[0], "rows": self.out[1]}

    def ack(self, batch: str) -> bool:
        if self.out is not None and self.out[0] == batch:
            self.out = None
            return True
        return False


def sink(create: bool) -> Any:
    """The sink's actor handle (started if `create` and missing), or None."""
    import ray

    if not create:
        try:
            return ray.get_actor(SINK_NAME, namespace=SINK_NAMESPACE)
        except ValueError:
            return None
    actor = ray.remote(UsageSink).options(
        name=SINK_NAME,
        namespace=SINK_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,
    )
    return actor.remote()
