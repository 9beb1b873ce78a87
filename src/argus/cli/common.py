"""What every `argus` command shares: settings, errors on stderr, JSON out, the API as a user."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

from argus.cli.api_client import ApiClient, ApiError, local_api_url
from argus.config import ConfigError, Settings, load_settings

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as e:
        fail(str(e), code=2)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def user_client() -> ApiClient:
    """A client of the running API with ARGUS_TOKEN (else the admin token)."""
    from argus.runtime.bootstrap import ensure_admin_token

    config = settings()
    token = os.environ.get("ARGUS_TOKEN") or ensure_admin_token(config).token
    return ApiClient(local_api_url(config), token)


def user_call(fn: Callable[[ApiClient], T]) -> T:
    """Call the API as the user whose token is in ARGUS_TOKEN (else as the admin)."""
    client = user_client()
    try:
        return fn(client)
    except ApiError as e:
        fail(e.message)
    finally:
        client.close()
