#!/usr/bin/env bash
# argus's container: join the Ray cluster as a node that offers nothing, then run
# argus (the command, `argus up` by default) as a driver of the cluster.
#
# Why a node of its own: a driver that connects by GCS address (ray.init(address=...))
# needs a raylet on its own machine. With `ray.address: auto` (configs/dev.yaml) argus
# finds this one, and since the address is set argus never starts or stops a head.
# --num-cpus=0 --num-gpus=0: Ray schedules no task, actor or replica here. argus does
# not use Ray Client (ray://).
set -euo pipefail

head=${RAY_HEAD_ADDRESS:-ray_head:6379}
wait_s=${RAY_HEAD_WAIT_S:-300}

# Wait for the head's GCS port. When the head restarts, this container stops with it
# (its raylet loses the GCS) and the restart policy brings it back through here.
host=${head%:*}
port=${head##*:}
deadline=$((SECONDS + wait_s))
until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
    if ((SECONDS >= deadline)); then
        echo "argus-entrypoint: no Ray head answers at $head after ${wait_s} s" >&2
        exit 1
    fi
    sleep 2
done

# RAY_START_ARGS: more `ray start` flags, e.g. --node-ip-address on a host network
# (docs/deploy.md, several hosts).
# shellcheck disable=SC2086 # word splitting of RAY_START_ARGS is wanted
ray start --address="$head" --num-cpus=0 --num-gpus=0 --disable-usage-stats ${RAY_START_ARGS:-}
exec "$@"
