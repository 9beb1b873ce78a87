"""Ask a Ray cluster what it is (its version, its resources) with a short-lived driver.

For `argus doctor`: the control loop's own driver lives in the Ray agent
(`argus.cluster.agent`); this one connects, reads and disconnects.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


def tcp_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Something takes a TCP connection at host:port within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def address_answers(address: str, timeout: float = 1.0) -> bool:
    """`tcp_answers` for a `host:port` address (a GCS address); False when it is malformed."""
    host, _, port = address.rpartition(":")
    try:
        return tcp_answers(host, int(port), timeout)
    except ValueError:
        return False


@dataclass(frozen=True)
class RayFacts:
    """What a connected driver saw of the cluster."""

    version: str
    resources: dict[str, float]  # ray.cluster_resources(): CPU, GPU, accelerator_type:H20, ...


class RayProbe(Protocol):
    def connect(self, address: str) -> RayFacts:
        """Connect a driver, read the cluster, disconnect; raise when it cannot."""


class RealRayProbe:
    def connect(self, address: str) -> RayFacts:
        import ray

        if ray.is_initialized():  # inside a process that already is a driver
            return RayFacts(ray.__version__, _floats(ray.cluster_resources()))  # type: ignore[no-untyped-call]
        try:
            context = ray.init(
                address=address,
                namespace="argus-doctor",
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
            # A driver connects only to a cluster of its own version (Ray refuses a
            # mismatch); through Ray Client the context carries the server's version.
            version = str(getattr(context, "ray_version", ray.__version__))
            return RayFacts(version, _floats(ray.cluster_resources()))  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()


def _floats(resources: Mapping[str, object]) -> dict[str, float]:
    return {str(k): float(v) for k, v in resources.items() if isinstance(v, int | float)}
