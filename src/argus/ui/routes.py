"""The web UI's router (`/ui`): login, logout, the overview; serving, task and admin pages join it.

Pages are thin like the API routes: they call `argus.serving.control`,
`argus.training.control`, `argus.accounts` and the reconciler's status view, and
render what those return.
"""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from argus import accounts
from argus.api.deps import MAX_TOKEN_CHARS, Ctx, authenticate
from argus.errors import Unauthorized
from argus.serving import control
from argus.store.states import ServeState
from argus.ui import routes_admin, routes_keys, routes_serving, routes_tasks, routes_usage
from argus.ui.pages import PageError, render
from argus.ui.session import (
    CSRF_FIELD,
    HOME,
    Session,
    clear_session_cookie,
    cookie_token,
    csrf_matches,
    origin_allowed,
    safe_next,
    set_session_cookie,
    try_session,
)
from argus.views import model_view

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("")
def overview(request: Request, ctx: Ctx, session: Session) -> HTMLResponse:
    items, total = control.list_models(ctx.serving, session.principal, limit=500)
    models = [model_view(m) for m in items]
    counts = Counter(m["state"] for m in models)
    context: dict[str, object] = {
        "section": "overview",
        "total": total,
        "counts": [(state.value, counts.get(state.value, 0)) for state in ServeState],
        "recent": models[:5],
        "base_url": ctx.settings.openai_base_url,
        "cluster": None,
        "users": None,
    }
    if session.is_admin:
        context["users"] = len(accounts.list_users(ctx.db, ctx.serving.quotas))
        context["cluster"] = ctx.status.cluster_status()
    return render(request, "overview.html", context, session=session)


@router.get("/login")
def login_form(request: Request, ctx: Ctx, next_path: str = Query(HOME, alias="next")) -> Response:
    target = safe_next(next_path)
    if try_session(ctx, request) is not None:
        return RedirectResponse(target, status_code=303)
    return render(request, "login.html", {"next": target, "error": None}, session=None)


@router.post("/login")
async def login(request: Request, ctx: Ctx) -> Response:
    if not origin_allowed(request):
        raise PageError(403, "Refused", "this form was posted from another site")
    form = await request.form()
    raw_token, raw_next = form.get("token"), form.get("next")
    token = raw_token.strip() if isinstance(raw_token, str) else ""
    target = safe_next(raw_next if isinstance(raw_next, str) else None)
    error = None
    if not token:
        error = "paste your token: it starts with argus_"
    elif len(token) > MAX_TOKEN_CHARS:
        error = "that is not an argus token (too long)"
    else:
        try:
            await run_in_threadpool(authenticate, ctx, token)
        except Unauthorized as e:
            error = e.message
    if error is not None:
        return render(
            request, "login.html", {"next": target, "error": error}, session=None, status=401
        )
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, token)
    return response


@router.post("/logout")
async def logout(request: Request, ctx: Ctx) -> Response:
    session = await run_in_threadpool(try_session, ctx, request)
    if session is not None:
        form = await request.form()
        submitted = form.get(CSRF_FIELD)
        if not origin_allowed(request) or not csrf_matches(
            cookie_token(request) or "", submitted if isinstance(submitted, str) else ""
        ):
            raise PageError(403, "Refused", "the logout form was not sent by this site", session)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session_cookie(response)
    return response


router.include_router(routes_serving.router)
router.include_router(routes_tasks.router)
router.include_router(routes_keys.router)
router.include_router(routes_usage.router)
router.include_router(routes_admin.router)
