"""The serving control plane's operations: submit, scale, delete, read.

Each validates, writes desired state in one transaction and returns at once;
the reconciler does the rest. Routes and the CLI call these, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from argus.auth.tokens import Principal
from argus.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from argus.serving.paths import ModelSourceForbidden, ModelSourceInvalid, resolve_model_source
from argus.serving.spec import (
    SpecInvalid,
    SpecLimits,
    SpecSyntaxError,
    load_yaml_mapping,
    validate_spec,
)
from argus.serving.states import ServeState
from argus.store import serving as store
from argus.store.db import Database
from argus.store.schema import ServeEvent, ServeModel

MAX_SPEC_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServingContext:
    db: Database
    storage_root: Path
    limits: SpecLimits


def resolve_spec(ctx: ServingContext, user_id: str, text: str) -> dict[str, Any]:
    """YAML text -> the resolved spec argus stores; raises the API's errors."""
    try:
        data = load_yaml_mapping(text)
        spec = validate_spec(data, ctx.limits)
    except SpecSyntaxError as e:
        raise BadRequest(str(e)) from None
    except SpecInvalid as e:
        raise Unprocessable(
            str(e), details=[{"field": f.field, "message": f.message} for f in e.errors]
        ) from None
    try:
        source = resolve_model_source(spec.model_source, ctx.storage_root, user_id)
    except ModelSourceForbidden as e:
        raise Forbidden(str(e), details=[{"field": "model_source", "message": str(e)}]) from None
    except ModelSourceInvalid as e:
        raise Unprocessable(
            f"model_source: {e}", details=[{"field": "model_source", "message": str(e)}]
        ) from None
    return {
        "model_id": spec.model_id,
        "model_source": str(source),
        "num_replicas": spec.num_replicas,
        "gpus_per_replica": spec.gpus_per_replica,
        "engine_kwargs": spec.engine_kwargs.model_dump(exclude_none=True),
    }


def submit_spec(
    ctx: ServingContext, caller: Principal, text: str, now: datetime
) -> tuple[ServeModel, bool]:
    """Store a posted spec: a new model, or an in-place update of the live suffix."""
    resolved = resolve_spec(ctx, caller.user_id, text)
    for attempt in range(2):
        try:
            with ctx.db.write() as s:
                result = store.upsert_serve_model(
                    s,
                    user_id=caller.user_id,
                    suffix=resolved["model_id"],
                    spec_yaml=text,
                    resolved_spec=resolved,
                    now=now,
                )
                return result.model, result.created
        except store.ModelBeingDeleted as e:
            raise Conflict(
                f"model {e} is still being deleted; post the spec again once it is DELETED"
            ) from None
        except IntegrityError:
            # A concurrent post of the same suffix won the insert (a database
            # without BEGIN IMMEDIATE); the retry finds it and updates in place.
            if attempt:
                raise
    raise AssertionError("unreachable")


def get_owned(ctx: ServingContext, caller: Principal, model_key: str) -> ServeModel:
    with ctx.db.read() as s:
        model = store.get_serve_model(s, model_key, None if caller.is_admin else caller.user_id)
    if model is None:
        raise NotFound(f"no model with key {model_key!r}; list yours with GET /api/v2/serve/models")
    return model


def get_with_events(
    ctx: ServingContext, caller: Principal, model_key: str
) -> tuple[ServeModel, list[ServeEvent]]:
    model = get_owned(ctx, caller, model_key)
    with ctx.db.read() as s:
        events = store.list_serve_events(s, model.model_key)
    return model, events


def scale(
    ctx: ServingContext, caller: Principal, model_key: str, num_replicas: Any, now: datetime
) -> ServeModel:
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int):
        raise Unprocessable(
            f"num_replicas: must be a whole number, got {num_replicas!r}",
            details=[{"field": "num_replicas", "message": "must be a whole number"}],
        )
    if not 1 <= num_replicas <= ctx.limits.max_replicas:
        msg = f"must be between 1 and {ctx.limits.max_replicas}, got {num_replicas}"
        raise Unprocessable(
            f"num_replicas: {msg}", details=[{"field": "num_replicas", "message": msg}]
        )
    owned = get_owned(ctx, caller, model_key)
    with ctx.db.write() as s:
        model = store.get_serve_model(s, owned.model_key)
        assert model is not None  # models are never removed, only marked DELETED
        _refuse_if_ended(model, "scale")
        store.scale_serve_model(s, model, num_replicas, now)
        return model


def delete(ctx: ServingContext, caller: Principal, model_key: str, now: datetime) -> ServeModel:
    owned = get_owned(ctx, caller, model_key)
    with ctx.db.write() as s:
        model = store.get_serve_model(s, owned.model_key)
        assert model is not None
        _refuse_if_ended(model, "delete")
        store.request_delete(s, model, now)
        return model


def _refuse_if_ended(model: ServeModel, verb: str) -> None:
    if model.state == ServeState.DELETED.value:
        raise Conflict(
            f"model {model.model_id} is DELETED and cannot be changed; "
            f"post its spec again to serve it under a new id"
        )
    if verb == "scale" and model.state == ServeState.DELETING.value:
        raise Conflict(f"model {model.model_id} is being deleted; it cannot be scaled")
