#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/ui) when it is missing.
# In CI (CI is set) a browser that cannot be installed is an error; elsewhere the
# browser tests skip and say why.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "browser: installing Debian's chromium with apt-get (once)"
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
    exit 0
fi
msg="browser: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get: apt-get install -y chromium)"
if [ -n "${CI:-}" ]; then
    echo "$msg" >&2
    exit 1
fi
echo "$msg; the browser tests will be skipped"
