"""The serving control plane's operations: submit, scale, delete, list, read.

Each validates, writes desired state in one transaction and returns at once; the
control loop does the rest. The API, the UI and the CLI call these, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from argus.auth.tokens import Principal
from argus.cluster.serve_app import deployment_name
from argus.cluster.serve_client import ModelDeployment
from argus.demo import DEMO_SPEC_YAML
from argus.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from argus.ids import make_model_id, make_model_id_prefix, new_model_key
from argus.quotas import Quota, model_refusal
from argus.serving import chat
from argus.serving.llm_config import EngineSettings, build_llm_config
from argus.serving.spec import (
    Access,
    Autoscaling,
    ResolvedServingSpec,
    SpecLimits,
    access_of,
    limit_errors,
    stored_access,
    validate_spec,
)
from argus.serving.states import Trigger, next_state, transition
from argus.storage import PathForbidden, PathInvalid, checkpoint_source, resolve_model_source
from argus.store import serving as store
from argus.store.db import Database
from argus.store.schema import ServeEvent, ServeModel
from argus.store.states import ServeState
from argus.store.users import get_user, quota_of, usage_of
from argus.text import shown, summarize_error
from argus.yamlspec import (
    FieldError,
    SpecInvalid,
    SpecSyntaxError,
    load_yaml_mapping,
    pydantic_errors,
)

MAX_SPEC_BYTES = 32 * 1024  # a spec is a few hundred bytes; an echo of it stays small
EVENTS_PAGE = 50


Check = Callable[[Sequence[ModelDeployment]], dict[str, str]]


@dataclass(frozen=True)
class ServingContext:
    db: Database
    storage_root: Path
    limits: SpecLimits
    quotas: Quota  # the defaults; the admin may set a user's own
    chat_url: str = ""  # the OpenAI chat endpoint as argus reaches it ("try it")
    engine: EngineSettings | None = None
    # Ray Serve LLM's own check of the LLMConfig a spec becomes (through the Ray agent);
    # None, or a cluster that does not answer: the check happens when it is applied.
    check: Check | None = None


def invalid(errors: list[FieldError]) -> Unprocessable:
    return Unprocessable(
        "; ".join(str(e) for e in errors),
        details=[{"field": f.field, "message": f.message} for f in errors],
    )


def resolve_spec(ctx: ServingContext, user_id: str, text: str) -> ResolvedServingSpec:
    """YAML text -> the resolved spec argus stores; raises the API's errors."""
    try:
        spec = validate_spec(load_yaml_mapping(text), ctx.limits)
    except SpecSyntaxError as e:
        raise BadRequest(str(e)) from None
    except SpecInvalid as e:
        raise invalid(e.errors) from None
    try:
        source = resolve_model_source(spec.model_source, ctx.storage_root, user_id)
    except PathForbidden as e:
        raise Forbidden.of_field("model_source", str(e)) from None
    except PathInvalid as e:
        raise Unprocessable.of_field("model_source", str(e)) from None
    written = spec.model_dump(exclude_unset=True)  # num_replicas only where it was written
    return ResolvedServingSpec.model_validate({**written, "model_source": str(source)})


def submit_spec(
    ctx: ServingContext, caller: Principal, text: str, now: datetime
) -> tuple[ServeModel, bool]:
    """Store a posted spec: a new model, or an in-place update of the live suffix (D2)."""
    spec = resolve_spec(ctx, caller.user_id, text)
    _check_with_ray(ctx, caller.user_id, spec, now)
    for attempt in range(2):
        try:
            with ctx.db.write() as s:
                return _upsert(ctx, s, caller, spec, text, now)
        except IntegrityError:
            # A concurrent post of the same suffix won the insert (a database
            # without BEGIN IMMEDIATE); the retry finds it and updates in place.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _upsert(
    ctx: ServingContext,
    s: Session,
    caller: Principal,
    spec: ResolvedServingSpec,
    text: str,
    now: datetime,
) -> tuple[ServeModel, bool]:
    live = store.find_live_model(s, caller.user_id, spec.model_id)
    if live is not None and live.state == ServeState.DELETING.value:
        raise Conflict(
            f"model {live.model_id} is still being deleted; post the spec again once it is DELETED"
        )
    if live is not None and live.state == ServeState.SUSPENDED.value:
        raise Conflict(f"model {live.model_id} is suspended with its owner; enable them first")
    _check_quota(ctx, s, caller, spec, live)
    stored = spec.stored()
    if live is None:
        prefix = make_model_id_prefix(caller.user_id, now)
        model_id = make_model_id(prefix, spec.model_id)
        _refuse_name_clash(s, model_id)
        model = store.insert_model(
            s,
            model_key=new_model_key(),
            user_id=caller.user_id,
            suffix=spec.model_id,
            prefix=prefix,
            model_id=model_id,
            spec_yaml=text,
            resolved_spec=stored,
            gpus=spec.gpus,
            state=next_state(None, Trigger.CREATED),
            event_type=Trigger.CREATED.value,
            now=now,
        )
        return model, True
    unchanged = live.resolved_spec == stored and live.spec_yaml == text
    if unchanged and live.state != ServeState.FAILED.value:
        return live, False  # the same spec again changes nothing
    live.spec_yaml = text
    live.resolved_spec = stored
    live.gpus = spec.gpus
    live.generation += 1
    transition(s, live, Trigger.SPEC_UPDATED, now, payload={"generation": live.generation})
    return live, False


def _check_with_ray(
    ctx: ServingContext, user_id: str, spec: ResolvedServingSpec, now: datetime
) -> None:
    """Refuse now what Ray Serve LLM would refuse when it is applied (422 with its reason)."""
    if ctx.check is None or ctx.engine is None:
        return
    model_id = make_model_id(make_model_id_prefix(user_id, now), spec.model_id)
    deployment = ModelDeployment(model_id, build_llm_config(model_id, spec, ctx.engine))
    try:
        refused = ctx.check([deployment])
    except ConnectionError:
        return  # the cluster is away: the apply checks it, and fails the model alone
    if model_id in refused:
        reason = summarize_error(refused[model_id])
        raise invalid(
            [FieldError("(spec)", f"Ray Serve LLM refuses the config it becomes: {reason}")]
        )


def _check_quota(
    ctx: ServingContext,
    s: Session,
    caller: Principal,
    spec: ResolvedServingSpec,
    live: ServeModel | None,
) -> None:
    if caller.is_admin:
        return
    user = get_user(s, caller.user_id)
    if user is None:
        raise NotFound(f"no user {caller.user_id!r}")
    usage = usage_of(s, caller.user_id, exclude_model_key=live.model_key if live else None)
    refusal = model_refusal(
        caller.user_id,
        quota_of(user, ctx.quotas),
        usage,
        new=live is None,
        replicas=spec.max_replicas,
        gpus=spec.gpus,
    )
    if refusal is not None:
        raise Conflict(refusal)


def _refuse_name_clash(s: Session, model_id: str) -> None:
    """Ray names a deployment after the model id with '.' as '_': two live ids that map to
    one name would share a deployment, so the second is refused."""
    name = deployment_name(model_id)
    clash = s.scalar(
        select(ServeModel.model_id).where(
            ServeModel.state != ServeState.DELETED.value,
            func.replace(ServeModel.model_id, ".", "_") == name.removeprefix("LLMServer:"),
        )
    )
    if clash is not None:
        raise Conflict(
            f"model id {model_id} would share Ray Serve's deployment name with the live "
            f"model {clash} ('.' and '_' are the same to Ray); choose another model_id"
        )


def get_owned(ctx: ServingContext, caller: Principal, model_key: str) -> ServeModel:
    with ctx.db.read() as s:
        model = store.get_serve_model(s, model_key, None if caller.is_admin else caller.user_id)
    if model is None:
        raise NotFound(
            f"no model with key {shown(model_key)}; list yours with GET /api/v2/serve/models"
        )
    return model


def list_models(
    ctx: ServingContext,
    caller: Principal,
    *,
    include_deleted: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ServeModel], int]:
    """A page of the caller's models (everyone's for the admin), newest update first."""
    with ctx.db.read() as s:
        return store.list_serve_models(
            s,
            user_id=None if caller.is_admin else caller.user_id,
            include_deleted=include_deleted,
            limit=limit,
            offset=offset,
        )


def events(
    ctx: ServingContext,
    caller: Principal,
    model_key: str,
    limit: int = EVENTS_PAGE,
    before: int | None = None,
) -> tuple[ServeModel, list[ServeEvent], int]:
    """The model, a page of its events (newest first, older than `before`), and their total."""
    model = get_owned(ctx, caller, model_key)
    with ctx.db.read() as s:
        page, total = store.list_serve_events(s, model.model_key, limit, before)
    return model, page, total


def parse_replicas(body: Mapping[str, Any]) -> int | Autoscaling | None:
    """A PATCH body's `num_replicas` (a fixed count) or `autoscaling` (a range), checked."""
    if "num_replicas" in body and "autoscaling" in body:
        raise invalid(
            [
                FieldError(
                    "autoscaling", "send num_replicas (a fixed count) or autoscaling, not both"
                )
            ]
        )
    if "autoscaling" in body:
        try:
            return Autoscaling.model_validate(body["autoscaling"])
        except ValidationError as e:
            raise invalid(
                [
                    FieldError(f"autoscaling.{f.field}".removesuffix(".(top level)"), f.message)
                    for f in pydantic_errors(e, Autoscaling)
                ]
            ) from None
    if "num_replicas" not in body:
        return None
    num_replicas = body["num_replicas"]
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int):
        raise invalid(
            [FieldError("num_replicas", f"must be a whole number, got {shown(num_replicas)}")]
        )
    if num_replicas < 1:
        raise invalid([FieldError("num_replicas", f"must be at least 1, got {num_replicas}")])
    return num_replicas


def scale(
    ctx: ServingContext,
    caller: Principal,
    model_key: str,
    wanted: int | Autoscaling,
    now: datetime,
) -> ServeModel:
    """A new replica count, or autoscaling range, applied in place (no replica restarts)."""
    owned = get_owned(ctx, caller, model_key)
    with ctx.db.write() as s:
        model = store.get_serve_model(s, owned.model_key)
        assert model is not None  # models are never removed, only marked DELETED
        _refuse_if_ended(model, "scale")
        stored = _stored_spec(model)
        spec = (
            stored.with_autoscaling(wanted)
            if isinstance(wanted, Autoscaling)
            else stored.with_replicas(wanted)
        )
        errors = limit_errors(spec, ctx.limits)
        if errors:
            raise invalid(errors)
        if model.resolved_spec == spec.stored():
            return model  # already that: nothing to write
        _check_quota(ctx, s, Principal(model.user_id, caller.is_admin), spec, model)
        model.resolved_spec = spec.stored()
        model.gpus = spec.gpus
        model.generation += 1
        transition(
            s,
            model,
            Trigger.SCALED,
            now,
            payload={
                "generation": model.generation,
                "replicas_from": _replicas_of(stored),
                "replicas_to": _replicas_of(spec),
            },
        )
        return model


def _replicas_of(spec: ResolvedServingSpec) -> int | dict[str, int]:
    return spec.autoscaling.model_dump() if spec.autoscaling else spec.num_replicas


def parse_access(raw: Any) -> Access:
    try:
        return access_of(raw)
    except ValueError as e:
        raise invalid([FieldError("access", str(e))]) from None


def set_access(
    ctx: ServingContext, caller: Principal, model_key: str, wanted: Access, now: datetime
) -> ServeModel:
    """Who else may call the model; the gate changes, the model's replicas do not."""
    owned = get_owned(ctx, caller, model_key)
    with ctx.db.write() as s:
        model = store.get_serve_model(s, owned.model_key)
        assert model is not None
        _refuse_if_ended(model, "share")
        spec = _stored_spec(model).with_access(wanted)
        if model.resolved_spec == spec.stored():
            return model
        before = model.resolved_spec.get("access", "private")
        model.resolved_spec = spec.stored()
        transition(
            s,
            model,
            Trigger.ACCESS_CHANGED,
            now,
            payload={"from": before, "to": stored_access(wanted), "by": caller.user_id},
        )
        return model


def delete(ctx: ServingContext, caller: Principal, model_key: str, now: datetime) -> ServeModel:
    owned = get_owned(ctx, caller, model_key)
    with ctx.db.write() as s:
        model = store.get_serve_model(s, owned.model_key)
        assert model is not None
        _refuse_if_ended(model, "delete")
        if model.state != ServeState.DELETING.value:
            transition(s, model, Trigger.DELETE_REQUESTED, now, payload={"by": caller.user_id})
        return model


def _stored_spec(model: ServeModel) -> ResolvedServingSpec:
    try:
        return ResolvedServingSpec.from_stored(model.resolved_spec)
    except SpecInvalid as e:
        raise Conflict(
            f"the stored spec of {model.model_id} breaks a rule ({e}); post the spec again"
        ) from None


def _refuse_if_ended(model: ServeModel, verb: str) -> None:
    if model.state == ServeState.DELETED.value:
        raise Conflict(
            f"model {model.model_id} is DELETED and cannot be changed; "
            f"post its spec again to serve it under a new id"
        )
    if verb in ("scale", "share") and model.state == ServeState.DELETING.value:
        raise Conflict(f"model {model.model_id} is being deleted; it cannot be changed")
    if verb == "scale" and model.state == ServeState.SUSPENDED.value:
        raise Conflict(f"model {model.model_id} is suspended with its owner; enable them first")


def playground_settings(fields: Mapping[str, str]) -> chat.Settings:
    """The playground's form fields, checked: an empty field takes its default."""
    errors: list[FieldError] = []
    temperature = chat.DEFAULT_TEMPERATURE
    max_tokens = chat.DEFAULT_MAX_TOKENS
    raw = fields.get("temperature", "").strip()
    if raw:
        try:
            temperature = float(raw)
        except ValueError:
            temperature = -1.0
        if not 0.0 <= temperature <= chat.MAX_TEMPERATURE:  # NaN fails this too
            errors.append(FieldError("temperature", f"a number from 0 to {chat.MAX_TEMPERATURE:g}"))
    raw = fields.get("max_tokens", "").strip()
    if raw:
        max_tokens = int(raw) if raw.isdecimal() and len(raw) <= 6 else 0
        if not 1 <= max_tokens <= chat.MAX_TOKENS:
            errors.append(FieldError("max_tokens", f"a whole number from 1 to {chat.MAX_TOKENS}"))
    system = fields.get("system", "").strip()
    if len(system) > chat.MAX_CHARS:
        errors.append(FieldError("system", f"keep it under {chat.MAX_CHARS} characters"))
    if errors:
        raise invalid(errors)
    return chat.Settings(temperature=temperature, max_tokens=max_tokens, system=system)


def try_chat(
    ctx: ServingContext,
    caller: Principal,
    token: str,
    model_key: str,
    message: str,
    settings: chat.Settings,
) -> chat.Stream:
    """One message to the caller's RUNNING model with the caller's own token: the answer's
    stream, once the endpoint took the request (the same gate, limits and metering as
    any of the user's own clients)."""
    model = get_owned(ctx, caller, model_key)
    message = message.strip()
    if not message:
        raise invalid([FieldError("message", "type a message first")])
    if len(message) > chat.MAX_CHARS:
        raise invalid([FieldError("message", f"keep it under {chat.MAX_CHARS} characters")])
    if model.state != ServeState.RUNNING.value:
        raise Conflict(f"model is not RUNNING yet (it is {model.state})")
    return chat.open_stream(ctx.chat_url, token, model.model_id, message, settings)


def resolved_spec_yaml(model: ServeModel) -> str:
    return yaml.safe_dump(model.resolved_spec, sort_keys=False)


def checkpoint_spec_yaml(task_name: str, task_id: str, suffix: str) -> str:
    """The demo model's serving spec with a task's checkpoint as model_source."""
    spec = yaml.safe_load(DEMO_SPEC_YAML)
    spec["model_id"] = suffix
    spec["model_source"] = checkpoint_source(task_id)
    return f"# The checkpoint of task {task_name} ({task_id})\n" + yaml.safe_dump(
        spec, sort_keys=False
    )
