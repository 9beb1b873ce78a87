"""A small HTTP client for the running argus API, used by the CLI."""

from __future__ import annotations

from collections.abc import Iterator
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


def _raise_for_error(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = resp.text
    raise ApiError(resp.status_code, message)


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
            raise self._unreachable() from None
        _raise_for_error(resp)
        return resp.json()

    def stream_text(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        """GET a text body as it arrives (a followed log may stream for hours)."""
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for_error(resp)
                yield from resp.iter_text()
        except httpx.ConnectError:
            raise self._unreachable() from None

    def _unreachable(self) -> ApiError:
        return ApiError(
            0,
            f"cannot reach argus at {self._http.base_url}; start it with `argus up`, "
            "or pass --offline to work on the database directly",
        )

    def close(self) -> None:
        self._http.close()
