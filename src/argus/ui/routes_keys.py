"""The Keys page: your inference keys for the OpenAI endpoint (the admin sees everyone's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from argus import keys
from argus.api.deps import AppContext, Ctx
from argus.errors import ArgusError, Unprocessable
from argus.ui.pages import form_errors, render
from argus.ui.session import Form, Session, UiSession, flash_redirect

router = APIRouter()
KEYS = "/ui/keys"


def _keys_page(
    request: Request,
    ctx: AppContext,
    session: UiSession,
    *,
    made: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
    error: ArgusError | None = None,
) -> HTMLResponse:
    message, field_errors = form_errors(error)
    context = {
        "section": "keys",
        "keys": keys.list_keys(ctx.db, session.principal, ctx.clock()),
        "made": made,
        "form": form or {},
        "error": message,
        "field_errors": field_errors,
        "openai_url": ctx.settings.openai_base_url,
        # The new key is on this page once: a reload shows the plain list.
        "replace_url": KEYS if made else "",
    }
    status = error.status if error is not None else 200
    return render(request, "keys.html", context, session=session, status=status)


@router.get("/keys")
def keys_page(request: Request, ctx: Ctx, session: Session) -> HTMLResponse:
    return _keys_page(request, ctx, session)


@router.post("/keys")
def create_key(request: Request, ctx: Ctx, session: Session, form: Form) -> Response:
    name = form.get("name", "").strip()
    models = [m.strip() for m in form.get("models", "").replace(",", " ").split() if m.strip()]
    expires = form.get("expires", "").strip()
    entered = {"name": name, "models": form.get("models", ""), "expires": expires}
    try:
        expires_at = _expiry(expires)
        made = keys.create_key(
            ctx.db, session.principal, name, models or None, expires_at, ctx.clock()
        )
    except ArgusError as e:
        return _keys_page(request, ctx, session, form=entered, error=e)
    return _keys_page(request, ctx, session, made=made)


def _expiry(text: str) -> datetime | None:
    """A date from the form's date field (the end of that day, UTC), or none."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(f"{text}T23:59:59+00:00")
    except ValueError:
        message = f"{text!r} is not a date; pick one, or leave it empty for no expiry"
        details = [{"field": "expires_at", "message": message}]
        raise Unprocessable(message, details=details) from None


@router.post("/keys/{key_id}/revoke")
def revoke_key(ctx: Ctx, session: Session, form: Form, key_id: str) -> RedirectResponse:
    try:
        keys.revoke_key(ctx.db, session.principal, key_id, ctx.clock())
    except ArgusError as e:
        return flash_redirect(KEYS, e.message, "error")
    return flash_redirect(KEYS, f"Revoked key {key_id}: calls with it stop within seconds.")
