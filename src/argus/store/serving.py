"""Served models and their events: rows in, rows out, in the caller's transaction.

The caller opens the transaction (`Database.write()`); these functions never commit.
Which state follows which is `argus.serving.states`' to decide; `write_transition`
stores the outcome and its event together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from argus.store.schema import ServeEvent, ServeModel
from argus.store.states import HOLDING_STATES, ServeState, transition_payload

MAX_OFFSET = 1_000_000_000  # far past any real list; keeps SQLite's 64-bit integers safe


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
        q.order_by(ServeModel.updated_at.desc(), ServeModel.model_key)
        .limit(limit)
        .offset(min(offset, MAX_OFFSET))
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


def list_user_models(
    session: Session, user_id: str, states: frozenset[ServeState]
) -> list[ServeModel]:
    return list(
        session.scalars(
            select(ServeModel)
            .where(ServeModel.user_id == user_id, ServeModel.state.in_([s.value for s in states]))
            .order_by(ServeModel.created_at, ServeModel.model_key)
        )
    )


def held_by(session: Session, user_id: str, exclude_key: str | None = None) -> tuple[int, int]:
    """(models, GPUs) the user's models hold or are about to hold (quotas count these)."""
    q = select(func.count(), func.coalesce(func.sum(ServeModel.gpus), 0)).where(
        ServeModel.user_id == user_id,
        ServeModel.state.in_([s.value for s in HOLDING_STATES]),
    )
    if exclude_key is not None:
        q = q.where(ServeModel.model_key != exclude_key)
    count, gpus = session.execute(q).one()
    return int(count), int(gpus)


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


def list_serve_events(
    session: Session, model_key: str, limit: int | None = None, before: int | None = None
) -> tuple[list[ServeEvent], int]:
    """A model's events, newest first (at most `limit`, older than id `before`), and the total."""
    where = [ServeEvent.model_key == model_key]
    total = int(session.scalar(select(func.count()).where(*where)) or 0)
    if before is not None:
        where.append(ServeEvent.id < before)
    q = select(ServeEvent).where(*where).order_by(ServeEvent.id.desc())
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q)), total


def last_event_types(session: Session, keys: list[str]) -> dict[str, str]:
    """Each model's newest event type."""
    if not keys:
        return {}
    latest = (
        select(ServeEvent.model_key, func.max(ServeEvent.id).label("id"))
        .where(ServeEvent.model_key.in_(keys))
        .group_by(ServeEvent.model_key)
        .subquery()
    )
    rows = session.execute(
        select(ServeEvent.model_key, ServeEvent.event_type).join(
            latest, ServeEvent.id == latest.c.id
        )
    )
    return {k: t for k, t in rows}


def write_transition(
    session: Session,
    model: ServeModel,
    to: ServeState,
    event_type: str,
    now: datetime,
    *,
    error_summary: str | None = None,
    clear_error: bool = False,
    payload: dict[str, Any] | None = None,
) -> None:
    """Move the model to `to` and append its event, in the caller's transaction."""
    old = model.state
    model.state = to.value
    if to is ServeState.FAILED:
        model.error_summary = error_summary
    elif clear_error:
        model.error_summary = None
    model.updated_at = now
    body = transition_payload(old, to.value, payload, error_summary)
    append_serve_event(session, model.model_key, event_type, now, body)
    session.flush()


def insert_model(
    session: Session,
    *,
    model_key: str,
    user_id: str,
    suffix: str,
    prefix: str,
    model_id: str,
    spec_yaml: str,
    resolved_spec: dict[str, Any],
    gpus: int,
    state: ServeState,
    event_type: str,
    now: datetime,
) -> ServeModel:
    model = ServeModel(
        model_key=model_key,
        user_id=user_id,
        model_id_suffix=suffix,
        model_id_prefix=prefix,
        model_id=model_id,
        spec_yaml=spec_yaml,
        resolved_spec=resolved_spec,
        gpus=gpus,
        state=state.value,
        generation=1,
        observed_generation=0,
        ready_replicas=0,
        created_at=now,
        updated_at=now,
    )
    session.add(model)
    session.flush()
    append_serve_event(
        session,
        model_key,
        event_type,
        now,
        {"to": state.value, "generation": 1, "model_id": model_id},
    )
    session.flush()
    return model
