#!/usr/bin/env bash
# Install bubblewrap, for `python -m lesson_utils.classroom.grade --sandbox` and its tests, when it is missing.
# In CI (CI is set) a sandbox that cannot be installed is an error; elsewhere its tests skip and say why.
set -euo pipefail
if [ -x /usr/bin/bwrap ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "sandbox: installing Debian's bubblewrap with apt-get (once)"
    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
    exit 0
fi
msg="sandbox: /usr/bin/bwrap is missing and cannot be installed here (needs root and apt-get: apt-get install -y bubblewrap)"
if [ -n "${CI:-}" ]; then
    echo "$msg" >&2
    exit 1
fi
echo "$msg; the sandbox tests will be skipped"
