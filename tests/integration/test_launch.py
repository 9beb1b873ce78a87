"""The driver of every task's Ray job: tee to the log, pass the exit code and signals on."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from argus.training import launch

pytestmark = pytest.mark.integration


def test_output_goes_to_the_log_and_the_exit_code_through(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    log = tmp_path / "task" / "task.log"
    code = launch.main(
        ["--log", str(log), "--cwd", str(tmp_path), "--", "sh", "-c", "pwd; echo oops >&2; exit 3"]
    )
    assert code == 3
    text = log.read_text()
    assert f"{tmp_path}\noops\n" in text and "the command exited with code 3" in text
    assert "task starting on" in text.splitlines()[0]
    assert capfdbinary.readouterr().out.decode() == text  # Ray's job log gets the same bytes


def test_a_missing_folder_or_command_is_said_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    assert launch.main(["--log", str(log), "--cwd", str(tmp_path / "nope"), "--", "true"]) == 2
    assert "does not exist" in log.read_text()
    assert launch.main(["--log", str(log), "--cwd", str(tmp_path), "--", "/no/such/cmd"]) == 127
    assert "could not start the command" in log.read_text()


def test_usage_errors() -> None:
    with pytest.raises(SystemExit, match="usage"):
        launch.main(["--log", "x", "--cwd", "y"])
    with pytest.raises(SystemExit, match="no command"):
        launch.main(["--log", "x", "--cwd", "y", "--"])


def test_sigterm_reaches_the_command(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    driver = [sys.executable, "-m", "argus.training.launch", "--log", str(log)]
    command = ["sh", "-c", "echo ready; exec sleep 60"]
    proc = subprocess.Popen([*driver, "--cwd", str(tmp_path), "--", *command])
    deadline = time.monotonic() + 30
    # The command's own line (the driver's first line names the command, "ready" with it).
    while "\nready\n" not in (log.read_text() if log.exists() else "") and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what Ray's stop_job sends first
    assert proc.wait(30) == 128 + signal.SIGTERM
    assert "ended by signal 15" in log.read_text()


def test_a_sigterm_while_the_command_starts_still_reaches_it(tmp_path: Path) -> None:
    """Ray's stop_job can come before the command runs: it is passed on once it does."""
    log = tmp_path / "task.log"
    driver = [sys.executable, "-m", "argus.training.launch", "--log", str(log)]
    proc = subprocess.Popen([*driver, "--cwd", str(tmp_path), "--", "sleep", "60"])
    deadline = time.monotonic() + 30
    while "task starting" not in (log.read_text() if log.exists() else "") and (
        time.monotonic() < deadline
    ):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM  # not 60 s of sleep
    assert "ended by signal 15" in log.read_text()
