"""The Ray agent: the one process that holds argus's Ray driver connection (design D14).

    python -m argus.cluster.agent --address 127.0.0.1:6379 --listen unix:/data/agent.sock \\
        --serve-host 127.0.0.1 --serve-port 8000 --proxy-location HeadOnly

Ray's core worker ends the process it lives in when it loses the GCS for a minute, so
the driver cannot live in argus's own process: argus would die with its cluster. The
agent is that driver, and nothing else. It serves the `ServeClient` calls as small JSON
requests (`AgentServeClient` is the other end), runs with an environment that holds none
of argus's secrets, and exits when Ray is gone; argus's supervisor starts it again once
the cluster answers.

Listening on a Unix socket in argus's 0700 data directory needs no further credential;
on TCP (a deployment where the agent runs beside the Ray head) every request must carry
the agent token (`ARGUS_AGENT_TOKEN`), which grants what a Ray driver can do, no more.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argus.cluster.probe import address_answers
from argus.cluster.serve_client import (
    ApplyError,
    ModelDeployment,
    ServeClient,
    observation_to_json,
)

log = logging.getLogger("argus.agent")
TOKEN_ENV = "ARGUS_AGENT_TOKEN"
EXIT_NO_CLUSTER = 3
GCS_PROBE_TIMEOUT_S = 1.0
# The agent ends once its GCS has not answered this long. A driver that lived through a
# GCS restart (GCS fault tolerance keeps the cluster, so Ray reconnects it) was seen to
# hang in Serve's calls ever after (Ray 2.60: "The cached controller has died or is
# unreachable", then nothing); a fresh agent connects at once.
GCS_LOST_AFTER_S = 5.0


def build_app(client: ServeClient, token: str | None, gcs_address: str | None = None) -> Any:
    """The agent's HTTP app: one POST route per ServeClient call, JSON in and out.

    With `gcs_address`, every call first checks that the GCS takes a connection: while it
    is gone, a Ray call can wait out Ray's whole reconnect timeout (a minute) instead of
    failing, and the caller must hear "unreachable" at once.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())

    async def call(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        verb = request.path_params["verb"]
        if gcs_address is not None and not await run_in_threadpool(
            address_answers, gcs_address, GCS_PROBE_TIMEOUT_S
        ):
            return JSONResponse(
                {"error": f"the Ray cluster's GCS at {gcs_address} does not answer"},
                status_code=503,
            )
        try:
            result = await run_in_threadpool(_dispatch, client, verb, body)
        except ApplyError as e:
            return JSONResponse({"error": str(e), "model_id": e.model_id}, status_code=422)
        except KeyError as e:
            return JSONResponse({"error": f"no such call: {e}"}, status_code=404)
        except Exception as e:  # Ray's own failures: the caller sees the cluster as unreachable
            log.warning("%s failed: %s: %s", verb, type(e).__name__, e)
            return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=503)
        return JSONResponse(result)

    return Starlette(routes=[Route("/{verb}", call, methods=["POST"])])


def _dispatch(client: ServeClient, verb: str, body: dict[str, Any]) -> Any:
    if verb == "ping":
        client.ping()
        return {}
    if verb == "ensure_serve":
        client.ensure_serve()
        return {}
    if verb == "observe":
        return observation_to_json(client.observe(str(body["app_name"])))
    if verb == "apply":
        models = [ModelDeployment(m["model_id"], m["llm_config"]) for m in body["models"]]
        client.apply(str(body["app_name"]), models, dict(body["gate"]))
        return {}
    if verb == "delete_app":
        client.delete_app(str(body["app_name"]))
        return {}
    if verb == "drain_usage":
        batch = client.drain_usage()
        return None if batch is None else {"batch": batch.batch, "rows": list(batch.rows)}
    if verb == "ack_usage":
        client.ack_usage(str(body["batch"]))
        return {}
    if verb == "check":
        models = [ModelDeployment(m["model_id"], m["llm_config"]) for m in body["models"]]
        return {"refused": client.check(models)}
    raise KeyError(verb)


def _exit_with_parent() -> None:
    """End this process when argus (its parent) is gone: a killed argus leaves no driver."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.info("argus (pid %d) is gone; the agent ends too", parent)
        os._exit(0)

    threading.Thread(target=watch, name="argus-agent-parent", daemon=True).start()


@dataclass
class GcsWatch:
    """Whether the GCS has been silent GCS_LOST_AFTER_S, from one look a second."""

    address: str
    answers: Callable[[str, float], bool] = address_answers
    silent_since: float | None = None

    def lost(self, now: float) -> bool:
        if self.answers(self.address, GCS_PROBE_TIMEOUT_S):
            self.silent_since = None
            return False
        if self.silent_since is None:
            self.silent_since = now
        return now - self.silent_since >= GCS_LOST_AFTER_S


def _exit_when_gcs_lost(address: str) -> None:
    """End this process once its GCS has been lost (see GCS_LOST_AFTER_S)."""
    watch = GcsWatch(address)

    def run() -> None:
        while not watch.lost(time.monotonic()):
            time.sleep(1.0)
        log.warning(
            "the GCS at %s has not answered for %.0f s; the agent ends (a new one connects "
            "once the cluster is back)",
            address,
            GCS_LOST_AFTER_S,
        )
        os._exit(EXIT_NO_CLUSTER)

    threading.Thread(target=run, name="argus-agent-gcs", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="argus.cluster.agent")
    parser.add_argument("--address", required=True, help="The Ray cluster's GCS address.")
    parser.add_argument("--listen", required=True, help="unix:<path> or tcp:<host>:<port>")
    parser.add_argument("--serve-host", default="127.0.0.1")
    parser.add_argument("--serve-port", type=int, default=8000)
    parser.add_argument("--proxy-location", default="HeadOnly")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="argus-agent: %(message)s")

    import uvicorn

    from argus.cluster.ray_client import RayServeClient

    if not address_answers(args.address, GCS_PROBE_TIMEOUT_S):  # ray.init would wait long
        log.warning("the Ray cluster's GCS at %s does not answer", args.address)
        return EXIT_NO_CLUSTER
    client = RayServeClient(args.address, args.serve_host, args.serve_port, args.proxy_location)
    try:
        client.ensure_serve()  # connects, starts Serve if needed, imports Ray Serve LLM
    except Exception as e:
        log.warning("cannot reach the Ray cluster at %s: %s: %s", args.address, type(e).__name__, e)
        return EXIT_NO_CLUSTER
    token = os.environ.get(TOKEN_ENV) or None
    kind, _, where = args.listen.partition(":")
    config: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "off"}
    if kind == "unix":
        if os.path.exists(where):
            os.unlink(where)
        config["uds"] = where
    elif kind == "tcp" and token:
        host, _, port = where.rpartition(":")
        config.update(host=host, port=int(port))
    else:
        parser.error("--listen is unix:<path>, or tcp:<host>:<port> with ARGUS_AGENT_TOKEN set")
    _exit_with_parent()
    _exit_when_gcs_lost(args.address)
    log.info("connected to %s; listening on %s", args.address, args.listen)
    uvicorn.run(build_app(client, token, args.address), **config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
