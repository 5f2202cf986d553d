"""The README's main-job command (`make lab`) serves 00_start_here.ipynb over HTTP with a token."""

import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts processes or servers: left out of `make check`

ROOT = Path(__file__).resolve().parent.parent


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_make_lab_serves_the_start_notebook_with_a_token(tmp_path, free_port, start_server):
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    lab_args = f"--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    base = f"http://127.0.0.1:{port}"
    start_server(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS={lab_args}"],
        ready_url=f"{base}/api/status?token={token}",
        log=tmp_path / "lab.log",
        cwd=ROOT,
        env=env,
    )

    status, body = get(f"{base}/api/contents/notebooks/00_start_here.ipynb?token={token}")
    assert status == 200
    notebook = json.loads(body)["content"]
    assert any("Start here" in "".join(cell["source"]) for cell in notebook["cells"])
    assert get(f"{base}/api/contents/notebooks/00_start_here.ipynb")[0] == 403  # no token, no notebook
    # The server's front page sends the browser to the start notebook.
    with urllib.request.urlopen(f"{base}/?token={token}", timeout=5) as response:
        assert response.geturl().startswith(f"{base}/lab/tree/notebooks/00_start_here.ipynb")
        assert b"JupyterLab" in response.read()
