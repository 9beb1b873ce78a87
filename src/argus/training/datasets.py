"""Datasets argus ships, installed into the shared storage root.

`<root>/datasets` is what a spec calls `$HOME/common/datasets` (design D8), so after
`install_demo_chat(root)` every user can point a training job at
`$HOME/common/datasets/demo-chat/train.jsonl`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

DEMO_CHAT_DIRNAME = "demo-chat"
_TRAIN_NAME = "train.jsonl"


def packaged_demo_chat() -> bytes:
    """The demo chat dataset's train.jsonl as shipped in the argus package."""
    return resources.files("argus").joinpath("data", DEMO_CHAT_DIRNAME, _TRAIN_NAME).read_bytes()


def install_demo_chat(root: Path) -> Path:
    """Copy the packaged demo chat dataset to `<root>/datasets/demo-chat/train.jsonl`.

    Idempotent: a file that already holds the packaged bytes is left alone (its mtime
    too); any other content is replaced. The write goes through a temporary sibling and
    a rename, so a reader never sees a half-written file. Returns the file's path.
    """
    data = packaged_demo_chat()
    dest = Path(root) / "datasets" / DEMO_CHAT_DIRNAME / _TRAIN_NAME
    try:
        if dest.read_bytes() == data:
            return dest
    except OSError:
        pass  # missing or unreadable: write it
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
