"""`GET /metrics`: Prometheus text format, for the admin token (or anyone, when configured)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from argus.api.deps import Ctx, get_principal, require_admin
from argus.api.errors import error_responses
from argus.api.metrics import ApiMetrics

router = APIRouter(tags=["operations"])


def _may_scrape(request: Request, ctx: Ctx) -> None:
    if not ctx.settings.server.metrics_public:
        require_admin(get_principal(request, ctx))


@router.get(
    "/metrics",
    summary="Prometheus metrics (the admin token, or none with server.metrics_public)",
    dependencies=[Depends(_may_scrape)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(400, 401, 403, 413)},
)
def metrics(request: Request) -> Response:
    registry: ApiMetrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
