#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/ui) when it is missing.
# In CI (CI is set) a browser that cannot be installed is an error; elsewhere the
# browser tests skip and say why.
set -euo pipefail
# fonts-noto-cjk: the notebooks quote the original lesson's Chinese section titles.
# grep without -q: an early exit would make fc-list's write fail, and the pipe with it (pipefail)
if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -i "Noto Sans CJK" >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "browser: installing Debian's chromium and CJK fonts with apt-get (once)"
    packages="chromium fonts-noto-cjk"
    apt-get install -y -q $packages >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $packages >/dev/null; }
    exit 0
fi
[ -x /usr/bin/chromium ] && exit 0  # fonts are nice to have; the browser is what the tests need
msg="browser: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get: apt-get install -y chromium)"
if [ -n "${CI:-}" ]; then
    echo "$msg" >&2
    exit 1
fi
echo "$msg; the browser tests will be skipped"
