#!/usr/bin/env bash
# Create .venv and install the pinned dependencies, only when they changed.
# Idempotent: a second run with the same pyproject.toml installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi

want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat .venv/.pinned-deps 2>/dev/null || true)
if [ "$want" = "$have" ] && .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('lesson_utils') is None)"; then
    echo "setup: dependencies up to date (.venv)"
else
    echo "setup: installing the pinned dependencies into .venv (the first time takes a few minutes)"
    # pip's own index warnings about local mirror folders are noise; real errors still fail the script
    .venv/bin/pip install --quiet -e ".[dev]" 2> >(grep -v "is neither a file nor a directory" >&2)
    echo "$want" > .venv/.pinned-deps
    echo "setup: done"
fi
# rfc3987-syntax comes only through an extra (jupyter-events wants jsonschema[format-nongpl]) and builds
# a parser when jsonschema is imported: 0.9 CPU-seconds in every process that imports nbformat or a
# Jupyter server, among them the grader's worker of every graded notebook. Without it, jsonschema only
# skips checking the "iri" format of Jupyter's event schemas (`pip check` stays clean).
if .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('rfc3987_syntax') is None)"; then
    .venv/bin/pip uninstall --quiet --yes rfc3987-syntax
fi
