"""Identifiers users see or choose: user ids, model-id suffixes and prefixes, keys."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from argus.text import shown

USER_ID_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MODEL_ID_SUFFIX_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}")


class InvalidId(ValueError):
    """An identifier does not follow its rule; the message says the rule."""


def validate_user_id(user_id: str) -> str:
    if not USER_ID_RE.fullmatch(user_id):
        raise InvalidId(
            f"user_id {shown(user_id)} is not valid: use 1 to 32 characters, a lowercase letter "
            "first, then lowercase letters, digits, '_' or '-'"
        )
    return user_id


def validate_model_id_suffix(suffix: str) -> str:
    if not MODEL_ID_SUFFIX_RE.fullmatch(suffix):
        raise InvalidId(
            f"model_id {shown(suffix)} is not valid: use 1 to 64 characters, a letter or digit "
            "first, then letters, digits, '.', '_' or '-'"
        )
    return suffix


def make_model_id_prefix(user_id: str, now_utc: datetime) -> str:
    """`<user_id>-<YYYYMMDDHHMM>`, the minute of creation in UTC (design D2)."""
    if now_utc.tzinfo is None:
        raise ValueError("now_utc must be timezone-aware")
    return f"{user_id}-{now_utc.astimezone(UTC):%Y%m%d%H%M}"


def make_model_id(prefix: str, suffix: str) -> str:
    return f"{prefix}-{suffix}"


def new_model_key() -> str:
    """Opaque, unguessable, stable for the model's life."""
    return f"mdl_{secrets.token_hex(10)}"


def new_task_id() -> str:
    """Opaque and unguessable; it also names the task's folder and its Ray job."""
    return f"tsk_{secrets.token_hex(8)}"


def ray_job_id_for(task_id: str) -> str:
    """The Ray job submission id of a task: fixed, so a restarted argus finds its job."""
    return f"argus-{task_id}"
