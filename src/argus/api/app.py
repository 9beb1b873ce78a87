"""The API's FastAPI application: its routes, its one error mapping, its body cap, metrics."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from argus import __version__
from argus.api.deps import AppContext
from argus.api.errors import install_error_handlers
from argus.api.limits import BodyLimitMiddleware
from argus.api.metrics import install_metrics
from argus.api.routes import health, keys, metrics, serve_models, tasks, usage, users
from argus.api.wake import WakeOnWrite

DESCRIPTION = """
Serve LLMs for many users on a Ray cluster. Post a YAML spec, watch the model go
QUEUED → DEPLOYING → RUNNING, then call it with any OpenAI client at the
`openai_base_url` the list route returns (port 8000).

Every `/api/v2` route needs `Authorization: Bearer <token>`. Every error comes as
`{"error": {"code", "message", "details"}}`; a body larger than the route takes is a 413
before it is read.
The OpenAI endpoint on port 8000 takes a token or an inference key (`/api/v2/keys`) as
`Authorization: Bearer`, and answers each caller for the models it may call.
"""


ROUTERS: tuple[APIRouter, ...] = tuple(
    m.router for m in (health, users, keys, usage, serve_models, tasks, metrics)
)


def build_api(ctx: AppContext) -> FastAPI:
    """The API alone; `argus.web.create_app` adds the UI to it."""
    app = FastAPI(title="argus", version=__version__, description=DESCRIPTION)
    app.state.ctx = ctx
    install_error_handlers(app)
    for router in ROUTERS:
        include_routes(app, router)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(WakeOnWrite, wake=lambda: ctx.wake())  # read per call: set later
    install_metrics(app, ctx)  # outermost: it counts the 413s the cap answers too
    return app


def include_routes(app: FastAPI, router: APIRouter) -> None:
    """Add a router's routes as its module built them. FastAPI's `include_router` builds
    every route again (its parameters, its response model): 0.1 s per app, 0.25 s under
    coverage, paid by each of the four hundred apps the tests make. The routers here carry
    their prefixes, tags and dependencies, override nothing, and read the app's state per
    request, so the one built route serves any app."""
    app.router.routes.extend(router.routes)
