"""The fuzz tier: schemathesis against argus's own OpenAPI document, in-process.

The app is built as the integration tests build it (real SQLite, the fake cluster), with
a model and a task of alice's in the store so that generated keys sometimes hit. Every
operation is called with generated requests, valid and invalid, as the admin and as
alice; each answer must be no 5xx, no larger than `MAX_ANSWER`, no slower than
`MAX_SECONDS`, and conform to the document (every status a route gives is listed there,
with its content type). Bounded in examples so the tier fits the suite's time.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from argus import accounts
from argus.api.deps import AppContext
from argus.runtime.bootstrap import build_context
from argus.web import create_app
from tests.conftest import ADMIN_TOKEN, make_model_folder, make_settings, spec_yaml

pytestmark = pytest.mark.fuzz

MAX_ANSWER = 64 * 1024
MAX_SECONDS = 2.0
EXAMPLES = 25


class _Probe:
    def ping(self) -> None:
        return None


def _context(root: Path) -> tuple[AppContext, str]:
    settings = make_settings(root / "data")
    ctx = build_context(settings, ray=_Probe())
    make_model_folder(settings.storage_root / "hf" / "tiny")
    now = datetime.now(UTC)
    accounts.create_user(ctx.db, "alice", now)
    change = accounts.UserUpdate(allow_commands=True)
    accounts.update_user(ctx.db, "alice", change, now, ctx.serving.quotas)
    token: str = accounts.issue_token(ctx.db, "alice", now)["token"]
    return ctx, token


def _build() -> tuple[object, dict[str, str]]:
    # Built when the module is collected: schemathesis reads the document to make the tests.
    from argus.auth.tokens import Principal
    from argus.serving import control

    root = Path(tempfile.mkdtemp(prefix="argus-fuzz-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    ctx, alice = _context(root)
    control.submit_spec(ctx.serving, Principal("alice", False), spec_yaml(), datetime.now(UTC))
    return create_app(ctx), {"admin": ADMIN_TOKEN, "alice": alice}


APP, TOKENS = _build()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def small_and_fast(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    assert len(response.content) <= MAX_ANSWER, f"{len(response.content)} bytes"
    assert response.elapsed <= MAX_SECONDS, f"{response.elapsed:.2f} s"


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


def call_and_check(case: schemathesis.Case, token: str) -> None:
    started = time.monotonic()
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        additional_checks=[small_and_fast],
    )
    assert time.monotonic() - started <= MAX_SECONDS


@schema.parametrize()
@FUZZ
def test_as_the_admin(case: schemathesis.Case) -> None:
    call_and_check(case, TOKENS["admin"])


@schema.parametrize()
@FUZZ
def test_as_a_user(case: schemathesis.Case) -> None:
    call_and_check(case, TOKENS["alice"])
