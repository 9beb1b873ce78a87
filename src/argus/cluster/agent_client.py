"""The ServeClient argus uses: calls into the Ray agent process (`argus.cluster.agent`).

Every call has a timeout and turns any failure to reach the agent (not started yet,
restarting, its Ray connection lost) into ConnectionError, which the control loop reads
as "the cluster does not answer": argus's own process never touches Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from argus.cluster.serve_client import (
    ApplyError,
    ModelDeployment,
    ServeObservation,
    UsageBatch,
    observation_from_json,
)

CALL_TIMEOUT_S = 20.0  # ensure_serve imports Ray Serve LLM in a fresh agent: seconds
PING_TIMEOUT_S = 3.0  # /readyz waits on it: a ping that takes longer is an answer too


class AgentServeClient:
    def __init__(self, listen: str, token: str | None = None) -> None:
        """`listen` is the agent's: unix:<path> or tcp:<host>:<port>."""
        kind, _, where = listen.partition(":")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if kind == "unix":
            transport = httpx.HTTPTransport(uds=where)
            self._http = httpx.Client(
                transport=transport, base_url="http://agent", headers=headers, trust_env=False
            )
        else:
            self._http = httpx.Client(base_url=f"http://{where}", headers=headers, trust_env=False)

    def _call(
        self, verb: str, body: dict[str, Any] | None = None, timeout: float = CALL_TIMEOUT_S
    ) -> Any:
        try:
            r = self._http.post(f"/{verb}", json=body or {}, timeout=timeout)
        except httpx.HTTPError as e:
            raise ConnectionError(f"the Ray agent does not answer ({type(e).__name__})") from None
        if r.status_code == 422:
            detail = r.json()
            raise ApplyError(str(detail.get("error")), detail.get("model_id"))
        if r.status_code != 200:
            try:
                reason = r.json().get("error", r.text[:300])
            except ValueError:
                reason = r.text[:300]
            raise ConnectionError(f"the Ray agent answered {r.status_code}: {reason}")
        return r.json()

    def ensure_serve(self) -> None:
        self._call("ensure_serve")

    def ping(self) -> None:
        self._call("ping", timeout=PING_TIMEOUT_S)

    def apply(self, app_name: str, models: Sequence[ModelDeployment], gate: dict[str, Any]) -> None:
        payload = [{"model_id": m.model_id, "llm_config": m.llm_config} for m in models]
        self._call("apply", {"app_name": app_name, "models": payload, "gate": gate})

    def check(self, models: Sequence[ModelDeployment]) -> dict[str, str]:
        payload = [{"model_id": m.model_id, "llm_config": m.llm_config} for m in models]
        refused = self._call("check", {"models": payload})["refused"]
        return {str(k): str(v) for k, v in refused.items()}

    def delete_app(self, app_name: str) -> None:
        self._call("delete_app", {"app_name": app_name})

    def observe(self, app_name: str) -> ServeObservation:
        return observation_from_json(self._call("observe", {"app_name": app_name}))

    def drain_usage(self) -> UsageBatch | None:
        got = self._call("drain_usage")
        if got is None:
            return None
        return UsageBatch(str(got["batch"]), tuple(dict(r) for r in got["rows"]))

    def ack_usage(self, batch: str) -> None:
        self._call("ack_usage", {"batch": batch})

    def close(self) -> None:
        self._http.close()
