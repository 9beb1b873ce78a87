"""How stored rows look on the wire."""

from __future__ import annotations

from typing import Any

import yaml

from argus.store.schema import ServeEvent, ServeModel, Token, User


def user_view(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "is_admin": user.is_admin,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
    }


def token_view(token: Token) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "user_id": token.user_id,
        "created_at": token.created_at.isoformat(),
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def model_view(model: ServeModel) -> dict[str, Any]:
    spec = model.resolved_spec
    return {
        "model_key": model.model_key,
        "model_id": model.model_id,
        "model_id_suffix": model.model_id_suffix,
        "user_id": model.user_id,
        "state": model.state,
        "error_summary": model.error_summary,
        "generation": model.generation,
        "observed_generation": model.observed_generation,
        "target_replicas": model.target_replicas,
        "ready_replicas": model.ready_replicas,
        "gpus_per_replica": spec.get("gpus_per_replica", 1),
        "model_source": spec.get("model_source"),
        "created_at": model.created_at.isoformat(),
        "updated_at": model.updated_at.isoformat(),
    }


def event_view(event: ServeEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": event.time.isoformat(),
        "event_type": event.event_type,
        "payload": event.payload,
    }


def resolved_spec_yaml(model: ServeModel) -> str:
    return yaml.safe_dump(model.resolved_spec, sort_keys=False)
