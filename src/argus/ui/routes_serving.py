"""Serving pages: the list, the spec editor, a model's page, and the forms that change a model.

Every change goes through `argus.serving.control`, so the pages refuse exactly what
the API refuses, with the same messages; a spec's field errors are shown next to
the line where the field is written. The editor also opens prefilled to serve a
training task's checkpoint (`?from_task=<task_id>`, the caller's own tasks only).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.background import BackgroundTask
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from argus.api.deps import Ctx
from argus.demo import DEMO_SPEC_YAML
from argus.errors import ArgusError, NotFound
from argus.serving import control
from argus.store.schema import ServeModel
from argus.store.states import ServeState
from argus.training import control as tasks
from argus.ui.pages import (
    PageError,
    any_needs_refresh,
    client_examples,
    needs_refresh,
    posted_spec,
    render,
    spec_editor,
)
from argus.ui.session import Form, Session, UiSession, flash_redirect
from argus.views import event_view, model_view

router = APIRouter()

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
    items, total = control.list_models(
        ctx.serving, session.principal, include_deleted=deleted, limit=LIST_LIMIT
    )
    models = [model_view(m, ctx.status.cluster_note()) for m in items]
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
        try:
            task = tasks.servable_checkpoint(ctx.tasks, session.principal, from_task)
        except NotFound:
            raise PageError(
                404, "Task not found", f"There is no task {from_task!r} of yours.", session
            ) from None
        except ArgusError as e:
            raise PageError(e.status, "No checkpoint to serve", e.message, session) from None
        suffix = tasks.checkpoint_model_id(task.name, task.task_id)
        text = control.checkpoint_spec_yaml(task.name, task.task_id, suffix)
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
    _, events, total = control.events(ctx.serving, session.principal, model.model_key)
    view = model_view(model, ctx.status.cluster_note())
    base_url = ctx.settings.openai_base_url
    context: dict[str, Any] = {
        "section": "serving",
        "model": view,
        "live": ServeState(model.state).is_live,
        "spec_yaml": control.resolved_spec_yaml(model),
        "events": [event_view(e) for e in events],
        "events_total": total,
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
    # A whole number goes through as one; anything else is refused with the API's own
    # message. The form sets a fixed count (an autoscaled model stops scaling).
    count: object = int(raw) if re.fullmatch(r"[0-9]{1,6}", raw) else raw
    back = _back(form, model.model_key)
    try:
        wanted = control.parse_replicas({"num_replicas": count})
        assert wanted is not None
        scaled = control.scale(ctx.serving, session.principal, model.model_key, wanted, ctx.clock())
    except ArgusError as e:
        return flash_redirect(back, f"Could not scale {model.model_id}: {e.message}", "error")
    replicas = model_view(scaled)["target_replicas"]
    return flash_redirect(back, f"Scaling {scaled.model_id} to {replicas} replica(s).")


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
def try_it(ctx: Ctx, session: Session, form: Form, model_key: str) -> Response:
    """The playground: the answer as newline-delimited JSON events (`argus.serving.chat`),
    or one JSON refusal with its status before anything was sent to the model."""
    try:
        settings = control.playground_settings(form)
        stream = control.try_chat(
            ctx.serving,
            session.principal,
            session.token,
            model_key,
            form.get("message", ""),
            settings,
        )
    except ArgusError as e:
        return JSONResponse({"ok": False, "error": e.message}, status_code=e.status)
    lines = (json.dumps(event) + "\n" for event in stream.events())
    return StreamingResponse(
        lines,
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(stream.close),
    )
