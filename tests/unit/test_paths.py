from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argus.storage import (
    PathForbidden,
    PathInvalid,
    expand_macros,
    is_within,
    recheck_model_source,
    resolve_model_source,
)
from tests.conftest import make_model_folder

# Property tests among them: see test_yamlspec.py for why the unit tier's 60 s is too short.
pytestmark = [pytest.mark.unit, pytest.mark.timeout(300)]
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
    with pytest.raises(PathInvalid, match=needle):
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
    with pytest.raises(PathForbidden, match="outside the folders you may use"):
        resolve_model_source(raw, root, "alice")


def test_another_users_folder_is_forbidden(root: Path) -> None:
    with pytest.raises(PathForbidden):
        resolve_model_source(str(root / "users" / "bob" / "his"), root, "alice")


def test_symlinks_are_followed_out_and_refused(root: Path, tmp_path: Path) -> None:
    (root / "users" / "alice" / "sneaky").symlink_to(tmp_path / "outside")
    (root / "users" / "alice" / "peek").symlink_to(root / "users" / "bob" / "his")
    for name in ("sneaky", "peek"):
        with pytest.raises(PathForbidden):
            resolve_model_source(f"$HOME/{name}", root, "alice")


def test_symlink_inside_the_roots_is_fine(root: Path) -> None:
    (root / "users" / "alice" / "alias").symlink_to(root / "hf" / "shared")
    assert resolve_model_source("$HOME/alias", root, "alice") == root / "hf" / "shared"


def test_folder_checks(root: Path) -> None:
    home = root / "users" / "alice"
    with pytest.raises(PathInvalid, match="does not exist"):
        resolve_model_source("$HOME/nope", root, "alice")
    (home / "file").write_text("x")
    with pytest.raises(PathInvalid, match="is a file"):
        resolve_model_source("$HOME/file", root, "alice")
    (home / "noconfig").mkdir()
    with pytest.raises(PathInvalid, match=r"no config\.json"):
        resolve_model_source("$HOME/noconfig", root, "alice")
    make_model_folder(home / "pickle", weights="pytorch_model.bin")
    with pytest.raises(PathInvalid, match="pickle weights"):
        resolve_model_source("$HOME/pickle", root, "alice")
    make_model_folder(home / "empty", weights="README.md")
    with pytest.raises(PathInvalid, match=r"no \.safetensors"):
        resolve_model_source("$HOME/empty", root, "alice")


_segment = st.sampled_from(
    ["..", ".", "hf", "users", "alice", "bob", "x", "common", "link", "", "shared", "mine", "his"]
)


def test_no_generated_path_escapes_the_allowed_roots(root: Path, tmp_path: Path) -> None:
    link = root / "users" / "alice" / "link"
    link.symlink_to(tmp_path)  # a symlink out of the jail, to be walked through
    outcomes: Counter[str] = Counter()

    @settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        start=st.sampled_from(
            [
                "$HOME",
                "$HOME/common/hf",
                "$HOME/common/datasets",
                "<root>",
                "/",
                "$HOME/link",
                "$HOME/mine",
                "$HOME/common/hf/shared",
                "<root>/users/alice/mine",
            ]
        ),
        parts=st.lists(_segment, max_size=6),
    )
    def no_escape(start: str, parts: list[str]) -> None:
        raw = "/".join([start.replace("<root>", str(root)), *parts])
        try:
            resolved = resolve_model_source(raw, root, "alice")
        except PathForbidden:
            outcomes["forbidden"] += 1
            return
        except PathInvalid:
            outcomes["invalid"] += 1
            return
        outcomes["resolved"] += 1
        real = Path(os.path.realpath(resolved))
        assert is_within(real, root / "hf") or is_within(real, root / "users" / "alice")

    no_escape()
    # The property means something only if it saw every outcome, resolutions included.
    assert min(outcomes["resolved"], outcomes["forbidden"], outcomes["invalid"]) >= 5, outcomes


def test_a_folder_of_links_to_another_users_files_is_refused(root: Path) -> None:
    """The jail checks the folder's entries, not only the folder."""
    bob = root / "users" / "bob" / "his"
    proxy = root / "users" / "alice" / "proxy"
    proxy.mkdir()
    for name in ("config.json", "model.safetensors"):
        (proxy / name).symlink_to(bob / name)
    with pytest.raises(PathForbidden, match="a link to a file outside"):
        resolve_model_source("$HOME/proxy", root, "alice")
    nested = root / "users" / "alice" / "nested"
    make_model_folder(nested)
    (nested / "tokenizer").mkdir()
    (nested / "tokenizer" / "vocab.json").symlink_to(bob / "config.json")
    with pytest.raises(PathForbidden):
        resolve_model_source("$HOME/nested", root, "alice")


def test_links_that_stay_inside_the_roots_are_fine(root: Path) -> None:
    shared = root / "hf" / "shared"
    mine = root / "users" / "alice" / "linked"
    mine.mkdir()
    (mine / "config.json").symlink_to(shared / "config.json")
    (mine / "model.safetensors").symlink_to(shared / "model.safetensors")
    assert resolve_model_source("$HOME/linked", root, "alice") == mine


def test_a_folder_swapped_for_a_link_after_acceptance_is_caught_when_used(root: Path) -> None:
    mine = root / "users" / "alice" / "mine"
    stored = resolve_model_source("$HOME/mine", root, "alice")
    recheck_model_source(str(stored), root, "alice")  # still fine
    mine.rename(root / "users" / "alice" / "moved")
    mine.symlink_to(root / "users" / "bob" / "his")
    with pytest.raises(PathForbidden, match="now resolves to"):
        recheck_model_source(str(stored), root, "alice")


def test_an_emptied_folder_is_caught_when_used(root: Path) -> None:
    stored = resolve_model_source("$HOME/mine", root, "alice")
    (stored / "model.safetensors").unlink()
    with pytest.raises(PathInvalid, match=r"no \.safetensors"):
        recheck_model_source(str(stored), root, "alice")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("$HOME/" + "x" * 300, "longer than 255 bytes"),
        ("$HOME/" + "é" * 130, "longer than 255 bytes"),
        ("$HOME/" + "a/" * 600, "longer than 1024 characters"),
        ("$HOME/x\ud800", "lone surrogate"),
    ],
)
def test_names_the_file_system_cannot_take_are_refused_as_input(
    root: Path, raw: str, needle: str
) -> None:
    raw = raw.encode().decode("unicode_escape") if "\\u" in raw else raw
    with pytest.raises(PathInvalid, match=needle):
        resolve_model_source(raw, root, "alice")
