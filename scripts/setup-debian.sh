#!/usr/bin/env bash
# The Debian packages the test suite uses, installed once; a no-op when they are there:
#   chromium      the browser tests (Playwright's own download needs the internet)
#   redis-server  GCS fault tolerance in the end-to-end tests (tests/e2e/test_gcs_ft.py)
set -euo pipefail
missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/redis-server ]] || missing+=(redis-server)
if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
echo "argus: installing Debian's ${missing[*]} for the tests ..." >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian's package starts a system-wide Redis on 6379; the tests start their own.
if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null; then
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
