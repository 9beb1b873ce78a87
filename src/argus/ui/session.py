"""The UI's session: the token in a cookie, CSRF checks, the login redirect, flash notes.

The cookie holds the bearer token itself (HttpOnly, SameSite=Strict, Path=/ui), so a
page is authenticated exactly as an API call is (`argus.api.deps.authenticate`).
A form that changes something carries `csrf`, an HMAC of that token: another site
can neither read the cookie nor compute it. A POST whose `Origin` names another host
is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import quote, unquote, urlencode, urlsplit

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from argus.api.deps import AppContext, authenticate, get_ctx
from argus.auth.tokens import Principal
from argus.errors import Unauthorized

COOKIE = "argus_token"
COOKIE_PATH = "/ui"
FLASH_COOKIE = "argus_flash"
CSRF_FIELD = "csrf"
HOME = "/ui/serving"
_CSRF_KEY = b"argus-csrf"


@dataclass(frozen=True)
class UiSession:
    principal: Principal
    csrf: str
    token: str = field(default="", repr=False)  # the cookie's: the playground calls with it

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A POST without the right csrf field, or from another origin (HTTP 403)."""

    def __init__(self, message: str, session: UiSession | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.session = session


def csrf_token(token: str) -> str:
    return hmac.new(_CSRF_KEY, token.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def csrf_matches(token: str, submitted: str) -> bool:
    return hmac.compare_digest(csrf_token(token).encode("ascii"), submitted.encode("utf-8"))


def origin_allowed(request: Request) -> bool:
    """True unless the request names an Origin that is not this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    try:
        parts = urlsplit(origin)
    except ValueError:  # not a URL at all (`http://[`): not this host either
        return False
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host


def safe_next(raw: str | None) -> str:
    """Where to go after logging in: a path inside /ui, else the serving page."""
    if not raw or not raw.startswith("/ui/") or raw.startswith("//"):
        return HOME
    if "\\" in raw or any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return HOME
    try:
        parts = urlsplit(raw)
    except ValueError:
        return HOME
    if parts.scheme or parts.netloc or len(raw) > 2048:
        return HOME
    return raw


def login_url(next_path: str) -> str:
    return "/ui/login?" + urlencode({"next": safe_next(next_path)})


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def cookie_token(request: Request) -> str | None:
    token = request.cookies.get(COOKIE, "").strip()
    return token or None


def try_session(ctx: AppContext, request: Request) -> UiSession | None:
    token = cookie_token(request)
    if token is None:
        return None
    try:
        principal = authenticate(ctx, token)
    except Unauthorized:
        return None
    return UiSession(principal, csrf_token(token), token)


def _next_for(request: Request) -> str:
    if request.method != "GET":
        return HOME
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def require_session(request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> UiSession:
    session = try_session(ctx, request)
    if session is None:
        raise LoginRequired(_next_for(request))
    return session


Session = Annotated[UiSession, Depends(require_session)]


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The posted form's text fields, once its origin and csrf field are checked."""
    if not origin_allowed(request):
        raise CsrfRefused("this form was posted from another site", session)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    token = cookie_token(request) or ""
    if not csrf_matches(token, fields.get(CSRF_FIELD, "")):
        raise CsrfRefused(
            "the form's security token is missing or stale; reload the page and try again",
            session,
        )
    return fields


Form = Annotated[dict[str, str], Depends(checked_form)]


# -- flash notes: one message carried across a redirect ----------------------
def set_flash(response: Response, message: str, kind: str = "ok") -> None:
    response.set_cookie(
        FLASH_COOKIE,
        quote(f"{kind}:{message}", safe=""),
        path=COOKIE_PATH,
        max_age=60,
        httponly=True,
        samesite="strict",
    )


def flash_redirect(url: str, message: str, kind: str = "ok") -> RedirectResponse:
    """The answer to a form that changed something: go to `url`, which shows `message`."""
    response = RedirectResponse(url, status_code=303)
    set_flash(response, message, kind)
    return response


def read_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, message = unquote(raw).partition(":")
    return (kind if kind in ("ok", "error") else "ok", message)


def clear_flash(response: Response) -> None:
    response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
