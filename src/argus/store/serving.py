"""Served models and their events. A state change and its event share one transaction.

The caller opens the transaction (`Database.write()`); these functions never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from argus.ids import make_model_id, make_model_id_prefix, new_model_key
from argus.serving.states import ServeState, Trigger, next_state
from argus.store.schema import ServeEvent, ServeModel


class ModelBeingDeleted(Exception):
    """A spec was posted for a suffix whose model is still being deleted."""


@dataclass(frozen=True)
class UpsertResult:
    model: ServeModel
    created: bool


def get_serve_model(
    session: Session, model_key: str, user_id: str | None = None
) -> ServeModel | None:
    """The model, or None; with user_id, None also for another user's model."""
    model = session.get(ServeModel, model_key)
    if model is None or (user_id is not None and model.user_id != user_id):
        return None
    return model


def find_live_model(session: Session, user_id: str, suffix: str) -> ServeModel | None:
    return session.scalar(
        select(ServeModel).where(
            ServeModel.user_id == user_id,
            ServeModel.model_id_suffix == suffix,
            ServeModel.state != ServeState.DELETED.value,
        )
    )


def list_serve_models(
    session: Session,
    user_id: str | None = None,
    include_deleted: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ServeModel], int]:
    """A page of models, newest update first, and the total that matched."""
    q = select(ServeModel)
    if user_id is not None:
        q = q.where(ServeModel.user_id == user_id)
    if not include_deleted:
        q = q.where(ServeModel.state != ServeState.DELETED.value)
    total = int(session.scalar(select(func.count()).select_from(q.subquery())) or 0)
    rows = session.scalars(
        q.order_by(ServeModel.updated_at.desc(), ServeModel.model_key).limit(limit).offset(offset)
    )
    return list(rows), total


def list_active_models(session: Session) -> list[ServeModel]:
    """Every model the reconciler must act on: not DELETED, oldest first."""
    return list(
        session.scalars(
            select(ServeModel)
            .where(ServeModel.state != ServeState.DELETED.value)
            .order_by(ServeModel.created_at, ServeModel.model_key)
        )
    )


def append_serve_event(
    session: Session,
    model_key: str,
    event_type: str,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> ServeEvent:
    event = ServeEvent(model_key=model_key, time=now, event_type=event_type, payload=payload or {})
    session.add(event)
    return event


def list_serve_events(session: Session, model_key: str) -> list[ServeEvent]:
    return list(
        session.scalars(
            select(ServeEvent).where(ServeEvent.model_key == model_key).order_by(ServeEvent.id)
        )
    )


def set_serve_model_state(
    session: Session,
    model: ServeModel,
    trigger: Trigger,
    now: datetime,
    *,
    error_summary: str | None = None,
    payload: dict[str, Any] | None = None,
) -> ServeState:
    """Apply `trigger` to the model and append its event, in the caller's transaction."""
    old = ServeState(model.state)
    new = next_state(old, trigger)
    model.state = new.value
    if new is ServeState.FAILED:
        model.error_summary = error_summary
    elif trigger in (Trigger.SPEC_UPDATED, Trigger.SCALED, Trigger.CREATED, Trigger.REDEPLOY):
        model.error_summary = None
    model.updated_at = now
    body = {"from": old.value, "to": new.value, **(payload or {})}
    if error_summary:
        body["error"] = error_summary
    append_serve_event(session, model.model_key, trigger.value, now, body)
    session.flush()
    return new


def upsert_serve_model(
    session: Session,
    *,
    user_id: str,
    suffix: str,
    spec_yaml: str,
    resolved_spec: dict[str, Any],
    now: datetime,
) -> UpsertResult:
    """Create the model, or update the live one with this suffix in place (design D2).

    Must run in a write transaction (BEGIN IMMEDIATE on SQLite), which makes the
    look-up and the insert atomic; the partial unique index is the backstop.
    """
    target = int(resolved_spec["num_replicas"])
    live = find_live_model(session, user_id, suffix)
    if live is None:
        prefix = make_model_id_prefix(user_id, now)
        model = ServeModel(
            model_key=new_model_key(),
            user_id=user_id,
            model_id_suffix=suffix,
            model_id_prefix=prefix,
            model_id=make_model_id(prefix, suffix),
            spec_yaml=spec_yaml,
            resolved_spec=resolved_spec,
            state=next_state(None, Trigger.CREATED).value,
            generation=1,
            observed_generation=0,
            target_replicas=target,
            ready_replicas=0,
            created_at=now,
            updated_at=now,
        )
        session.add(model)
        session.flush()
        append_serve_event(
            session,
            model.model_key,
            Trigger.CREATED.value,
            now,
            {"to": model.state, "generation": 1, "model_id": model.model_id},
        )
        session.flush()
        return UpsertResult(model, created=True)
    if live.state == ServeState.DELETING.value:
        raise ModelBeingDeleted(live.model_id)
    unchanged = live.resolved_spec == resolved_spec and live.spec_yaml == spec_yaml
    if unchanged and live.state != ServeState.FAILED.value:
        return UpsertResult(live, created=False)  # the same spec again changes nothing
    live.spec_yaml = spec_yaml
    live.resolved_spec = resolved_spec
    live.target_replicas = target
    live.generation += 1
    set_serve_model_state(
        session, live, Trigger.SPEC_UPDATED, now, payload={"generation": live.generation}
    )
    return UpsertResult(live, created=False)


def scale_serve_model(
    session: Session, model: ServeModel, num_replicas: int, now: datetime
) -> bool:
    """Set the replica count; False (and nothing written) when it is already that."""
    if model.resolved_spec.get("num_replicas") == num_replicas:
        return False
    old = model.target_replicas
    model.resolved_spec = {**model.resolved_spec, "num_replicas": num_replicas}
    model.target_replicas = num_replicas
    model.generation += 1
    set_serve_model_state(
        session,
        model,
        Trigger.SCALED,
        now,
        payload={"generation": model.generation, "replicas_from": old, "replicas_to": num_replicas},
    )
    return True


def request_delete(session: Session, model: ServeModel, now: datetime) -> bool:
    """Move to DELETING; False (no event) when it is already DELETING."""
    if model.state == ServeState.DELETING.value:
        return False
    set_serve_model_state(session, model, Trigger.DELETE_REQUESTED, now)
    return True


def pick_next_runnable_serve_change(session: Session) -> ServeModel | None:
    """The oldest model with work for the reconciler: unapplied spec, queued, or deleting."""
    return session.scalar(
        select(ServeModel)
        .where(
            ServeModel.state != ServeState.DELETED.value,
            or_(
                ServeModel.generation != ServeModel.observed_generation,
                ServeModel.state.in_([ServeState.QUEUED.value, ServeState.DELETING.value]),
            ),
        )
        .order_by(ServeModel.updated_at, ServeModel.model_key)
        .limit(1)
    )
