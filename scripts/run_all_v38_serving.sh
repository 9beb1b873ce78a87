#!/usr/bin/env bash
# The serving flow end to end (seed M6.3), against the argus on this machine:
# brings argus up if it is not running, creates a user and a token, posts the demo
# model, waits for RUNNING, makes an inference key, checks /v1/models and a chat
# completion with it (and that no key is a 401), deletes the model and checks it is gone. Safe to run again and again: it cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."

SUFFIX=${SMOKE_MODEL_ID:-smoke}
USER_ID=${SMOKE_USER:-smoke}
SAY_AS=run_all
# shellcheck source=scripts/lib/local_argus.sh
source scripts/lib/local_argus.sh

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

wait_state "$KEY" RUNNING 900
say "$MODEL is RUNNING"

KEY_SECRET=$(curl -fsS -X POST "$API/api/v2/keys" -H "$AUTH" -H 'Content-Type: application/json' \
    -d '{"name": "run_all_v38"}' | json 'd["key"]')
BEARER="Authorization: Bearer $KEY_SECRET"
say "made an inference key"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$OPENAI/models")
[[ $code == 401 ]] || { say "no key got HTTP $code, not 401"; exit 1; }
say "no key: 401"

curl -fsS "$OPENAI/models" -H "$BEARER" | json '[m["id"] for m in d["data"]]' | grep -q "'$MODEL'" \
    || { say "$MODEL is not in /v1/models"; exit 1; }
say "/v1/models lists $MODEL"
answer=$(curl -fsS "$OPENAI/chat/completions" -H "$BEARER" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$MODEL\", \"temperature\": 0, \"max_tokens\": 24,
         \"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of France?\"}]}" \
    | json 'd["choices"][0]["message"]["content"]')
say "chat answer: $answer"
[[ -n $answer ]] || { say "empty answer"; exit 1; }

curl -fsS -o /dev/null -X DELETE "$API/api/v2/serve/models/$KEY" -H "$AUTH"
wait_state "$KEY" DELETED 300
# With no model left, Serve has no app and answers 404: that counts as gone too.
if curl -sS "$OPENAI/models" -H "$BEARER" | grep -q "\"$MODEL\""; then
    say "$MODEL is still listed after DELETED"; exit 1
fi
say "deleted; $MODEL is gone from /v1/models"
say "OK"
