"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from argus import __version__
from argus.api.deps import AppContext
from argus.api.errors import install_error_handlers
from argus.api.metrics import install_metrics
from argus.api.routes import health, metrics, serve_models, tasks, users
from argus.ui import install_ui

DESCRIPTION = """
Serve LLMs for many users on a Ray cluster. Post a YAML spec, watch the model go
QUEUED → DEPLOYING → RUNNING, then call it with any OpenAI client at the
`openai_base_url` the list route returns (port 8000).

Every `/api/v2` route needs `Authorization: Bearer <token>`.
**The OpenAI endpoint on port 8000 has no authentication**: keep it on a trusted network.
"""


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="argus", version=__version__, description=DESCRIPTION)
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(users.router)
    app.include_router(serve_models.router)
    app.include_router(tasks.router)
    app.include_router(metrics.router)
    install_ui(app)
    install_metrics(app, ctx)
    return app
