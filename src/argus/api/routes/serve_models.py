"""`/api/v2/serve/models`: validate, write desired state, return. The reconciler does the rest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from argus.api.bodies import in_thread, read_json_object, read_yaml_body
from argus.api.deps import Admin, AppContext, Caller, Ctx
from argus.api.errors import error_responses
from argus.demo import DEMO_SPEC_YAML
from argus.errors import BadRequest
from argus.serving import control
from argus.store.schema import ServeModel
from argus.views import event_page, event_view, model_view

router = APIRouter(prefix="/api/v2/serve", tags=["serving"])

EXAMPLE_SPEC = DEMO_SPEC_YAML
EXAMPLE_MODEL: dict[str, Any] = {
    "model_key": "mdl_5f2c0e8a9b1d3c4e7f60",
    "model_id": "alice-202611281200-smol",
    "model_id_suffix": "smol",
    "user_id": "alice",
    "state": "RUNNING",
    "error_summary": None,
    "generation": 2,
    "observed_generation": 2,
    "target_replicas": 2,
    "ready_replicas": 2,
    "replicas": {"current": 2, "min": 2, "max": 2},
    "autoscaling": None,
    "scaled_to_zero": False,
    "gpus_per_replica": 1,
    "gpus": 2,
    "model_source": "/private/hf/SmolLM2-135M-Instruct",
    "created_at": "2026-11-28T12:00:05+00:00",
    "updated_at": "2026-11-28T12:03:10+00:00",
}


def _example(status: int, body: Any) -> dict[int | str, dict[str, Any]]:
    return {status: {"content": {"application/json": {"example": body}}}}


MAX_QUERY_OFFSET = 1_000_000_000
KEY_PATH = Path(max_length=64, description="The model's key, as the list returns it.")


def _view(ctx: AppContext, model: ServeModel) -> dict[str, Any]:
    return model_view(model, ctx.status.cluster_note())


@router.post(
    "/models",
    status_code=202,
    summary="Serve a model from a YAML spec (or update the live model with that model_id)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {
                    "schema": {"type": "string"},
                    "example": EXAMPLE_SPEC,
                }
            },
        }
    },
    responses={
        202: {
            "content": {
                "application/json": {
                    "example": {
                        "model_key": "mdl_5f2c0e8a9b1d3c4e7f60",
                        "model_id": "alice-202611281200-smol",
                        "state": "QUEUED",
                    }
                }
            }
        },
        **error_responses(400, 401, 403, 409, 413, 415, 422),
    },
)
async def post_model(request: Request, ctx: Ctx, caller: Caller) -> JSONResponse:
    text = await read_yaml_body(request, control.MAX_SPEC_BYTES)
    model, _created = await in_thread(control.submit_spec, ctx.serving, caller, text, ctx.clock())
    return JSONResponse(
        {"model_key": model.model_key, "model_id": model.model_id, "state": model.state},
        status_code=202,
    )


@router.get(
    "/models",
    summary="List your models (the admin sees everyone's), newest update first",
    responses={
        **_example(
            200,
            {"items": [EXAMPLE_MODEL], "total": 1, "openai_base_url": "http://127.0.0.1:8000/v1"},
        ),
        **error_responses(400, 401, 413, 422),
    },
)
def list_models(
    ctx: Ctx,
    caller: Caller,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_QUERY_OFFSET),
    include_deleted: bool = False,
) -> dict[str, Any]:
    items, total = control.list_models(
        ctx.serving, caller, include_deleted=include_deleted, limit=limit, offset=offset
    )
    return {
        "items": [_view(ctx, m) for m in items],
        "total": total,
        "openai_base_url": ctx.settings.openai_base_url,
        "cluster": ctx.status.cluster_note(),
    }


@router.get(
    "/models/{model_key}",
    summary="A model: state, resolved spec, its newest events, Serve status",
    responses=error_responses(400, 401, 404, 413, 422)
    | _example(
        200,
        {
            "model": EXAMPLE_MODEL,
            "resolved_spec_yaml": (
                "model_id: smol\nmodel_source: /private/hf/SmolLM2-135M-Instruct\n"
            ),
            "events": [
                {
                    "id": 1,
                    "time": "2026-11-28T12:00:05+00:00",
                    "event_type": "CREATED",
                    "payload": {"to": "QUEUED", "generation": 1},
                },
            ],
            "events_total": 1,
            "serve_status": {
                "deployment": "LLMServer:alice-202611281200-smol",
                "application_status": "RUNNING",
                "status": "HEALTHY",
                "message": "",
                "replicas": {"RUNNING": 2},
            },
            "openai_base_url": "http://127.0.0.1:8000/v1",
        },
    ),
)
def get_model(ctx: Ctx, caller: Caller, model_key: str = KEY_PATH) -> dict[str, Any]:
    model, events, total = control.events(ctx.serving, caller, model_key)
    return {
        "model": _view(ctx, model),
        "resolved_spec_yaml": control.resolved_spec_yaml(model),
        "events": [event_view(e) for e in events],
        "events_total": total,
        "serve_status": ctx.status.model_status(model.model_id),
        "openai_base_url": ctx.settings.openai_base_url,
    }


@router.get(
    "/models/{model_key}/events",
    summary="A model's events, newest first; page back with before=<the last id you saw>",
    responses=error_responses(400, 401, 404, 413, 422)
    | _example(
        200,
        {
            "items": [
                {
                    "id": 7,
                    "time": "2026-11-28T12:03:10+00:00",
                    "event_type": "READY",
                    "payload": {"from": "DEPLOYING", "to": "RUNNING"},
                }
            ],
            "total": 7,
            "next_before": None,
        },
    ),
)
def model_events(
    ctx: Ctx,
    caller: Caller,
    model_key: str = KEY_PATH,
    limit: int = Query(control.EVENTS_PAGE, ge=1, le=500),
    before: int | None = Query(None, ge=1, le=2**62, description="Events older than this id."),
) -> dict[str, Any]:
    _, events, total = control.events(ctx.serving, caller, model_key, limit, before)
    return event_page(events, total, limit)


@router.patch(
    "/models/{model_key}",
    status_code=202,
    summary='Scale or share a model: {"num_replicas": N} or {"autoscaling": ...}, {"access": ...}',
    description=(
        "`num_replicas` sets a fixed replica count, `autoscaling` a range that follows load "
        "(`{min_replicas, max_replicas, target_ongoing_requests, idle_seconds}`; "
        "`min_replicas: 0` scales to zero when idle); either applies in place, no running "
        "replica restarts. `access` says who else may call it on the "
        'OpenAI endpoint: `"private"`, `"all-users"` or `{"users": ["bob"]}`; a change of '
        "access restarts nothing and bites within seconds."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "examples": {
                        "scale": {"value": {"num_replicas": 2}},
                        "autoscale": {
                            "value": {
                                "autoscaling": {
                                    "min_replicas": 0,
                                    "max_replicas": 4,
                                    "target_ongoing_requests": 8,
                                    "idle_seconds": 600,
                                }
                            }
                        },
                        "share": {"value": {"access": {"users": ["bob"]}}},
                    }
                }
            },
        }
    },
    responses={
        **_example(202, EXAMPLE_MODEL),
        **error_responses(400, 401, 404, 409, 413, 415, 422),
    },
)
async def patch_model(
    request: Request, ctx: Ctx, caller: Caller, model_key: str = KEY_PATH
) -> JSONResponse:
    body = await read_json_object(request, '{"num_replicas": N} or {"access": ...}')
    unknown = set(body) - {"num_replicas", "autoscaling", "access"}
    if not body or unknown:
        raise BadRequest(
            'send {"num_replicas": N} or {"autoscaling": {...}}, {"access": ...}, or both; '
            + (f"not patchable: {', '.join(sorted(unknown))}" if unknown else "the body is empty")
        )
    replicas = control.parse_replicas(body)
    access = control.parse_access(body["access"]) if "access" in body else None
    model = None
    if replicas is not None:
        model = await in_thread(
            control.scale, ctx.serving, caller, model_key, replicas, ctx.clock()
        )
    if access is not None:
        model = await in_thread(
            control.set_access, ctx.serving, caller, model_key, access, ctx.clock()
        )
    assert model is not None  # the body named one field at least
    return JSONResponse(_view(ctx, model), status_code=202)


@router.delete(
    "/models/{model_key}",
    status_code=202,
    summary="Delete a model (state DELETING)",
    responses={
        **_example(202, {**EXAMPLE_MODEL, "state": "DELETING"}),
        **error_responses(400, 401, 404, 409, 413, 422),
    },
)
def delete_model(ctx: Ctx, caller: Caller, model_key: str = KEY_PATH) -> JSONResponse:
    model = control.delete(ctx.serving, caller, model_key, ctx.clock())
    return JSONResponse(_view(ctx, model), status_code=202)


@router.get(
    "/status",
    summary="Serve's application and deployments, proxies, per-node resources (admin)",
    responses=error_responses(400, 401, 403, 413),
)
def serve_status(ctx: Ctx, _: Admin) -> dict[str, Any]:
    status = ctx.status.cluster_status()
    if status is None:
        return {"application": ctx.settings.serving.app_name, "serve": None, "nodes": []}
    return dict(status)
