"""The real ServeClient: the only module that imports Ray."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class RayServeClient:
    def __init__(
        self,
        address: str,
        http_host: str,
        http_port: int,
        proxy_location: str,
        namespace: str = "argus",
    ) -> None:
        self.address = address
        self.http_host = http_host
        self.http_port = http_port
        self.proxy_location = proxy_location
        self.namespace = namespace

    def connect(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                namespace=self.namespace,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )

    def ensure_serve(self) -> None:
        """Start Serve (detached) with argus's HTTP options; a no-op when it runs."""
        from ray import serve

        self.connect()
        serve.start(
            http_options={"host": self.http_host, "port": self.http_port},
            proxy_location=self.proxy_location,
        )

    def ping(self) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("argus is not connected to Ray")
        ray.cluster_resources()  # type: ignore[no-untyped-call]

    def disconnect(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()

    def cluster_resources(self) -> dict[str, Any]:
        import ray

        return dict(ray.cluster_resources())  # type: ignore[no-untyped-call]
