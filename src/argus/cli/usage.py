"""`argus usage`: requests and tokens through the OpenAI endpoint."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from argus.cli.common import print_json, user_call


def usage(
    group_by: Annotated[str, typer.Option("--by", help="model, key, user or day.")] = "model",
    since: Annotated[
        str | None, typer.Option("--since", help="ISO date or time; default 7 days ago.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="ISO date or time; default now.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer as it is.")] = False,
) -> None:
    """Your usage of the OpenAI endpoint (the admin: everyone's), summed by model, key,
    user or day."""
    params: dict[str, Any] = {"group_by": group_by}
    if since:
        params["since"] = since
    if until:
        params["until"] = until
    body = user_call(lambda c: c.request("GET", "/api/v2/usage", params=params))
    if as_json:
        print_json(body)
        return
    typer.echo(f"usage from {body['since'][:16]} to {body['until'][:16]} (UTC), by {group_by}")
    typer.echo(f"{group_by.upper():<40} {'REQUESTS':>9} {'PROMPT':>10} {'COMPLETION':>10}")
    for row in [*body["items"], {group_by: "total", **body["totals"]}]:
        name = str(row[group_by]) + (
            f" ({row['user']})" if "user" in row and group_by == "key" else ""
        )
        typer.echo(
            f"{name:<40} {row['requests']:>9} {row['prompt_tokens']:>10} "
            f"{row['completion_tokens']:>10}"
        )
