"""`argus`: run the platform, prepare the demo model, administer users and tokens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from argus import accounts
from argus.cli.api_client import ApiClient, ApiError, local_api_url
from argus.cli.common import fail as _fail
from argus.cli.common import print_json as _print
from argus.cli.common import settings as _settings
from argus.cli.common import user_call as _user_call
from argus.cli.keys import key_app
from argus.cli.tasks import task_app
from argus.cli.usage import usage
from argus.config import load_settings
from argus.errors import ArgusError

app = typer.Typer(
    help="argus: serve LLMs for many users on a Ray cluster.\n\n"
    "Start with `argus up` (or `make run`). Settings come from ARGUS_CONFIG "
    "(default: the embedded local setup) and ARGUS_* variables.",
    no_args_is_help=True,
    add_completion=False,
)
models_app = typer.Typer(help="Models: prepare the demo model.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Administer users and tokens (needs the admin token); back up and restore the database.",
    no_args_is_help=True,
)
user_app = typer.Typer(help="Create, list, disable users.", no_args_is_help=True)
token_app = typer.Typer(help="Issue and revoke tokens.", no_args_is_help=True)
serve_app = typer.Typer(
    help="Serve models: apply a spec, list, show, scale, delete (your token in ARGUS_TOKEN).",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
app.add_typer(serve_app, name="serve")
app.add_typer(task_app, name="task")
app.add_typer(key_app, name="key")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(user_app, name="user")
admin_app.add_typer(token_app, name="token")
app.command("usage")(usage)

T = TypeVar("T")
Offline = Annotated[
    bool, typer.Option("--offline", help="Work on the database directly; argus need not run.")
]


def _admin_call(offline: bool, online: Callable[[ApiClient], T], local: Callable[[Any], T]) -> T:
    """Run an admin operation against the API, or on the database with --offline."""
    from argus.runtime.bootstrap import ensure_admin_token, open_database

    settings = _settings()
    try:
        if offline:
            db = open_database(settings)
            try:
                return local(db)
            finally:
                db.dispose()
        client = ApiClient(local_api_url(settings), ensure_admin_token(settings).token)
        try:
            return online(client)
        finally:
            client.close()
    except ApiError as e:
        _fail(e.message)
    except ArgusError as e:
        _fail(e.message)
    raise AssertionError("unreachable")


def _now() -> datetime:
    return datetime.now(UTC)


@app.command()
def up(
    keep_ray: Annotated[
        bool, typer.Option("--keep-ray", help="Leave the Ray head running when argus stops.")
    ] = False,
) -> None:
    """Run argus: a Ray head (found or started), Serve on :8000, API and UI on :8080."""
    from argus.runtime.head import RayHeadError
    from argus.runtime.server import run_up

    settings = _settings()
    try:
        code = run_up(settings, keep_ray=keep_ray, say=typer.echo)
    except RayHeadError as e:
        _fail(str(e))
        return
    raise typer.Exit(code)


@app.command()
def down() -> None:
    """Stop a running `argus up` (and the Ray head it started, unless it kept it)."""
    from argus.runtime.server import run_down

    typer.echo(run_down(_settings()))


@models_app.command("prepare-demo")
def prepare_demo(
    force: Annotated[bool, typer.Option(help="Convert again even if it is there.")] = False,
) -> None:
    """Convert the demo model (SmolLM2-135M-Instruct) into <storage root>/hf, once."""
    from argus.demo import DemoModelError, prepare_demo_model
    from argus.runtime.bootstrap import ensure_storage

    settings = _settings()
    try:
        result = prepare_demo_model(ensure_storage(settings), force=force)
    except DemoModelError as e:
        _fail(str(e))
        return
    verb = f"converted in {result.seconds:.0f} s" if result.created else "already prepared"
    typer.echo(f"demo model {verb}: {result.path}")


@user_app.command("create")
def user_create(user_id: str, offline: Offline = False) -> None:
    """Create a user (user_id: a lowercase letter, then [a-z0-9_-], up to 32)."""
    _print(
        _admin_call(
            offline,
            lambda c: c.request("POST", "/api/v2/users", json={"user_id": user_id}),
            lambda db: accounts.create_user(db, user_id, _now()),
        )
    )


@user_app.command("list")
def user_list(offline: Offline = False) -> None:
    """List users."""
    _print(
        _admin_call(
            offline,
            lambda c: c.request("GET", "/api/v2/users")["items"],
            lambda db: accounts.list_users(db, _settings().quotas.as_quota()),
        )
    )


@user_app.command("disable")
def user_disable(
    user_id: str,
    enable: Annotated[bool, typer.Option("--enable", help="Enable the user again.")] = False,
    offline: Offline = False,
) -> None:
    """Disable a user: tokens stop, tasks are cancelled, models suspended (--enable undoes it)."""
    _update_user(user_id, {"disabled": not enable}, offline)


@user_app.command("update")
def user_update(
    user_id: str,
    allow_commands: Annotated[
        bool | None,
        typer.Option(
            "--allow-commands/--no-allow-commands",
            help="May run `command` tasks: their own code on the cluster, as its OS user.",
        ),
    ] = None,
    max_gpus: Annotated[
        int | None, typer.Option(help="GPUs held at once; -1: the default.")
    ] = None,
    max_models: Annotated[int | None, typer.Option(help="Live models; -1: the default.")] = None,
    max_replicas: Annotated[
        int | None, typer.Option(help="Replicas of one model; -1: the default.")
    ] = None,
    requests_per_minute: Annotated[
        int | None, typer.Option(help="Calls to the OpenAI endpoint a minute; -1: the default.")
    ] = None,
    tokens_per_minute: Annotated[
        int | None, typer.Option(help="Tokens a minute on the OpenAI endpoint; -1: the default.")
    ] = None,
    offline: Offline = False,
) -> None:
    """Set a user's permission to run commands and their quotas."""
    body: dict[str, Any] = {}
    if allow_commands is not None:
        body["allow_commands"] = allow_commands
    for name, value in (
        ("max_gpus", max_gpus),
        ("max_models", max_models),
        ("max_replicas", max_replicas),
        ("requests_per_minute", requests_per_minute),
        ("tokens_per_minute", tokens_per_minute),
    ):
        if value is not None:
            body[name] = None if value < 0 else value
    if not body:
        _fail(
            "nothing to change: give --allow-commands, --max-gpus, --max-models, --max-replicas, "
            "--requests-per-minute or --tokens-per-minute"
        )
    _update_user(user_id, body, offline)


def _update_user(user_id: str, body: dict[str, Any], offline: bool) -> None:
    change = accounts.UserUpdate(
        disabled=body.get("disabled"),
        allow_commands=body.get("allow_commands"),
        quota={k: body[k] for k in accounts.QUOTA_FIELDS if k in body},
    )
    _print(
        _admin_call(
            offline,
            lambda c: c.request("PATCH", f"/api/v2/users/{user_id}", json=body),
            lambda db: accounts.update_user(
                db, user_id, change, _now(), _settings().quotas.as_quota()
            ),
        )
    )


@token_app.command("issue")
def token_issue(user_id: str, offline: Offline = False) -> None:
    """Issue a token for a user; it is printed this once and stored only as a hash."""
    _print(
        _admin_call(
            offline,
            lambda c: c.request("POST", f"/api/v2/users/{user_id}/tokens"),
            lambda db: accounts.issue_token(db, user_id, _now()),
        )
    )


@token_app.command("revoke")
def token_revoke(token_id: str, offline: Offline = False) -> None:
    """Revoke a token by its token_id."""
    _print(
        _admin_call(
            offline,
            lambda c: c.request("DELETE", f"/api/v2/tokens/{token_id}"),
            lambda db: accounts.revoke_token(db, token_id, _now()),
        )
    )


@admin_app.command("backup")
def admin_backup(
    path: Annotated[Path, typer.Argument(help="The backup file to write.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
) -> None:
    """Copy the SQLite database to PATH: a consistent snapshot, safe while argus runs."""
    from argus.store.backup import BackupError, backup_database

    settings = _settings()
    try:
        result = backup_database(
            settings.database_url,
            path,
            force=force,
            timeout_s=settings.database.busy_timeout_ms / 1000,
        )
    except BackupError as e:
        _fail(str(e))
        return
    typer.echo(
        f"backed up the database to {result.path} ({result.size_bytes} bytes, "
        f"{result.facts.users} users, {sum(result.facts.models.values())} models, "
        f"schema {result.facts.revision}) in {result.seconds:.2f} s"
    )


@admin_app.command("restore")
def admin_restore(
    path: Annotated[Path, typer.Argument(help="A file written by `argus admin backup`.")],
) -> None:
    """Replace the database with a backup (argus must be stopped), then migrate it.

    The replaced database is kept beside it as <db>.before-restore-<time>. The next
    `argus up` brings Ray Serve to the restored models.
    """
    from argus.runtime.server import running_pid
    from argus.store.backup import BackupError, restore_database

    settings = _settings()
    try:
        result = restore_database(
            settings.database_url,
            path,
            argus_pid=running_pid(settings),
            timeout_s=settings.database.busy_timeout_ms / 1000,
        )
    except BackupError as e:
        _fail(str(e))
        return
    models = ", ".join(f"{n} {state}" for state, n in sorted(result.facts.models.items()))
    if result.previous is not None:
        typer.echo(f"kept the replaced database as {result.previous}")
    typer.echo(
        f"restored {path} into {result.database} (schema {result.restored_revision} -> "
        f"{result.facts.revision}; {result.facts.users} users; models: {models or 'none'}) "
        f"in {result.seconds:.2f} s"
    )
    typer.echo("start argus (`argus up`): it deploys the restored models and removes the others")


@app.command()
def doctor() -> None:
    """Check that argus can run here: config, Ray, engine, GPUs, storage, ports."""
    from argus.runtime.doctor import exit_code, run_checks

    checks = []
    for check in run_checks(load_settings):
        checks.append(check)
        typer.echo(check.line())
    raise typer.Exit(exit_code(checks))


@serve_app.command("apply")
def serve_apply(
    file: Annotated[
        typer.FileText, typer.Option("-f", "--file", help="The spec (YAML); - for stdin.")
    ],
) -> None:
    """Serve a model from a spec file, or update the live model with its model_id."""
    text = file.read()
    _print(
        _user_call(
            lambda c: c.request(
                "POST",
                "/api/v2/serve/models",
                content=text.encode(),
                headers={"Content-Type": "application/yaml"},
            )
        )
    )


@serve_app.command("ls")
def serve_ls(
    all_: Annotated[bool, typer.Option("--all", help="Include DELETED models.")] = False,
) -> None:
    """List your models: state, replicas, public id."""
    body = _user_call(
        lambda c: c.request(
            "GET", "/api/v2/serve/models", params={"include_deleted": all_, "limit": 500}
        )
    )
    typer.echo(f"{'MODEL KEY':<26} {'STATE':<10} {'READY':>7}  MODEL ID")
    for m in body["items"]:
        if m.get("autoscaling"):  # current (min-max)
            ready = f"{m['ready_replicas']}({m['replicas']['min']}-{m['replicas']['max']})"
        else:
            ready = f"{m['ready_replicas']}/{m['target_replicas']}"
        typer.echo(f"{m['model_key']:<26} {m['state']:<10} {ready:>7}  {m['model_id']}")
    typer.echo(f"OpenAI base URL: {body['openai_base_url']}")


@serve_app.command("get")
def serve_get(model_key: str) -> None:
    """Show a model: state, resolved spec, events, Serve status."""
    _print(_user_call(lambda c: c.request("GET", f"/api/v2/serve/models/{model_key}")))


@serve_app.command("scale")
def serve_scale(model_key: str, replicas: int) -> None:
    """Set a model's replica count (in place: it keeps serving)."""
    _print(
        _user_call(
            lambda c: c.request(
                "PATCH", f"/api/v2/serve/models/{model_key}", json={"num_replicas": replicas}
            )
        )
    )


@serve_app.command("autoscale")
def serve_autoscale(
    model_key: str,
    min_replicas: Annotated[int, typer.Option("--min", help="Replicas kept when idle; 0: none.")],
    max_replicas: Annotated[int, typer.Option("--max", help="Most replicas under load.")],
    target: Annotated[
        int | None, typer.Option(help="Requests in flight per replica (default 8).")
    ] = None,
    idle_seconds: Annotated[
        int | None, typer.Option(help="Idle time before a replica is given back (default 600).")
    ] = None,
) -> None:
    """Let a model's replicas follow load within a range (in place; `scale` fixes a count)."""
    scaling: dict[str, int] = {"min_replicas": min_replicas, "max_replicas": max_replicas}
    if target is not None:
        scaling["target_ongoing_requests"] = target
    if idle_seconds is not None:
        scaling["idle_seconds"] = idle_seconds
    _print(
        _user_call(
            lambda c: c.request(
                "PATCH", f"/api/v2/serve/models/{model_key}", json={"autoscaling": scaling}
            )
        )
    )


@serve_app.command("share")
def serve_share(
    model_key: str,
    with_users: Annotated[
        list[str] | None, typer.Option("--with", help="A user who may call it (repeatable).")
    ] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="Every user may call it.")] = False,
    private: Annotated[bool, typer.Option("--private", help="Only you (and the admin).")] = False,
) -> None:
    """Say who else may call a model on the OpenAI endpoint; nothing restarts."""
    if sum((bool(with_users), all_users, private)) != 1:
        raise typer.BadParameter("give exactly one of --with USER..., --all-users, --private")
    access: object = "all-users" if all_users else "private" if private else {"users": with_users}
    _print(
        _user_call(
            lambda c: c.request(
                "PATCH", f"/api/v2/serve/models/{model_key}", json={"access": access}
            )
        )
    )


@serve_app.command("delete")
def serve_delete(model_key: str) -> None:
    """Delete a model (DELETING, then DELETED once Serve has dropped it)."""
    _print(_user_call(lambda c: c.request("DELETE", f"/api/v2/serve/models/{model_key}")))


def main() -> None:
    app(prog_name="argus")


if __name__ == "__main__":  # pragma: no cover
    main()
