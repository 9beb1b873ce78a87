"""Shared factories: settings in a temp data dir, model folders, specs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from argus.config import Settings, load_settings
from tests.priority import yield_own_session

# Property tests check what is true, not how fast: Hypothesis's 200 ms deadline per example
# failed a path test (411 ms for one example) while make test ran Ray clusters beside it.
# Speed targets live in bench/.
hypothesis_settings.register_profile("argus", deadline=None)
hypothesis_settings.load_profile("argus")

ADMIN_TOKEN = "argus_admin_test-token-0123456789abcdefghijklmnopqrstuv"


def make_settings(data_dir: Path, **env: str) -> Settings:
    environ = {"ARGUS_DATA_DIR": str(data_dir), "ARGUS_ADMIN_TOKEN": ADMIN_TOKEN, **env}
    return load_settings(environ=environ)


def make_model_folder(folder: Path, weights: str = "model.safetensors") -> Path:
    """A folder that passes argus's model checks (not loadable by vLLM)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / weights).write_bytes(b"\0" * 16)
    return folder


def spec_yaml(model_id: str = "smol", source: str = "$HOME/common/hf/tiny", **extra: object) -> str:
    lines = [f"model_id: {model_id}", f"model_source: {source}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield make_settings(tmp_path / "data")


# -- tiers: a time limit each, and their times at the end of a run ------------------------
TIERS = ("unit", "integration", "fuzz", "browser", "e2e")
# Limits against hangs, not speed targets. The tiers beside the e2e line run at nice 10 and
# get the cores only when the line leaves them: there a unit test took 38 s and an
# integration test's setup 35 s, in a run where both took seconds alone.
TIER_TIMEOUT_S = {"unit": 120, "integration": 240, "fuzz": 300, "browser": 300, "e2e": 900}
_tier_seconds: dict[str, float] = {}
_tier_tests: dict[str, set[str]] = {}


def _tier(keywords: object) -> str:
    return next((t for t in TIERS if t in keywords), "unmarked")  # type: ignore[operator]


# -- make test's two workers (pytest-xdist) ------------------------------------------------
# Every end-to-end module runs on one worker, one after another; everything else (unit,
# integration, fuzz, browser) on the other. Measured on two cores: two end-to-end modules
# at once (two Ray clusters, two vLLM engines starting) thrash (load 12 to 19, a TP=2 engine
# start took 523 s instead of about 100), so the suite took longer than with them in line.
# The modules with clusters of their own go last: their timings (chats through a head's
# outage) must not meet the other worker's tiers, which run while the stack starts. xdist's
# own `--dist loadgroup` does not work with pytest 9.2 (it renames `item._nodeid`, which
# pytest no longer reads), so the grouping is a scheduler of ours.
OWN_CLUSTER_MODULES = frozenset({"tests/e2e/test_multinode.py", "tests/e2e/test_gcs_ft.py"})
# Measured: the demo model's module on the light worker, and the demo conversion beside
# the stack's start, made the run slower (the stack's setup 141 s against 92 s, the redo
# 76 s against 28 s): two cores were busy already.
#
# One own-cluster module is a group of its own, taken by whichever worker runs out of work
# first: in practice the rest's, which is done by mid-run and niced, so that cluster's
# engines start in the line's idle time (its waits on Serve and on engines starting) and
# yield the cores to it otherwise. In line it added 225 s to the line. The GCS-FT module
# stays in line: its chats through a head outage must answer within 5 s each.
BESIDE_THE_LINE = frozenset({"tests/e2e/test_multinode.py"})


def worker_group(nodeid: str) -> str:
    module = _module_of(nodeid)
    if module in BESIDE_THE_LINE:
        return module
    return "e2e" if nodeid.startswith("tests/e2e/") else "rest"


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    if config.getoption("dist") != "load":
        return None  # `make check` (no e2e) asks for `--dist loadfile`: files on both workers

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ByGroup(config, log)


# The other worker yields the cores to the end-to-end line (nice 10: about a tenth of a core
# against each busy process of the line). The line is the suite's length, and the cores sat
# idle a quarter of its time when it ran alone (engines and heads starting, waits on
# Serve): enough for the rest. At the same priority the line took 1296 s and 1358 s in two
# clean runs (1039 s alone); with the rest niced, 1166 s.
REST_NICENESS = 10
_lines = {"has_e2e": False, "niced": False}


def _yield_to_the_e2e_line(item: pytest.Item) -> None:
    if _lines["niced"] or not _lines["has_e2e"] or worker_group(item.nodeid) != "rest":
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):  # never the caller's own process
        yield_own_session(REST_NICENESS)  # nice alone yields nothing to the line's Ray heads
        _lines["niced"] = True


def pytest_collection_finish(session: pytest.Session) -> None:
    _lines["has_e2e"] = any(worker_group(item.nodeid) == "e2e" for item in session.items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    _yield_to_the_e2e_line(item)


def _module(item: pytest.Item) -> str:
    return _module_of(item.nodeid)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stable: the own-cluster modules last, everything else in its collected order.
    items.sort(key=lambda item: _module(item) in OWN_CLUSTER_MODULES)
    for item in items:
        tier = _tier(item.keywords)
        if item.get_closest_marker("timeout") is None and tier in TIER_TIMEOUT_S:
            item.add_marker(pytest.mark.timeout(TIER_TIMEOUT_S[tier]))
        if "stack" in getattr(item, "fixturenames", ()) and worker_group(item.nodeid) != "e2e":
            raise pytest.UsageError(f"{item.nodeid} uses the shared stack outside tests/e2e")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tier = _tier(report.keywords)
    _tier_seconds[tier] = _tier_seconds.get(tier, 0.0) + report.duration
    _tier_tests.setdefault(tier, set()).add(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _tier_seconds:
        return
    parts = [
        f"{tier} {_tier_seconds[tier]:.1f} s ({len(_tier_tests[tier])} tests)"
        for tier in (*TIERS, "unmarked")
        if tier in _tier_seconds
    ]
    terminalreporter.write_line("tier times: " + ", ".join(parts))


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from argus.store.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


HEAD_REVISION = _head_revision()  # the newest migration: what a migrated store is at
