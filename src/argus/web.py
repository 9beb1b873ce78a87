"""The one web application argus serves on :8080: the API, and the UI beside it."""

from __future__ import annotations

from fastapi import FastAPI

from argus.api.app import build_api
from argus.api.deps import AppContext
from argus.ui import install_ui


def create_app(ctx: AppContext) -> FastAPI:
    app = build_api(ctx)
    install_ui(app)
    return app
