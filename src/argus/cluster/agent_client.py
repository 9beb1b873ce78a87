"""The ServeClient argus uses: calls into the Ray agent process (`argus.cluster.agent`).

Every call has a timeout and turns any failure to reach the agent (not started yet,
restarting, its Ray connection lost) into ConnectionError, which the control loop reads
as "the cluster does not answer": argus's own process never touches Ray. A call the agent
took but did not answer in time is ClusterBusy: the agent works on it, or on one before
it (it builds and reads Serve configs one at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from argus.cluster.serve_client import (
    ApplyError,
    ClusterBusy,
    ModelDeployment,
    ServeObservation,
    UsageBatch,
    observation_from_json,
)

CALL_TIMEOUT_S = 20.0  # ensure_serve imports Ray Serve LLM in a fresh agent: seconds
PING_TIMEOUT_S = 3.0  # /readyz waits on it: a ping that takes longer is an answer too
# `serve._run` builds the whole app and hands it to Serve's controller. Measured on two
# cores busy with two engines (one starting, one under load): 17 s and 38 s. With 20 s the
# loop gave up on an apply that went through anyway, applied again, and the tick after
# that waited in the agent behind the second apply: a "lost" cluster that never was. The
# agent ends itself within seconds of losing its GCS, so a long wait cannot hide that.
APPLY_TIMEOUT_S = 180.0


class AgentServeClient:
    def __init__(
        self, listen: str, token: str | None = None, apply_timeout_s: float = APPLY_TIMEOUT_S
    ) -> None:
        """`listen` is the agent's: unix:<path> or tcp:<host>:<port>."""
        self.apply_timeout_s = apply_timeout_s
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
        except httpx.ReadTimeout:
            raise ClusterBusy(
                f"the Ray agent took {verb} but did not answer in {timeout:g} s"
            ) from None
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
        body = {"app_name": app_name, "models": payload, "gate": gate}
        self._call("apply", body, timeout=self.apply_timeout_s)

    def check(self, models: Sequence[ModelDeployment]) -> dict[str, str]:
        payload = [{"model_id": m.model_id, "llm_config": m.llm_config} for m in models]
        refused = self._call("check", {"models": payload})["refused"]
        return {str(k): str(v) for k, v in refused.items()}

    def delete_app(self, app_name: str) -> None:
        self._call("delete_app", {"app_name": app_name}, timeout=self.apply_timeout_s)

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
