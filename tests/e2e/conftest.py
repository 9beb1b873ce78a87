"""End-to-end helpers: free ports, and running the real `argus` command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ARGUS = str(Path(sys.executable).with_name("argus"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def argus_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGUS_")}
    env.update({"ARGUS_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **extra})
    return env


def argus(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARGUS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
