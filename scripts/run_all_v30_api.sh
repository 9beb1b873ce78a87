#!/usr/bin/env bash
# The training API end to end (the seed's v3.0 regression check), then train -> serve,
# against the argus on this machine: brings argus up if it is not running, creates a
# user and a token, submits the demo `sft` task, follows its log to SUCCEEDED, serves
# its checkpoint through the serving API, gets a chat completion from it, and deletes
# the model. Run it twice in a row: nothing needs cleaning up between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

USER_ID=${SMOKE_USER:-trainer}
SAY_AS=run_all_v30
# shellcheck source=scripts/lib/local_argus.sh
source scripts/lib/local_argus.sh

task=$(curl -fsS -X POST "$API/api/v2/tasks" -H "$AUTH" -H 'Content-Type: application/yaml' \
    --data-binary @- <<'YAML'
name: sft-smol
workload: sft
model_source: $HOME/common/hf/SmolLM2-135M-Instruct
train_file: $HOME/common/datasets/demo-chat/train.jsonl
nnodes: 1
gpus_per_node: 0
max_steps: 20
YAML
)
TASK=$(echo "$task" | json 'd["task_id"]')
say "submitted task $TASK; following its log"
# follow=true streams the log and closes when the task has finished.
curl -fsSN --max-time 1800 "$API/api/v2/tasks/$TASK/logs?follow=true" -H "$AUTH" | sed 's/^/    | /'
detail=$(curl -fsS "$API/api/v2/tasks/$TASK" -H "$AUTH")
state=$(echo "$detail" | json 'd["task"]["state"]')
if [[ $state != SUCCEEDED ]]; then
    say "task $TASK is $state: $(echo "$detail" | json 'd["task"]["error_summary"]')"
    exit 1
fi
SOURCE=$(echo "$detail" | json 'd["task"]["checkpoint"]["model_source"]')
ready=$(echo "$detail" | json 'd["task"]["checkpoint"]["ready"]')
[[ $ready == True ]] || { say "the task left no checkpoint at $SOURCE"; exit 1; }
say "task $TASK SUCCEEDED; checkpoint $SOURCE"

SUFFIX="tuned-${TASK#tsk_}"
posted=$(curl -fsS -X POST "$API/api/v2/serve/models" -H "$AUTH" -H 'Content-Type: application/yaml' \
    --data-binary @- <<YAML
model_id: $SUFFIX
model_source: $SOURCE
engine_kwargs:
  max_model_len: 1024
YAML
)
KEY=$(echo "$posted" | json 'd["model_key"]')
MODEL=$(echo "$posted" | json 'd["model_id"]')
say "serving the checkpoint as $MODEL ($KEY)"

wait_state "$KEY" RUNNING 900
answer=$(curl -fsS "$OPENAI/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$MODEL\", \"temperature\": 0, \"max_tokens\": 24,
         \"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of France?\"}]}" \
    | json 'd["choices"][0]["message"]["content"]')
say "chat answer from the fine-tuned model: $answer"
[[ -n $answer ]] || { say "empty answer"; exit 1; }

curl -fsS -o /dev/null -X DELETE "$API/api/v2/serve/models/$KEY" -H "$AUTH"
wait_state "$KEY" DELETED 300
say "OK"
