"""The lock's compiled bytecode, kept between venvs (scripts/setup.sh).

    python bytecode.py save SITE_PACKAGES CACHE     # after a full compile
    python bytecode.py restore CACHE SITE_PACKAGES  # instead of one

uv links every installed file from its cache, so a fresh venv's sources have the very
mtimes and sizes the cached .pyc files were compiled against, and Python takes those
files as its own (a .pyc is checked against its source's mtime and size, its code gets
the new path on load). Compiling the 28,000 files of the lock took 45 s of the 54 s that
a fresh clone's setup took; linking them back takes under a second.

`restore` links only the files that still match their source; any other source (uv's
cache unpacked a wheel again, say) is compiled afresh and its new .pyc saved back, so a
venv never starts with stale bytecode. Exit status 0 in every case; it prints counts.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import struct
import sys
from pathlib import Path

TAG = sys.implementation.cache_tag  # cpython-311: another Python never shares the cache


def _pycs(root: Path) -> list[Path]:
    """Every .pyc of this Python under `root`, relative to it."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "__pycache__":
            continue
        found += [Path(dirpath, f).relative_to(root) for f in files if f.endswith(f".{TAG}.pyc")]
    return found


def _source_of(pyc: Path) -> Path:
    """pkg/__pycache__/mod.cpython-311.pyc -> pkg/mod.py"""
    return pyc.parent.parent / (pyc.name.removesuffix(f".{TAG}.pyc") + ".py")


def _matches(pyc: Path, source: Path) -> bool:
    """Would Python use `pyc` for `source` (the default, timestamp-checked kind)?"""
    try:
        with pyc.open("rb") as f:
            header = f.read(16)
        st = source.stat()
    except OSError:
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    flags, mtime, size = struct.unpack("<III", header[4:16])
    return flags == 0 and mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
    os.link(src, tmp)
    os.replace(tmp, dst)  # atomic, as Python writes its own


def save(site: Path, cache: Path) -> None:
    pycs = _pycs(site)
    for rel in pycs:
        _link(site / rel, cache / rel)
    print(f"bytecode: {len(pycs)} files kept for the next venv", file=sys.stderr)


def restore(cache: Path, site: Path) -> None:
    linked = compiled = 0
    for rel in _pycs(cache):
        source = site / _source_of(rel)
        if not source.exists() or (site / rel).exists():
            continue  # not in this venv, or compiled already (pip's own files)
        if _matches(cache / rel, source):
            _link(cache / rel, site / rel)
            linked += 1
            continue
        try:
            py_compile.compile(str(source), cfile=str(site / rel), doraise=True)
        except py_compile.PyCompileError:
            continue  # uv skipped it too (a file of another Python's syntax)
        _link(site / rel, cache / rel)
        compiled += 1
    print(f"bytecode: {linked} files linked, {compiled} compiled again", file=sys.stderr)


if __name__ == "__main__":
    command, src, dst = sys.argv[1:4]
    {"save": save, "restore": restore}[command](Path(src), Path(dst))
