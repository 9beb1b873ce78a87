"""Admin pages: users and their tokens (through `argus.accounts`), and the cluster."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from argus import accounts
from argus.api.deps import AppContext, Ctx
from argus.auth.tokens import ADMIN_USER_ID
from argus.errors import ArgusError
from argus.ui.pages import PageError, form_errors, render
from argus.ui.session import Form, Session, UiSession, flash_redirect

router = APIRouter(prefix="/admin")
USERS = "/ui/admin/users"


def require_admin_session(session: Session) -> UiSession:
    if not session.is_admin:
        raise PageError(403, "Admins only", "This page is for the admin.", session)
    return session


AdminSession = Annotated[UiSession, Depends(require_admin_session)]


def _redirect(message: str, kind: str = "ok", anchor: str = "") -> RedirectResponse:
    return flash_redirect(USERS + anchor, message, kind)


def _users_page(
    request: Request,
    ctx: AppContext,
    session: UiSession,
    *,
    issued: dict[str, Any] | None = None,
    new_user: str = "",
    error: ArgusError | None = None,
) -> HTMLResponse:
    users = accounts.list_users(ctx.db, ctx.serving.quotas)
    for user in users:
        user["tokens"] = accounts.list_tokens(ctx.db, user["user_id"])
    message, field_errors = form_errors(error)
    context = {
        "section": "users",
        "users": users,
        "admin_user_id": ADMIN_USER_ID,
        "issued": issued,
        "new_user": new_user,
        "error": message,
        "field_errors": field_errors,
        # The new token is on this page once: a reload shows the plain list.
        "replace_url": USERS if issued else "",
    }
    status = error.status if error is not None else 200
    return render(request, "admin_users.html", context, session=session, status=status)


@router.get("/users")
def users(request: Request, ctx: Ctx, session: AdminSession) -> HTMLResponse:
    return _users_page(request, ctx, session)


@router.post("/users")
def create_user(request: Request, ctx: Ctx, session: AdminSession, form: Form) -> Response:
    user_id = form.get("user_id", "").strip()
    try:
        accounts.create_user(ctx.db, user_id, ctx.clock())
    except ArgusError as e:
        return _users_page(request, ctx, session, new_user=user_id, error=e)
    return _redirect(
        f"Created user {user_id}; issue a token for them below.", anchor=f"#user-{user_id}"
    )


@router.post("/users/{user_id}/disabled")
def set_disabled(ctx: Ctx, session: AdminSession, form: Form, user_id: str) -> Response:
    disabled = form.get("disabled") == "true"
    change = accounts.UserUpdate(disabled=disabled)
    try:
        accounts.update_user(ctx.db, user_id, change, ctx.clock(), ctx.serving.quotas)
    except ArgusError as e:
        return _redirect(e.message, "error")
    verb = "Disabled" if disabled else "Enabled"
    note = (
        ": their tokens stop working at once, their tasks are cancelled and their models suspended"
        if disabled
        else "; their suspended models are deployed again"
    )
    return _redirect(f"{verb} user {user_id}{note}.", anchor=f"#user-{user_id}")


@router.post("/users/{user_id}/limits")
def set_limits(ctx: Ctx, session: AdminSession, form: Form, user_id: str) -> Response:
    quota: dict[str, int | None] = {}
    for name in accounts.QUOTA_FIELDS:
        raw = form.get(name, "").strip()
        if raw and not re.fullmatch(r"[0-9]{1,10}", raw):
            return _redirect(f"{name} must be a whole number (or empty for the default)", "error")
        quota[name] = int(raw) if raw else None
    change = accounts.UserUpdate(allow_commands=form.get("allow_commands") == "true", quota=quota)
    try:
        accounts.update_user(ctx.db, user_id, change, ctx.clock(), ctx.serving.quotas)
    except ArgusError as e:
        return _redirect(e.message, "error")
    return _redirect(f"Saved the limits of {user_id}.", anchor=f"#user-{user_id}")


@router.post("/users/{user_id}/tokens")
def issue_token(
    request: Request, ctx: Ctx, session: AdminSession, form: Form, user_id: str
) -> Response:
    try:
        issued = accounts.issue_token(ctx.db, user_id, ctx.clock())
    except ArgusError as e:
        return _redirect(e.message, "error")
    return _users_page(request, ctx, session, issued=issued)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(ctx: Ctx, session: AdminSession, form: Form, token_id: str) -> Response:
    try:
        token = accounts.revoke_token(ctx.db, token_id, ctx.clock())
    except ArgusError as e:
        return _redirect(e.message, "error")
    return _redirect(
        f"Revoked token {token_id} of {token['user_id']}.", anchor=f"#user-{token['user_id']}"
    )


@router.get("/cluster")
def cluster(request: Request, ctx: Ctx, session: AdminSession) -> HTMLResponse:
    status = ctx.status.cluster_status()
    raw_nodes = status.get("nodes") if status else None
    nodes: list[dict[str, Any]] = (
        [n for n in raw_nodes if isinstance(n, dict)] if isinstance(raw_nodes, list) else []
    )
    totals: dict[str, dict[str, float]] = {"total": {}, "available": {}}
    for node in nodes:
        if not node.get("alive", True):
            continue
        for kind in ("total", "available"):
            for name, amount in node.get(kind, {}).items():
                totals[kind][name] = totals[kind].get(name, 0.0) + float(amount)
    context = {
        "section": "cluster",
        "status": status,
        "serve": status.get("serve") if status else None,
        "reconciler": status.get("reconciler") if status else None,
        "nodes": nodes,
        "totals": totals,
        "app_name": ctx.settings.serving.app_name,
    }
    return render(request, "admin_cluster.html", context, session=session, refresh=True)
