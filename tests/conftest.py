"""Shared factories: settings in a temp data dir, model folders, specs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from argus.config import Settings, load_settings

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
TIER_TIMEOUT_S = {"unit": 60, "integration": 120, "fuzz": 300, "browser": 300, "e2e": 900}
_tier_seconds: dict[str, float] = {}
_tier_tests: dict[str, set[str]] = {}


def _tier(keywords: object) -> str:
    return next((t for t in TIERS if t in keywords), "unmarked")  # type: ignore[operator]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item.keywords)
        if item.get_closest_marker("timeout") is None and tier in TIER_TIMEOUT_S:
            item.add_marker(pytest.mark.timeout(TIER_TIMEOUT_S[tier]))
        # With `pytest -n 2 --dist loadgroup` (make test): the tests that share the one
        # argus stack go to one worker, everything else (clusters of their own too) to the
        # other.
        shares_the_stack = "stack" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.xdist_group("stack" if shares_the_stack else "rest"))


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
