"""Where a model may be loaded from (design D8): macros, then a jail of two roots.

`$HOME/common/hf` -> `<root>/hf`, `$HOME/common/datasets` -> `<root>/datasets`,
`$HOME` -> `<root>/users/<user_id>`. The result, symlinks followed, must lie inside
`<root>/hf` or `<root>/users/<user_id>`. Weights load from local disk only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_MACROS: tuple[tuple[str, str], ...] = (
    ("$HOME/common/hf", "hf"),
    ("$HOME/common/datasets", "datasets"),
)


class ModelSourceInvalid(ValueError):
    """The source is not a usable local model folder (HTTP 422)."""


class ModelSourceForbidden(PermissionError):
    """The source resolves outside the caller's roots (HTTP 403)."""


def user_home(storage_root: Path, user_id: str) -> Path:
    return storage_root / "users" / user_id


def expand_macros(raw: str, storage_root: Path, user_id: str, field: str = "model_source") -> str:
    """Replace a leading $HOME macro; refuse every other form that is not a local path.

    `field` names the spec field in the messages (model_source, train_file, ...).
    """
    if "\x00" in raw:
        raise ModelSourceInvalid(f"{field} contains a NUL byte")
    if not raw.strip():
        raise ModelSourceInvalid(f"{field} is empty")
    if _URL_RE.match(raw):
        raise ModelSourceInvalid(
            f"{field} is a URL; argus reads from local disk only: give a path under $HOME "
            "or $HOME/common/..."
        )
    if raw.startswith("~"):
        raise ModelSourceInvalid(f"'~' is not expanded in {field}; use $HOME instead")
    for macro, sub in _MACROS:
        if raw == macro or raw.startswith(macro + "/"):
            return str(storage_root / sub) + raw[len(macro) :]
    if raw == "$HOME" or raw.startswith("$HOME/"):
        return str(user_home(storage_root, user_id)) + raw[len("$HOME") :]
    if "$" in raw:
        raise ModelSourceInvalid(
            f"{field} uses an unknown variable; only $HOME, $HOME/common/hf and "
            "$HOME/common/datasets are expanded"
        )
    if not raw.startswith("/"):
        raise ModelSourceInvalid(
            f"{field} {raw!r} is relative or a hub id; argus reads from local disk only: "
            "give an absolute path or start with $HOME"
        )
    return raw


def resolve_within(
    raw: str, storage_root: Path, user_id: str, roots: tuple[Path, ...], field: str
) -> Path:
    """Expand macros, follow symlinks, and require the result inside one of `roots`.

    Raises ModelSourceForbidden outside them; existence is the caller's to check.
    """
    real = Path(os.path.realpath(expand_macros(raw, storage_root, user_id, field)))
    if not any(is_within(real, Path(os.path.realpath(r))) for r in roots):
        raise ModelSourceForbidden(
            f"{field} {raw!r} is outside the folders you may use; use a path under "
            + " or ".join(_shown(r, storage_root, user_id) for r in roots)
        )
    return real


def _shown(root: Path, storage_root: Path, user_id: str) -> str:
    if root == user_home(storage_root, user_id):
        return "$HOME (your own)"
    return "$HOME/common/" + root.name


def allowed_roots(storage_root: Path, user_id: str) -> tuple[Path, Path]:
    return (storage_root / "hf", user_home(storage_root, user_id))


def is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_model_source(raw: str, storage_root: Path, user_id: str) -> Path:
    """The real folder a source names, if it is inside the user's roots.

    Raises ModelSourceForbidden when it resolves (symlinks followed) outside
    `<root>/hf` and `<root>/users/<user_id>`, and ModelSourceInvalid when the
    string is not a local path, or the folder is not a safetensors model.
    """
    expanded = expand_macros(raw, storage_root, user_id)
    real = Path(os.path.realpath(expanded))
    roots = [Path(os.path.realpath(r)) for r in allowed_roots(storage_root, user_id)]
    if not any(is_within(real, r) for r in roots):
        raise ModelSourceForbidden(
            f"model_source {raw!r} is outside your model folders; use a folder under "
            "$HOME (your own) or $HOME/common/hf (shared models)"
        )
    check_model_folder(real, raw)
    return real


def check_model_folder(folder: Path, shown_as: str) -> None:
    if not folder.exists():
        raise ModelSourceInvalid(f"model_source {shown_as!r} does not exist")
    if not folder.is_dir():
        raise ModelSourceInvalid(f"model_source {shown_as!r} is a file; give the model's folder")
    if not (folder / "config.json").is_file():
        raise ModelSourceInvalid(
            f"model_source {shown_as!r} has no config.json; it must be a Hugging Face model folder"
        )
    if not any(folder.glob("*.safetensors")):
        pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        if pickles:
            raise ModelSourceInvalid(
                f"model_source {shown_as!r} holds only pickle weights ({pickles[0]}), which can "
                "run code when loaded; convert them to safetensors"
            )
        raise ModelSourceInvalid(f"model_source {shown_as!r} has no .safetensors weights")
