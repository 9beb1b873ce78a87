"""The Usage page: tokens a day by model, and the sums by model (the admin: everyone's)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from argus import usage
from argus.api.deps import Ctx
from argus.ui.pages import render
from argus.ui.session import Session

router = APIRouter()


@router.get("/usage")
def usage_page(request: Request, ctx: Ctx, session: Session) -> HTMLResponse:
    context = {"section": "usage", **usage.chart(ctx.db, session.principal, ctx.clock())}
    return render(request, "usage.html", context, session=session)
