#!/usr/bin/env bash
# Chromium for the browser tests comes from Debian (Playwright's own download does
# not work without the internet). Installs it once; a no-op when it is there.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
echo "argus: installing Debian's chromium for the browser tests ..." >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
