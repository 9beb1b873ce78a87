"""Prometheus metrics for `GET /metrics`, in one registry per app.

Each app gets its own `CollectorRegistry` (never prometheus_client's global one), so
several apps in one process (tests, a restarted server) never clash. Three sources:

- the database, counted at scrape time: models by state, models waiting for resources,
  training tasks by state, and the OpenAI endpoint's usage (`argus_tokens_total`,
  `argus_requests_total`);
- the reconciler, through the small `TickSource` protocol: its tick and error
  counters, read at scrape time, and each tick's duration, pushed through its tick hook;
- the API itself: a small ASGI middleware counts requests by method, route template
  (`/api/v2/serve/models/{model_key}`, never the raw path) and status.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Protocol, runtime_checkable

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from argus import __version__
from argus.api.deps import AppContext
from argus.serving.states import Trigger
from argus.store.stats import count_models_by_state, count_tasks_by_state, count_waiting
from argus.store.usage import totals as usage_totals

# A tick is a database read and a status call (milliseconds), an apply adds about a
# second; anything near the top bucket means Ray is slow to answer.
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED = "unmatched"  # the route label of a request no route matched (a 404)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class TickOutcome(Protocol):
    """One control-loop tick, as metrics see it (`runtime.status.TickReport` is one)."""

    @property
    def at(self) -> datetime: ...

    @property
    def seconds(self) -> float: ...

    @property
    def error(self) -> str | None: ...


@runtime_checkable
class TickSource(Protocol):
    """What metrics need of the control loop (`runtime.status.ClusterStatus` is one)."""

    @property
    def ticks(self) -> int: ...

    @property
    def errors(self) -> int: ...

    def add_tick_observer(self, observer: Callable[[TickOutcome], None]) -> None: ...


class ApiMetrics:
    """The app's registry and the metrics it records as things happen."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "argus_api_requests",
            "API and UI requests by method, route template and HTTP status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "argus_reconcile_tick_seconds",
            "Duration of each reconcile tick this API process observed.",
            buckets=TICK_BUCKETS,
            registry=self.registry,
        )
        self.last_tick = Gauge(
            "argus_reconcile_last_tick_timestamp_seconds",
            "Unix time of the newest reconcile tick (0 before the first).",
            registry=self.registry,
        )
        build = Gauge(
            "argus_build_info", "Always 1; the argus version.", ["version"], registry=self.registry
        )
        build.labels(version=__version__).set(1)
        self.registry.register(_ScrapeTimeCollector(ctx))
        self._source: TickSource | None = None
        self._lock = threading.Lock()  # scrapes run in a thread pool
        self.follow(ctx.status)

    def follow(self, status: object) -> None:
        """Record the ticks of `status` when it is a reconciler (and not followed yet)."""
        with self._lock:
            if isinstance(status, TickSource) and status is not self._source:
                self._source = status
                status.add_tick_observer(partial(self._observe_tick, status))

    def _observe_tick(self, source: TickSource, tick: TickOutcome) -> None:
        if source is not self._source:  # a reconciler this app no longer shows
            return
        self.tick_seconds.observe(tick.seconds)
        self.last_tick.set(tick.at.timestamp())

    def record_request(self, method: str, route: str, status: int) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(method=method, route=route, status=str(status)).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric, counted now."""
        self.follow(self.ctx.status)  # tests and tools may swap the reconciler in later
        return generate_latest(self.registry)


class _ScrapeTimeCollector:
    """Metrics read when scraped: the database's counts and the reconciler's counters."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        with self.ctx.db.read() as s:
            by_state = count_models_by_state(s)
            pending = count_waiting(s, Trigger.PENDING_RESOURCES.value)
            tasks_by_state = count_tasks_by_state(s)
            usage = usage_totals(s)
        models = GaugeMetricFamily(
            "argus_models", "Models by state, from the database.", labels=["state"]
        )
        for state, n in by_state.items():
            models.add_metric([state.value], n)
        yield models
        yield GaugeMetricFamily(
            "argus_models_pending_resources",
            "QUEUED models whose newest event is PENDING_RESOURCES (waiting for room).",
            value=pending,
        )
        tasks = GaugeMetricFamily(
            "argus_tasks", "Training tasks by state, from the database.", labels=["state"]
        )
        for task_state, n in tasks_by_state.items():
            tasks.add_metric([task_state.value], n)
        yield tasks
        tokens = CounterMetricFamily(
            "argus_tokens",
            "Tokens through the OpenAI endpoint by user, model and kind (prompt, completion).",
            labels=["user", "model", "kind"],
        )
        requests = CounterMetricFamily(
            "argus_requests",
            "Calls to the OpenAI endpoint that reached a model, by user, model and status.",
            labels=["user", "model", "code"],
        )
        by_model: dict[tuple[str, str], list[int]] = {}
        for user, model, status, n, prompt, completion in usage:
            requests.add_metric([user, model, str(status)], n)
            sums = by_model.setdefault((user, model), [0, 0])
            sums[0] += prompt
            sums[1] += completion
        for (user, model), (prompt, completion) in sorted(by_model.items()):
            tokens.add_metric([user, model, "prompt"], prompt)
            tokens.add_metric([user, model, "completion"], completion)
        yield tokens
        yield requests
        source = self.ctx.status
        ticks, errors = (source.ticks, source.errors) if isinstance(source, TickSource) else (0, 0)
        yield CounterMetricFamily(
            "argus_reconcile_ticks", "Reconcile ticks since argus started.", value=ticks
        )
        yield CounterMetricFamily(
            "argus_reconcile_errors",
            "Reconcile ticks that failed (Ray unreachable, an apply refused, ...).",
            value=errors,
        )


def route_template(scope: Scope) -> str:
    """The matched route's path template, so that a label never holds a raw path."""
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetricsMiddleware:
    """Counts each HTTP request once it is answered (a raised error counts as 500)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router writes the matched route into this same scope dict.
            self.metrics.record_request(scope.get("method", ""), route_template(scope), status)


def install_metrics(app: FastAPI, ctx: AppContext) -> ApiMetrics:
    """Give the app its metrics (used by `GET /metrics`) and the request middleware."""
    metrics = ApiMetrics(ctx)
    app.state.metrics = metrics
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return metrics
