"""The browser tests' fixtures: a JupyterLab server per edition and one Chromium, per test module."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, free_port, start_server):
    """A JupyterLab server on a free loopback port, serving a copy of notebooks/ (so autosave
    can never overwrite the stored outputs), with a random token and a temporary HOME."""
    yield from serve(tmp_path_factory, free_port, start_server, locale=None)


@pytest.fixture(scope="module")
def lab_zh(tmp_path_factory, free_port, start_server):
    """The same, with JupyterLab's interface in Chinese (the language pack, as `make lab-zh` sets it)."""
    yield from serve(tmp_path_factory, free_port, start_server, locale="zh_CN")


def serve(tmp_path_factory, free_port, start_server, locale):
    home = tmp_path_factory.mktemp("home")
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    for name in ("LESSON_PRETRAINED", "LESSON_DATA"):
        env.pop(name, None)
    # Render every cell (JupyterLab 4 only renders the cells in view by default, so a widget
    # further down would not be in the page) and do not ask about news.
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    if locale:
        (settings / "translation-extension").mkdir(parents=True)
        (settings / "translation-extension" / "plugin.jupyterlab-settings").write_text(json.dumps({"locale": locale}))
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.getuid() == 0:
        command.append("--allow-root")
    start_server(
        command, ready_url=f"http://127.0.0.1:{port}/api/status?token={token}", log=home / "server.log", env=env
    )
    yield f"http://127.0.0.1:{port}", token


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
