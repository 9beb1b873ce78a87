"""A small HTTP client for the running argus API, used by the CLI."""

from __future__ import annotations

from typing import Any

import httpx

from argus.config import Settings


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def local_api_url(settings: Settings) -> str:
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - mapping a wildcard bind to loopback
        host = "127.0.0.1"
    return f"http://{host}:{settings.server.port}"


class ApiClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiError(
                0,
                f"cannot reach argus at {self._http.base_url}; start it with `argus up`, "
                "or pass --offline to work on the database directly",
            ) from None
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text
            raise ApiError(resp.status_code, message)
        return resp.json()

    def close(self) -> None:
        self._http.close()
