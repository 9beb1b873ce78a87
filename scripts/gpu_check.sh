#!/usr/bin/env bash
# The serving flow on a GPU machine: the GPU extra (ray[llm], vLLM on CUDA) in its own
# venv, a local Ray head that sees the GPUs, the demo model on one GPU with the
# accelerator type from the config, then scripts/run_all_v38_serving.sh. A few minutes.
#   ARGUS_ACCELERATOR_TYPE=H200 scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

nvidia-smi -L
ACCEL=${ARGUS_ACCELERATOR_TYPE:-$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -oE 'H[0-9]+|A[0-9]+|L[0-9]+S?' | head -1)}
VENV=${GPU_VENV:-.venv-gpu}
if [[ ! -x $VENV/bin/argus ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -e '.[gpu]' gguf accelerate
    "$VENV/bin/pip" install -q --no-deps -r requirements/no-deps.txt
fi
export ARGUS_DATA_DIR=${ARGUS_DATA_DIR:-/tmp/argus-gpu-check}
export ARGUS_ENGINE=gpu ARGUS_ACCELERATOR_TYPE="$ACCEL"
mkdir -p "$ARGUS_DATA_DIR"
echo "[gpu_check] engine gpu, accelerator_type $ACCEL, data $ARGUS_DATA_DIR"

"$VENV/bin/argus" models prepare-demo
"$VENV/bin/ray" start --head --node-ip-address=127.0.0.1 --disable-usage-stats \
    --dashboard-host=127.0.0.1 >/dev/null
trap '"$VENV/bin/ray" stop --force >/dev/null 2>&1 || true' EXIT
nohup "$VENV/bin/argus" up >"$ARGUS_DATA_DIR/argus.log" 2>&1 &
for _ in $(seq 1 120); do curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break; sleep 1; done
ARGUS_PYTHON="$VENV/bin/python" scripts/run_all_v38_serving.sh
curl -fsS -H "Authorization: Bearer $(cat "$ARGUS_DATA_DIR/admin-token")" \
    http://127.0.0.1:8080/api/v2/serve/status | "$VENV/bin/python" -m json.tool | head -40
"$VENV/bin/argus" down
