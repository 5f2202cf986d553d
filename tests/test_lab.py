"""The README's main-job commands serve the start notebook over HTTP with a token: `make lab` (English)
and `make lab-zh` (the Chinese edition, with JupyterLab's interface in Chinese)."""

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


def make_lab(target: str, tmp_path, free_port, start_server) -> tuple[str, str]:
    """Run `make <target>` as the README says, on a free port with a known token; its URL and token."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    lab_args = f"--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    base = f"http://127.0.0.1:{port}"
    start_server(
        ["make", "--no-print-directory", target, f"LAB_ARGS={lab_args}"],
        ready_url=f"{base}/api/status?token={token}",
        log=tmp_path / f"{target}.log",
        cwd=ROOT,
        env=env,
    )
    return base, token


def test_make_lab_serves_the_start_notebook_with_a_token(tmp_path, free_port, start_server):
    base, token = make_lab("lab", tmp_path, free_port, start_server)

    status, body = get(f"{base}/api/contents/notebooks/00_start_here.ipynb?token={token}")
    assert status == 200
    notebook = json.loads(body)["content"]
    assert any("Start here" in "".join(cell["source"]) for cell in notebook["cells"])
    assert get(f"{base}/api/contents/notebooks/00_start_here.ipynb")[0] == 403  # no token, no notebook
    # The server's front page sends the browser to the start notebook.
    with urllib.request.urlopen(f"{base}/?token={token}", timeout=5) as response:
        assert response.geturl().startswith(f"{base}/lab/tree/notebooks/00_start_here.ipynb")
        assert b"JupyterLab" in response.read()
    # `make lab` stays English even after `make lab-zh` chose Chinese in its own settings folder.
    _, setting = get(f"{base}/lab/api/settings/@jupyterlab/translation-extension:plugin?token={token}")
    assert json.loads(setting)["settings"].get("locale", "default") != "zh_CN"


def test_make_lab_zh_serves_the_chinese_start_notebook_with_the_interface_in_chinese(tmp_path, free_port, start_server):
    base, token = make_lab("lab-zh", tmp_path, free_port, start_server)

    status, body = get(f"{base}/api/contents/notebooks/zh/00_start_here.ipynb?token={token}")
    assert status == 200
    sources = ["".join(cell["source"]) for cell in json.loads(body)["content"]["cells"]]
    assert 'set_language("zh_CN")' in "\n".join(sources), "the Chinese 00 does not choose Chinese messages"
    # The language pack is installed and chosen: the server lists zh_CN, the setting says zh_CN,
    # and the interface's own strings come back in Chinese.
    _, listed = get(f"{base}/lab/api/translations/?token={token}")
    assert "zh_CN" in json.loads(listed)["data"], "jupyterlab-language-pack-zh-cn is not installed"
    _, setting = get(f"{base}/lab/api/settings/@jupyterlab/translation-extension:plugin?token={token}")
    assert json.loads(setting)["settings"]["locale"] == "zh_CN"
    _, pack = get(f"{base}/lab/api/translations/zh_CN?token={token}")
    assert json.loads(pack)["data"]["jupyterlab"]["Help"] == ["帮助"]
    with urllib.request.urlopen(f"{base}/?token={token}", timeout=5) as response:
        assert response.geturl().startswith(f"{base}/lab/tree/notebooks/zh/00_start_here.ipynb")
