from __future__ import annotations

from pathlib import Path

import pytest

from argus.runtime.head import orphan_engine_pids

pytestmark = pytest.mark.unit


def _proc(root: Path, pid: int, comm: str, state: str, ppid: int) -> None:
    (root / str(pid)).mkdir()
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) {state} {ppid} 1 1 0 -1 4194304\n")


def test_only_live_orphaned_vllm_processes_are_found(tmp_path: Path) -> None:
    _proc(tmp_path, 100, "VLLM::EngineCor", "S", 1)  # orphaned engine core
    _proc(tmp_path, 101, "VLLM::Worker", "R", 1)  # orphaned worker
    _proc(tmp_path, 102, "VLLM::Worker", "S", 100)  # has a live parent
    _proc(tmp_path, 103, "VLLM::EngineCor", "Z", 1)  # zombie: nothing to free
    _proc(tmp_path, 104, "python3", "S", 1)  # not an engine
    _proc(tmp_path, 105, "odd) (name", "S", 1)  # parentheses in a name do not confuse it
    (tmp_path / "self").mkdir()
    assert sorted(orphan_engine_pids(tmp_path)) == [100, 101]
