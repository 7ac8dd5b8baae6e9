#!/bin/sh
# Installs Debian's chromium for the report rendering test, only when it is missing.
# Idempotent and quiet: a machine that already has /usr/bin/chromium returns at once.
set -eu

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    AS_ROOT=""
elif command -v sudo >/dev/null 2>&1; then
    AS_ROOT="sudo -n"
else
    echo "ensure_chromium: $CHROMIUM is missing and installing it needs root (or sudo)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Try without `apt-get update` first (fast when the package lists are current); a fresh container has empty
# lists, so on failure update them and try once more.
if ! $AS_ROOT apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
    $AS_ROOT apt-get update -qq >/dev/null
    $AS_ROOT apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

[ -x "$CHROMIUM" ] || { echo "ensure_chromium: apt-get finished but $CHROMIUM is still missing" >&2; exit 1; }
