"""The web UI at /ui: server-rendered pages (Jinja2) over the same operations as the API.

`install_ui(app)` adds the router, the static files and the two answers a page gives
instead of itself: a redirect to the login form, and the error page.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from argus.api.app import include_routes
from argus.ui.pages import STATIC_DIR, PageError, error_page
from argus.ui.routes import router
from argus.ui.session import (
    COOKIE,
    CsrfRefused,
    LoginRequired,
    clear_session_cookie,
    login_url,
)

__all__ = ["install_ui", "router"]


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    response = RedirectResponse(login_url(exc.next_path), status_code=303)
    if COOKIE in request.cookies:
        clear_session_cookie(response)  # unknown, revoked, or its user disabled
    return response


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return error_page(request, exc)


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CsrfRefused)
    return error_page(request, PageError(403, "Refused", exc.message, exc.session))


def install_ui(app: FastAPI) -> None:
    include_routes(app, router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
