# Sourced by scripts/run_all_*.sh: the local argus's addresses, `say` and `json`, argus
# started (and stopped on exit) if it does not run, and a user with a fresh token in
# $TOKEN / $AUTH. Set USER_ID before sourcing; SAY_AS names the script in its output.

API=${ARGUS_API:-http://127.0.0.1:${ARGUS_PORT:-8080}}
OPENAI=${ARGUS_OPENAI:-http://127.0.0.1:${ARGUS_SERVE_PORT:-8000}/v1}
DATA=${ARGUS_DATA_DIR:-$HOME/.argus}
PY=${ARGUS_PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
say() { printf '[%s] %s\n' "${SAY_AS:-run_all}" "$*"; }
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
# The user may exist from an earlier run (409): a fresh token is all a run needs.
curl -sS -o /dev/null -X POST "$API/api/v2/users" -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' -d "{\"user_id\": \"$USER_ID\"}"
TOKEN=$(curl -fsS -X POST "$API/api/v2/users/$USER_ID/tokens" -H "Authorization: Bearer $ADMIN" | json 'd["token"]')
AUTH="Authorization: Bearer $TOKEN"
say "user $USER_ID has a fresh token"

wait_state() {  # wait_state MODEL_KEY STATE SECONDS
    local state=""
    for _ in $(seq 1 "$3"); do
        state=$(curl -fsS "$API/api/v2/serve/models/$1" -H "$AUTH" | json 'd["model"]["state"]')
        [[ $state == "$2" ]] && return 0
        if [[ $state == FAILED ]]; then
            curl -fsS "$API/api/v2/serve/models/$1" -H "$AUTH" | json 'd["model"]["error_summary"]'
            return 1
        fi
        sleep 1
    done
    say "timed out waiting for $2 (state $state)"
    return 1
}
