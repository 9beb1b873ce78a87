"""Serving pages: the list, the spec editor, a model's page, and the forms that change a model.

Every change goes through `argus.serving.control`, so the pages refuse exactly what
the API refuses, with the same messages; a spec's field errors are shown next to
the line where the field is written. The editor also opens prefilled to serve a
training task's checkpoint (`?from_task=<task_id>`, the caller's own tasks only).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from argus.api.deps import Ctx
from argus.config import Settings
from argus.demo import DEMO_SPEC_YAML
from argus.errors import ArgusError, NotFound
from argus.serving import control
from argus.serving.states import ServeState
from argus.store import serving as store
from argus.store.schema import ServeModel
from argus.ui.pages import (
    PageError,
    any_needs_refresh,
    client_examples,
    needs_refresh,
    posted_spec,
    render,
    spec_editor,
)
from argus.ui.routes_tasks import checkpoint_spec
from argus.ui.session import Form, Session, UiSession, flash_redirect
from argus.views import event_view, model_view, resolved_spec_yaml

router = APIRouter()

TRY_TIMEOUT_S = 60.0
TRY_MAX_TOKENS = 128
TRY_MAX_CHARS = 4000
LIST_LIMIT = 200


def _owned(ctx: Ctx, session: UiSession, model_key: str) -> ServeModel:
    try:
        return control.get_owned(ctx.serving, session.principal, model_key)
    except NotFound:
        raise PageError(
            404, "Model not found", f"There is no model {model_key!r} of yours.", session
        ) from None


def _back(form: dict[str, str], model_key: str) -> str:
    return "/ui/serving" if form.get("back") == "list" else f"/ui/serving/{model_key}"


@router.get("/serving")
def serving_list(
    request: Request, ctx: Ctx, session: Session, deleted: bool = False
) -> HTMLResponse:
    with ctx.db.read() as s:
        items, total = store.list_serve_models(
            s,
            user_id=None if session.is_admin else session.user_id,
            include_deleted=deleted,
            limit=LIST_LIMIT,
        )
        models = [model_view(m) for m in items]
    context = {
        "section": "serving",
        "models": models,
        "total": total,
        "include_deleted": deleted,
        "base_url": ctx.settings.openai_base_url,
        "max_replicas": ctx.settings.serving.max_replicas,
        "live_states": {s.value for s in ServeState if s.is_live},
    }
    return render(
        request,
        "serving_list.html",
        context,
        session=session,
        refresh=any_needs_refresh(models),
    )


def _editor(
    request: Request,
    session: UiSession,
    text: str,
    *,
    error: ArgusError | None = None,
    editing: str | None = None,
    source_task: dict[str, str] | None = None,
) -> HTMLResponse:
    return spec_editor(
        request,
        session,
        "serving_new.html",
        text,
        error=error,
        section="serving",
        editing=editing,
        source_task=source_task,
    )


@router.get("/serving/new")
def new_model(
    request: Request,
    ctx: Ctx,
    session: Session,
    edit: str | None = Query(None),
    from_task: str | None = Query(None),
) -> HTMLResponse:
    if edit:
        model = _owned(ctx, session, edit)
        return _editor(request, session, model.spec_yaml, editing=model.model_id)
    if from_task:
        # The server finds the checkpoint of the caller's own task: no path from the query.
        text, task = checkpoint_spec(ctx, session, from_task)
        source = {"task_id": task.task_id, "name": task.name}
        return _editor(request, session, text, source_task=source)
    return _editor(request, session, DEMO_SPEC_YAML)


@router.post("/serving/new")
def deploy(request: Request, ctx: Ctx, session: Session, form: Form) -> Response:
    text, too_large = posted_spec(form, control.MAX_SPEC_BYTES)
    if too_large is not None:
        return _editor(request, session, text, error=too_large)
    try:
        model, created = control.submit_spec(ctx.serving, session.principal, text, ctx.clock())
    except ArgusError as e:
        return _editor(request, session, text, error=e)
    message = (
        f"Accepted {model.model_id}: it is {model.state}; this page follows it."
        if created
        else f"Posted the spec of {model.model_id} (generation {model.generation}); "
        "the live model is updated in place."
    )
    return flash_redirect(f"/ui/serving/{model.model_key}", message)


@router.get("/serving/{model_key}")
def model_page(request: Request, ctx: Ctx, session: Session, model_key: str) -> HTMLResponse:
    model = _owned(ctx, session, model_key)
    _, events = control.get_with_events(ctx.serving, session.principal, model.model_key)
    view = model_view(model)
    base_url = ctx.settings.openai_base_url
    context: dict[str, Any] = {
        "section": "serving",
        "model": view,
        "live": ServeState(model.state).is_live,
        "spec_yaml": resolved_spec_yaml(model),
        "events": [event_view(e) for e in reversed(events)],
        "serve_status": ctx.status.model_status(model.model_id),
        "base_url": base_url,
        "examples": client_examples(base_url, model.model_id),
        "max_replicas": ctx.settings.serving.max_replicas,
    }
    return render(
        request, "serving_model.html", context, session=session, refresh=needs_refresh(view)
    )


@router.post("/serving/{model_key}/scale")
def scale(ctx: Ctx, session: Session, form: Form, model_key: str) -> Response:
    model = _owned(ctx, session, model_key)
    raw = form.get("num_replicas", "").strip()
    # A whole number goes through as one; anything else reaches control.scale as typed,
    # which refuses it with the API's own message.
    count: object = int(raw) if re.fullmatch(r"[0-9]{1,6}", raw) else raw
    back = _back(form, model.model_key)
    try:
        scaled = control.scale(ctx.serving, session.principal, model.model_key, count, ctx.clock())
    except ArgusError as e:
        return flash_redirect(back, f"Could not scale {model.model_id}: {e.message}", "error")
    return flash_redirect(
        back, f"Scaling {scaled.model_id} to {scaled.target_replicas} replica(s)."
    )


@router.post("/serving/{model_key}/delete")
def delete(ctx: Ctx, session: Session, form: Form, model_key: str) -> Response:
    model = _owned(ctx, session, model_key)
    back = _back(form, model.model_key)
    try:
        deleted = control.delete(ctx.serving, session.principal, model.model_key, ctx.clock())
    except ArgusError as e:
        return flash_redirect(back, f"Could not delete {model.model_id}: {e.message}", "error")
    return flash_redirect(back, f"Deleting {deleted.model_id}: it is {deleted.state}.")


@router.post("/serving/{model_key}/try")
def try_it(ctx: Ctx, session: Session, form: Form, model_key: str) -> JSONResponse:
    try:
        model = control.get_owned(ctx.serving, session.principal, model_key)
    except NotFound:
        return JSONResponse({"ok": False, "error": "no such model of yours"}, status_code=404)
    message = form.get("message", "").strip()
    if not message:
        return JSONResponse({"ok": False, "error": "type a message first"}, status_code=422)
    if len(message) > TRY_MAX_CHARS:
        return JSONResponse(
            {"ok": False, "error": f"keep the message under {TRY_MAX_CHARS} characters"},
            status_code=422,
        )
    if model.state != ServeState.RUNNING.value:
        return JSONResponse(
            {"ok": False, "error": f"model is not RUNNING yet (it is {model.state})"},
            status_code=409,
        )
    status, body = ask_model(chat_url(ctx.settings), model.model_id, message)
    return JSONResponse(body, status_code=status)


def chat_url(settings: Settings) -> str:
    """The OpenAI chat endpoint as argus itself reaches it (a wildcard bind means loopback)."""
    host = settings.serving.serve.http_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a bind address, not a bind
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.serving.serve.http_port}/v1/chat/completions"


def ask_model(
    url: str, model_id: str, message: str, timeout_s: float = TRY_TIMEOUT_S
) -> tuple[int, dict[str, Any]]:
    """One chat message to the model; (HTTP status for the page, JSON body)."""
    request = {
        "model": model_id,
        "messages": [{"role": "user", "content": message}],
        "max_tokens": TRY_MAX_TOKENS,
    }
    try:
        # trust_env off: the endpoint is local, never to be sent through a proxy.
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            reply = client.post(url, json=request)
    except httpx.TimeoutException:
        return 504, {"ok": False, "error": f"the model did not answer within {timeout_s:g} s"}
    except httpx.HTTPError as e:
        return 502, {"ok": False, "error": f"could not reach the model: {e}"}
    if reply.status_code != 200:
        return 502, {
            "ok": False,
            "error": f"the model answered HTTP {reply.status_code}: {reply.text[:300]}",
        }
    try:
        answer = reply.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return 502, {"ok": False, "error": "the reply was not an OpenAI chat completion"}
    return 200, {"ok": True, "answer": str(answer or ""), "model": model_id}
