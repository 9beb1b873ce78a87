#!/usr/bin/env bash
# The Ray head's container: the head, and beside it the Ray agent, argus's one Ray driver.
#
# argus's own container is no Ray node (Ray can place no task or actor there, so none
# can read argus's database or admin token); the agent holds the driver connection here,
# in a container that holds none of argus's secrets, and argus calls it over the compose
# network with ARGUS_AGENT_TOKEN. The agent can do what any Ray driver of this cluster
# can, nothing more.
#
# The agent is started again whenever it exits while the head lives (it ends itself when
# the GCS is silent for 5 s); when the head is gone the script exits and the container's
# restart policy starts both again. Serve runs a proxy on every node (EveryNode), so the
# workers' replicas keep answering through their own node's proxy while the head is away.
set -euo pipefail

# GCS fault tolerance: with RAY_REDIS_ADDRESS set, the GCS keeps its tables in that Redis
# and a restarted head takes its cluster back. The password goes to `ray start` as a flag
# and leaves this environment. Ray hands it on to its own processes on the head (their
# command lines, workers' included), so a task on the head can read it, as it can read
# Ray's token: docs/security.md.
redis_args=()
if [[ -n "${REDIS_PASSWORD:-}" ]]; then
    redis_args=("--redis-password=${REDIS_PASSWORD}")
fi
unset REDIS_PASSWORD

# RAY_HEAD_ARGS: `ray start` flags (ports, dashboard host, resources); see docker-compose.yaml.
# shellcheck disable=SC2086 # word splitting of RAY_HEAD_ARGS is wanted
ray start --head ${RAY_HEAD_ARGS:-} "${redis_args[@]}"

while ray status --address=127.0.0.1:6379 >/dev/null 2>&1; do
    python -m argus.cluster.agent \
        --address 127.0.0.1:6379 \
        --listen "tcp:0.0.0.0:${ARGUS_AGENT_PORT:-8765}" \
        --serve-host 0.0.0.0 \
        --serve-port 8000 \
        --proxy-location "${ARGUS_PROXY_LOCATION:-EveryNode}" || true
    sleep 1
done
echo "ray-head: the Ray head stopped; exiting so that the container is restarted" >&2
exit 1
