"""The shared storage (design D8): where things live, and the jail every user path passes.

Layout under the storage root: `hf/` (shared models), `datasets/` (shared data),
`users/<user_id>/` (each user's home, with `tasks/<task_id>/` for task logs and
checkpoints). In a spec, `$HOME/common/hf` -> `<root>/hf`, `$HOME/common/datasets` ->
`<root>/datasets`, `$HOME` -> `<root>/users/<user_id>`.

A path a user names must resolve, symlinks followed, inside the roots that use allows;
a model folder's entries are checked too (a folder of symlinks into another user's home
is refused), and a stored path is checked again each time it is used, since a folder can
be swapped for a symlink after it was accepted. Weights load from local disk only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from argus.text import has_lone_surrogate, shown

_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_MACROS: tuple[tuple[str, str], ...] = (
    ("$HOME/common/hf", "hf"),
    ("$HOME/common/datasets", "datasets"),
)
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255  # one path component, as Linux file systems allow
MAX_FOLDER_ENTRIES = 4096  # a model folder with more is refused rather than walked
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

LOG_NAME = "task.log"
CHECKPOINT_NAME = "checkpoint"  # where sft writes a task's model; a command task may too


class PathInvalid(ValueError):
    """The path is not a usable local path or folder (HTTP 422)."""


class PathForbidden(PermissionError):
    """The path resolves outside the caller's roots (HTTP 403)."""


# The names the serving and training code used before this module held the jail.
ModelSourceInvalid = PathInvalid
ModelSourceForbidden = PathForbidden


OFFLINE_HF = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def offline_hf_env(hf_home: str) -> dict[str, str]:
    """The environment of every replica and task: Hugging Face libraries never go online."""
    return {**OFFLINE_HF, "HF_HOME": hf_home}


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put a finished folder in place of `dest` (a model, a checkpoint) as one rename.

    A directory rename cannot replace a non-empty directory, so an old or partial folder
    is moved aside first and deleted once the new one is in place: a reader sees the old
    folder or the new one, never half of either.
    """
    old = dest.with_name(f"{dest.name}.old-{os.getpid()}")
    if dest.is_dir() and not dest.is_symlink():
        dest.rename(old)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def user_home(storage_root: Path, user_id: str) -> Path:
    return storage_root / "users" / user_id


def ensure_home(storage_root: Path, user_id: str) -> Path:
    """A user's home, 0700 where the storage allows it (NFS with root squash may not)."""
    home = user_home(storage_root, user_id)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(home, 0o700)
    return home


def task_dir(storage_root: Path, user_id: str, task_id: str) -> Path:
    return user_home(storage_root, user_id) / "tasks" / task_id


def checkpoint_source(task_id: str) -> str:
    """A task's checkpoint as a `model_source` its owner can put into a serving spec."""
    return f"$HOME/tasks/{task_id}/{CHECKPOINT_NAME}"


def model_roots(storage_root: Path, user_id: str) -> tuple[Path, Path]:
    """Where a user's model may load from: the shared models and their own home."""
    return (storage_root / "hf", user_home(storage_root, user_id))


def data_roots(storage_root: Path, user_id: str) -> tuple[Path, Path]:
    """Where a user's training data may come from: the shared datasets and their home."""
    return (storage_root / "datasets", user_home(storage_root, user_id))


def _check_shape(raw: str, field: str) -> None:
    if "\x00" in raw:
        raise PathInvalid(f"{field} contains a NUL byte")
    if not raw.strip():
        raise PathInvalid(f"{field} is empty")
    if has_lone_surrogate(raw):
        raise PathInvalid(f"{field} holds a lone surrogate escape; write the path as plain text")
    if len(raw) > MAX_PATH_CHARS:
        raise PathInvalid(f"{field} is longer than {MAX_PATH_CHARS} characters")
    for part in raw.split("/"):
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise PathInvalid(
                f"{field} has a name longer than {MAX_NAME_BYTES} bytes ({shown(part, 40)})"
            )


def expand_macros(raw: str, storage_root: Path, user_id: str, field: str = "model_source") -> str:
    """Replace a leading $HOME macro; refuse every other form that is not a local path.

    `field` names the spec field in the messages (model_source, train_file, ...).
    """
    _check_shape(raw, field)
    if _URL_RE.match(raw):
        raise PathInvalid(
            f"{field} is a URL; argus reads from local disk only: give a path under $HOME "
            "or $HOME/common/..."
        )
    if raw.startswith("~"):
        raise PathInvalid(f"'~' is not expanded in {field}; use $HOME instead")
    for macro, sub in _MACROS:
        if raw == macro or raw.startswith(macro + "/"):
            return str(storage_root / sub) + raw[len(macro) :]
    if raw == "$HOME" or raw.startswith("$HOME/"):
        return str(user_home(storage_root, user_id)) + raw[len("$HOME") :]
    if "$" in raw:
        raise PathInvalid(
            f"{field} uses an unknown variable; only $HOME, $HOME/common/hf and "
            "$HOME/common/datasets are expanded"
        )
    if not raw.startswith("/"):
        raise PathInvalid(
            f"{field} {shown(raw)} is relative or a hub id; argus reads from local disk only: "
            "give an absolute path or start with $HOME"
        )
    return raw


def is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _real(path: str | Path, field: str) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError) as e:
        raise PathInvalid(f"{field} cannot be resolved: {e.__class__.__name__}") from None


def _inside(real: Path, roots: tuple[Path, ...], field: str) -> bool:
    return any(is_within(real, _real(r, field)) for r in roots)


def resolve_within(
    raw: str, storage_root: Path, user_id: str, roots: tuple[Path, ...], field: str
) -> Path:
    """Expand macros, follow symlinks, and require the result inside one of `roots`.

    Raises PathForbidden outside them; existence is the caller's to check.
    """
    real = _real(expand_macros(raw, storage_root, user_id, field), field)
    if not _inside(real, roots, field):
        raise PathForbidden(
            f"{field} {shown(raw)} is outside the folders you may use; use a path under "
            + " or ".join(_shown_root(r, storage_root, user_id) for r in roots)
        )
    return real


def _shown_root(root: Path, storage_root: Path, user_id: str) -> str:
    if root == user_home(storage_root, user_id):
        return "$HOME (your own)"
    return "$HOME/common/" + root.name


def resolve_model_source(raw: str, storage_root: Path, user_id: str) -> Path:
    """The real folder a source names, if it is a safetensors model inside the user's roots.

    Raises PathForbidden when it (or one of its entries) resolves outside `<root>/hf` and
    `<root>/users/<user_id>`, and PathInvalid when the string is not a local path or the
    folder is not a safetensors model.
    """
    real = resolve_within(
        raw, storage_root, user_id, model_roots(storage_root, user_id), "model_source"
    )
    check_model_folder(real, raw, model_roots(storage_root, user_id))
    return real


def recheck_model_source(stored: str, storage_root: Path, user_id: str) -> None:
    """Check a stored (already resolved) model folder again, before it is used.

    It must still be itself (no symlink swapped in on the way), inside the owner's roots,
    with entries that stay inside them. Raises PathForbidden or PathInvalid.
    """
    roots = model_roots(storage_root, user_id)
    real = _real(stored, "model_source")
    if real != Path(stored) or not _inside(real, roots, "model_source"):
        raise PathForbidden(
            f"model_source {shown(stored)} now resolves to {shown(str(real))}, outside the "
            "folders its owner may use; post the spec again with a folder of your own"
        )
    check_model_folder(real, stored, roots)


def check_model_folder(folder: Path, shown_as: str, roots: tuple[Path, ...]) -> None:
    """A Hugging Face folder with safetensors weights, whose entries stay inside `roots`."""
    name = shown(shown_as)
    try:
        if not folder.exists():
            raise PathInvalid(f"model_source {name} does not exist")
        if not folder.is_dir():
            raise PathInvalid(f"model_source {name} is a file; give the model's folder")
        entries = _entries(folder, name)
    except OSError as e:
        raise PathInvalid(f"model_source {name} cannot be read: {e.__class__.__name__}") from None
    for entry in entries:
        if entry.is_symlink() and not _inside(_real(entry, "model_source"), roots, "model_source"):
            raise PathForbidden(
                f"model_source {name} holds {shown(entry.name)}, a link to a file outside the "
                "folders you may use; copy the file in instead"
            )
    names = {e.name for e in entries}
    if "config.json" not in names or not (folder / "config.json").is_file():
        raise PathInvalid(
            f"model_source {name} has no config.json; it must be a Hugging Face model folder"
        )
    if not any(n.endswith(".safetensors") for n in names):
        pickles = sorted(n for n in names if n.endswith(_PICKLE_SUFFIXES))
        if pickles:
            raise PathInvalid(
                f"model_source {name} holds only pickle weights ({shown(pickles[0])}), which "
                "can run code when loaded; convert them to safetensors"
            )
        raise PathInvalid(f"model_source {name} has no .safetensors weights")


def _entries(folder: Path, name: str) -> list[Path]:
    """The folder's entries, and those of its sub-folders two levels down (bounded)."""
    found: list[Path] = []
    todo = [(folder, 0)]
    while todo:
        current, depth = todo.pop()
        with os.scandir(current) as it:
            for entry in it:
                found.append(Path(entry.path))
                if len(found) > MAX_FOLDER_ENTRIES:
                    raise PathInvalid(
                        f"model_source {name} holds more than {MAX_FOLDER_ENTRIES} files"
                    )
                if depth < 2 and entry.is_dir(follow_symlinks=False):
                    todo.append((Path(entry.path), depth + 1))
    return found
