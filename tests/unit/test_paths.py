from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argus.serving.paths import (
    ModelSourceForbidden,
    ModelSourceInvalid,
    expand_macros,
    is_within,
    resolve_model_source,
)
from tests.conftest import make_model_folder

pytestmark = pytest.mark.unit
ROOT = Path("/private")


@pytest.mark.parametrize(
    ("raw", "expanded"),
    [
        ("$HOME/common/hf/SmolLM2", "/private/hf/SmolLM2"),
        ("$HOME/common/hf", "/private/hf"),
        ("$HOME/common/datasets/x", "/private/datasets/x"),
        ("$HOME/ckpt", "/private/users/alice/ckpt"),
        ("$HOME", "/private/users/alice"),
        ("$HOME/common/hfx", "/private/users/alice/common/hfx"),
        ("/private/hf/a", "/private/hf/a"),
    ],
)
def test_expand_macros(raw: str, expanded: str) -> None:
    assert expand_macros(raw, ROOT, "alice") == expanded


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("https://huggingface.co/x", "URL"),
        ("hf://org/model", "URL"),
        ("s3://bucket/model", "URL"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "relative or a hub id"),
        ("models/x", "relative or a hub id"),
        ("~/models/x", "'~' is not expanded"),
        ("$USER/x", "unknown variable"),
        ("/a/\x00b", "NUL"),
        ("", "empty"),
    ],
)
def test_expand_refuses_non_local_forms(raw: str, needle: str) -> None:
    with pytest.raises(ModelSourceInvalid, match=needle):
        expand_macros(raw, ROOT, "alice")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    make_model_folder(r / "hf" / "shared")
    make_model_folder(r / "users" / "alice" / "mine")
    make_model_folder(r / "users" / "bob" / "his")
    make_model_folder(tmp_path / "outside")
    (r / "datasets").mkdir()
    return r


def test_resolves_shared_and_own_models(root: Path) -> None:
    assert resolve_model_source("$HOME/common/hf/shared", root, "alice") == root / "hf" / "shared"
    assert resolve_model_source("$HOME/mine", root, "alice") == root / "users" / "alice" / "mine"
    assert (
        resolve_model_source(str(root / "hf" / "shared"), root, "alice") == root / "hf" / "shared"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "$HOME/../bob/his",
        "$HOME/common/hf/../../users/bob/his",
        "$HOME/common/datasets",
        "/etc",
        "/",
    ],
)
def test_escapes_are_forbidden(root: Path, raw: str) -> None:
    with pytest.raises(ModelSourceForbidden, match="outside your model folders"):
        resolve_model_source(raw, root, "alice")


def test_another_users_folder_is_forbidden(root: Path) -> None:
    with pytest.raises(ModelSourceForbidden):
        resolve_model_source(str(root / "users" / "bob" / "his"), root, "alice")


def test_symlinks_are_followed_out_and_refused(root: Path, tmp_path: Path) -> None:
    (root / "users" / "alice" / "sneaky").symlink_to(tmp_path / "outside")
    (root / "users" / "alice" / "peek").symlink_to(root / "users" / "bob" / "his")
    for name in ("sneaky", "peek"):
        with pytest.raises(ModelSourceForbidden):
            resolve_model_source(f"$HOME/{name}", root, "alice")


def test_symlink_inside_the_roots_is_fine(root: Path) -> None:
    (root / "users" / "alice" / "alias").symlink_to(root / "hf" / "shared")
    assert resolve_model_source("$HOME/alias", root, "alice") == root / "hf" / "shared"


def test_folder_checks(root: Path) -> None:
    home = root / "users" / "alice"
    with pytest.raises(ModelSourceInvalid, match="does not exist"):
        resolve_model_source("$HOME/nope", root, "alice")
    (home / "file").write_text("x")
    with pytest.raises(ModelSourceInvalid, match="is a file"):
        resolve_model_source("$HOME/file", root, "alice")
    (home / "noconfig").mkdir()
    with pytest.raises(ModelSourceInvalid, match=r"no config\.json"):
        resolve_model_source("$HOME/noconfig", root, "alice")
    make_model_folder(home / "pickle", weights="pytorch_model.bin")
    with pytest.raises(ModelSourceInvalid, match="pickle weights"):
        resolve_model_source("$HOME/pickle", root, "alice")
    make_model_folder(home / "empty", weights="README.md")
    with pytest.raises(ModelSourceInvalid, match=r"no \.safetensors"):
        resolve_model_source("$HOME/empty", root, "alice")


_segment = st.sampled_from(["..", ".", "hf", "users", "alice", "bob", "x", "common", "link", ""])


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.sampled_from(["$HOME", "$HOME/common/hf", "$HOME/common/datasets", "<root>", "/"]),
    parts=st.lists(_segment, max_size=8),
)
def test_no_generated_path_escapes_the_allowed_roots(
    root: Path, tmp_path: Path, start: str, parts: list[str]
) -> None:
    link = root / "users" / "alice" / "link"
    if not link.is_symlink():
        link.symlink_to(tmp_path)  # a symlink out of the jail, to be walked through
    raw = "/".join([start.replace("<root>", str(root)), *parts])
    try:
        resolved = resolve_model_source(raw, root, "alice")
    except (ModelSourceForbidden, ModelSourceInvalid):
        return
    real = Path(os.path.realpath(resolved))
    assert is_within(real, root / "hf") or is_within(real, root / "users" / "alice")
