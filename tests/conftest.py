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
