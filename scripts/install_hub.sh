#!/usr/bin/env bash
# Install what the class's JupyterHub (`make hub`, tests/ui/test_hub.py) needs besides .venv:
# node and npm, git (the hand-out), useradd (the students' accounts), all Debian packages, and
# the pinned configurable-http-proxy (deploy/proxy/package-lock.json) into build/hub-proxy/.
# In CI (CI is set) a piece that cannot be installed is an error; elsewhere the hub test skips
# and says why.
set -euo pipefail
cd "$(dirname "$0")/.."

give_up() {
    if [ -n "${CI:-}" ]; then
        echo "hub: $1" >&2
        exit 1
    fi
    echo "hub: $1; the hub test will be skipped"
    exit 0
}

missing=""
command -v node >/dev/null || missing="$missing nodejs"
command -v npm >/dev/null || missing="$missing npm"
command -v git >/dev/null || missing="$missing git"
PATH="$PATH:/usr/sbin:/sbin" command -v useradd >/dev/null || missing="$missing passwd"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "hub: installing Debian's$missing with apt-get (once)"
        apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
    else
        give_up "missing:$missing (needs root and apt-get: apt-get install -y$missing)"
    fi
fi

target=build/hub-proxy
if cmp -s deploy/proxy/package-lock.json "$target/package-lock.json" && [ -x "$target/node_modules/.bin/configurable-http-proxy" ]; then
    exit 0
fi
echo "hub: installing the pinned configurable-http-proxy into $target (npm ci)"
mkdir -p "$target"
cp deploy/proxy/package.json deploy/proxy/package-lock.json "$target/"
(cd "$target" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || give_up "npm ci failed in $target"
