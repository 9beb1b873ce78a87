"""The OpenAI ingress argus deploys: Ray Serve LLM's own, with keys and per-model access.

`build_openai_app` takes it as its `ingress_cls`; every request to :8000 passes through it.
It answers from the table argus pushes as the deployment's `user_config`
(`argus.cluster.access`): Serve calls `reconfigure` on the running replica, in place, so
a revoked key or a changed share bites within a reconcile tick or two, and no replica
(ingress or engine) restarts. The models it routes to come in the same table (`routes`,
each model's card): a model added or removed reconfigures the ingress too, instead of
replacing it. Nothing on a request's path calls argus.

- No key, or one that is not live: 401 in the OpenAI error shape.
- A model the caller may not call: 404 `model_not_found`, the very answer a model that
  does not exist gets, so ids do not leak; `/v1/models` lists only what the caller may call.
- CORS: Ray's ingress allows every origin with credentials; this one allows the origins
  the config lists (`serving.cors_origins`) and no other.
- Rate limits per user (`argus.cluster.limits`): past one, 429 with `Retry-After`.
- A model scaled to zero whose next replica has no room (argus's `no_room` list): 503
  with `Retry-After`, rather than a request that waits without end. Any other model at
  zero: the request waits while Serve starts a replica.
- Usage: every call that reaches a model is metered (`argus.cluster.usage`) and handed to
  the usage sink every few seconds, off the request's path.

This module imports Ray and FastAPI: it is loaded in the Ray agent (which builds the app)
and in the ingress replica, never in argus's own process. Annotations stay real (no
`from __future__ import annotations`): FastAPI reads the route handlers' signatures.
"""

import asyncio
import json
import logging
import time
from typing import Any

from fastapi import Request
from fastapi.middleware.cors import CORSMiddleware
from ray import serve
from ray.llm._internal.common.utils.lora_utils import get_base_model_id
from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard, ModelList
from ray.serve.llm.ingress import OpenAiIngress
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from argus.cluster.access import Caller, may_call
from argus.cluster.gate_asgi import (
    CALLER,
    Gate,
    ModelNotFound,
    NoRoom,
    RateLimited,
    http_error,
)
from argus.cluster.limits import RateLimiter, limits_of
from argus.cluster.serve_app import ROUTES, deployment_name
from argus.cluster.usage import UsageBook, error_status, strip_usage_chunks, tokens_in
from argus.cluster.usage_sink import sink

log = logging.getLogger("argus.ingress")
FLUSH_EVERY_S = 2.0  # how often a replica hands its usage rows to the sink


class ArgusIngress(OpenAiIngress):  # type: ignore[misc]
    def __init__(self, llm_deployments: Any, model_cards: Any, **kwargs: Any) -> None:
        super().__init__(llm_deployments, model_cards, **kwargs)
        self.table: dict[str, Any] = {}  # until the first reconfigure: nobody may call
        self.usage = UsageBook()
        self.limiter = RateLimiter()
        self._flusher: asyncio.Task[None] | None = None
        self._sink: Any = None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """The table argus pushed; swapped whole (requests read it on the same loop)."""
        table = json.loads(json.dumps(config or {}))
        routes = table.pop(ROUTES, None)
        if routes is not None:
            self._route_to(routes)
        self.table = table

    def _route_to(self, cards: dict[str, Any]) -> None:
        """Route to exactly these models (id -> model card): a handle for each new one, by
        its deployment's name in this app; the handles of the others are kept."""
        known = self._default_serve_handles
        self._default_serve_handles = {
            model_id: known.get(model_id)
            or serve.get_deployment_handle(
                deployment_name(model_id), _check_exists=False, _record_telemetry=False
            )
            for model_id in cards
        }
        self._model_cards = {model_id: ModelCard.model_validate(c) for model_id, c in cards.items()}
        self._configured_serve_handles = {
            model: handle
            for model, handle in self._configured_serve_handles.items()
            if get_base_model_id(model) in cards
        }

    def __serve_build_asgi_app__(self) -> Any:
        """Serve calls this on the replica before the app's startup: put the gate where
        Ray's CORS middleware was (after Ray's request-id middleware, before its error one)."""
        app = self.app  # type: ignore[attr-defined]  # Serve's ASGI wrapper sets it
        middleware = app.user_middleware
        at = next((i for i, m in enumerate(middleware) if m.cls is CORSMiddleware), 0)
        middleware[:] = [m for m in middleware if m.cls is not CORSMiddleware]
        middleware.insert(at, Middleware(Gate, ingress=self))
        app.add_exception_handler(HTTPException, http_error)
        return app

    # -- who may call what ----------------------------------------------------------------
    @staticmethod
    def _caller(request: Request | None) -> Caller | None:
        if request is None:
            return None
        caller: Caller | None = request.scope.get("state", {}).get(CALLER)
        return caller

    def _may_call(self, request: Request | None, model: str) -> bool:
        caller = self._caller(request)
        return caller is not None and may_call(self.table, caller, get_base_model_id(model))

    async def _get_response(self, *, body: Any, call_method: str, raw_request: Any = None) -> Any:
        """Every model route (chat, completions, embeddings, tokenize, ...) comes here; each
        call that reaches a model is metered (`argus.cluster.usage`)."""
        model = body.model
        if model is None and len(self._model_cards) == 1:
            model = next(iter(self._model_cards))
        if model is not None and (
            get_base_model_id(model) not in self._model_cards
            or not self._may_call(raw_request, model)
        ):
            raise ModelNotFound(model)
        base = get_base_model_id(model) if model is not None else None
        streaming = bool(getattr(body, "stream", False))
        caller = self._caller(raw_request)
        started, status, tokens, recorded = time.monotonic(), 200, None, False

        def record(final: int) -> None:
            nonlocal recorded
            if recorded or caller is None or base is None:
                return
            recorded = True
            latency = time.monotonic() - started
            self.usage.record(time.time(), caller.user, caller.key, base, final, tokens, latency)
            if tokens is not None:
                spent = tokens.prompt + tokens.completion
                self.limiter.spent(caller.user, time.monotonic(), spent)
            self._start_flusher()

        if base is not None and base in self.table.get("no_room", ()):
            record(503)
            raise NoRoom(base)
        if caller is not None and not caller.admin:
            refused = self.limiter.admit(caller.user, started, limits_of(self.table, caller.user))
            if refused is not None:
                record(429)
                raise RateLimited(caller.user, refused.kind, refused.wait_s)
        strip = _ask_for_usage(body)

        try:
            async for item in super()._get_response(
                body=body, call_method=call_method, raw_request=raw_request
            ):
                status = error_status(item) or status
                tokens = tokens_in(item) or tokens
                if not streaming:
                    record(status)  # the whole answer: Ray reads no further
                yield strip_usage_chunks(item) if strip else item
        except BaseException:
            record(499 if status == 200 else status)  # the client went away, or it failed
            raise
        record(status)

    # -- usage, handed to the sink ---------------------------------------------------------
    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await self.flush_usage()
            self.limiter.forget_idle(time.monotonic())

    async def flush_usage(self) -> None:
        rows = self.usage.take()
        if not rows:
            return
        try:
            if self._sink is None:
                self._sink = await asyncio.to_thread(sink, True)
            await self._sink.add.remote(rows)
        except Exception as e:  # the sink or the head is away: keep the rows, try again
            log.warning(
                "usage not handed on (%d rows kept): %s: %s", len(rows), type(e).__name__, e
            )
            self._sink = None
            self.usage.put_back(rows)

    async def models(self, request: Request) -> ModelList:  # type: ignore[override]
        listed = await super().models()
        return ModelList(data=[c for c in listed.data if self._may_call(request, c.id)])

    async def model_data(self, model: str, request: Request) -> ModelCard:  # type: ignore[override]
        if not self._may_call(request, model) or model not in self._model_cards:
            raise ModelNotFound(model)
        card: ModelCard = await super().model_data(model)
        return card


def _ask_for_usage(body: Any) -> bool:
    """Make a stream report its usage; True when the client did not ask for it (the
    usage chunk is then taken out of what it gets)."""
    if not getattr(body, "stream", False) or not hasattr(body, "stream_options"):
        return False
    options = body.stream_options
    if options is not None and options.include_usage:
        return False
    from vllm.entrypoints.generate.base.protocol import StreamOptions

    continuous = bool(options and options.continuous_usage_stats)
    body.stream_options = StreamOptions(include_usage=True, continuous_usage_stats=continuous)
    return True
