"""`argus key ...`: inference keys for the OpenAI endpoint, and `argus serve share`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from argus.cli.common import print_json, user_call

key_app = typer.Typer(
    help="Inference keys for the OpenAI endpoint (:8000): create, list, revoke "
    "(your token in ARGUS_TOKEN).",
    no_args_is_help=True,
)


@key_app.command("create")
def key_create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. laptop.")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="A model id it may call (repeatable); default: all yours."),
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option("--expires-at", help="ISO time it stops, e.g. 2027-01-31T00:00Z.")
    ] = None,
) -> None:
    """Create a key; it is printed once, store it now."""
    body: dict[str, Any] = {"name": name}
    if model:
        body["models"] = model
    if expires_at:
        body["expires_at"] = expires_at
    print_json(user_call(lambda c: c.request("POST", "/api/v2/keys", json=body)))


@key_app.command("ls")
def key_ls() -> None:
    """List your keys (the admin: everyone's); never their secrets."""
    body = user_call(lambda c: c.request("GET", "/api/v2/keys"))
    typer.echo(f"{'KEY ID':<14} {'USER':<12} {'STATE':<8} {'EXPIRES':<20} NAME")
    for k in body["items"]:
        expires = (k["expires_at"] or "never")[:19].replace("T", " ")
        typer.echo(
            f"{k['key_id']:<14} {k['user_id']:<12} {k['state']:<8} {expires:<20} {k['name']}"
        )


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke a key: calls with it are refused within seconds."""
    print_json(user_call(lambda c: c.request("DELETE", f"/api/v2/keys/{key_id}")))
