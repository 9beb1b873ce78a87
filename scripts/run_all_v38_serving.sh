#!/usr/bin/env bash
# The serving flow end to end (seed M6.3), against the argus on this machine:
# brings argus up if it is not running, creates a user and a token, posts the demo
# model, waits for RUNNING, checks /v1/models and a chat completion, deletes the
# model and checks it is gone. Safe to run again and again: it cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."

API=${ARGUS_API:-http://127.0.0.1:${ARGUS_PORT:-8080}}
OPENAI=${ARGUS_OPENAI:-http://127.0.0.1:${ARGUS_SERVE_PORT:-8000}/v1}
DATA=${ARGUS_DATA_DIR:-$HOME/.argus}
PY=${ARGUS_PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
SUFFIX=${SMOKE_MODEL_ID:-smoke}
USER_ID=${SMOKE_USER:-smoke}
say() { printf '[run_all] %s\n' "$*"; }
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

started_here=0
if ! curl -fsS "$API/readyz" >/dev/null 2>&1; then
    say "argus is not running: starting it"
    scripts/setup.sh
    .venv/bin/argus models prepare-demo
    mkdir -p "$DATA"
    nohup .venv/bin/argus up >"$DATA/run_all_argus.log" 2>&1 &
    started_here=1
    for _ in $(seq 1 240); do
        curl -fsS "$API/readyz" >/dev/null 2>&1 && break
        sleep 1
    done
    curl -fsS "$API/readyz" >/dev/null || { say "argus did not become ready"; cat "$DATA/run_all_argus.log"; exit 1; }
fi
cleanup() { if [[ $started_here == 1 ]]; then .venv/bin/argus down; fi; }
trap cleanup EXIT

ADMIN=${ARGUS_ADMIN_TOKEN:-$(cat "$DATA/admin-token")}
curl -sS -o /dev/null -X POST "$API/api/v2/users" -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' -d "{\"user_id\": \"$USER_ID\"}"
TOKEN=$(curl -fsS -X POST "$API/api/v2/users/$USER_ID/tokens" -H "Authorization: Bearer $ADMIN" | json 'd["token"]')
AUTH="Authorization: Bearer $TOKEN"
say "user $USER_ID has a fresh token"

posted=$(curl -fsS -X POST "$API/api/v2/serve/models" -H "$AUTH" -H 'Content-Type: application/yaml' \
    --data-binary @- <<YAML
model_id: $SUFFIX
model_source: \$HOME/common/hf/SmolLM2-135M-Instruct
num_replicas: 1
engine_kwargs:
  max_model_len: 2048
YAML
)
KEY=$(echo "$posted" | json 'd["model_key"]')
MODEL=$(echo "$posted" | json 'd["model_id"]')
say "posted $MODEL ($KEY)"

wait_state() {  # wait_state STATE SECONDS
    local state=""
    for _ in $(seq 1 "$2"); do
        state=$(curl -fsS "$API/api/v2/serve/models/$KEY" -H "$AUTH" | json 'd["model"]["state"]')
        [[ $state == "$1" ]] && return 0
        if [[ $state == FAILED ]]; then
            curl -fsS "$API/api/v2/serve/models/$KEY" -H "$AUTH" | json 'd["model"]["error_summary"]'
            return 1
        fi
        sleep 1
    done
    say "timed out waiting for $1 (state $state)"
    return 1
}
wait_state RUNNING 900
say "$MODEL is RUNNING"

curl -fsS "$OPENAI/models" | json '[m["id"] for m in d["data"]]' | grep -q "'$MODEL'" \
    || { say "$MODEL is not in /v1/models"; exit 1; }
say "/v1/models lists $MODEL"
answer=$(curl -fsS "$OPENAI/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$MODEL\", \"temperature\": 0, \"max_tokens\": 24,
         \"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of France?\"}]}" \
    | json 'd["choices"][0]["message"]["content"]')
say "chat answer: $answer"
[[ -n $answer ]] || { say "empty answer"; exit 1; }

curl -fsS -o /dev/null -X DELETE "$API/api/v2/serve/models/$KEY" -H "$AUTH"
wait_state DELETED 300
# With no model left, Serve has no app and answers 404: that counts as gone too.
if curl -sS "$OPENAI/models" | grep -q "\"$MODEL\""; then
    say "$MODEL is still listed after DELETED"; exit 1
fi
say "deleted; $MODEL is gone from /v1/models"
say "OK"
