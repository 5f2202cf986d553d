"""The class's JupyterHub configuration: what :func:`configure` sets, and why these parts.

The hub's start command writes a two-line ``jupyterhub_config.py`` into the state folder that
calls :func:`configure` with the saved :class:`~lesson_utils.classroom.hub.settings.Settings`;
``jupyterhub -f`` loads it. The parts, each pinned in ``pyproject.toml`` (and
``build/hub-proxy/package-lock.json`` for the proxy):

- **JupyterHub** 5.5.0, the version of the Zero to JupyterHub chart 4.4.0 that ``deploy/`` uses,
  so one class runs the same hub on one machine or on Kubernetes. It listens on
  ``--ip``:``--port`` (127.0.0.1:8000 by default: the class is opened to the network on
  purpose, with ``--ip``, and then preferably with ``--ssl-cert``/``--ssl-key``); its own API
  and the proxy's API stay on 127.0.0.1.
- **configurable-http-proxy** 5.2.0 (npm; the chart's proxy version), the proxy JupyterHub is
  built around and the only one it starts by itself; it runs offline from ``build/hub-proxy/``.
- **FirstUseAuthenticator** (``jupyterhub-firstuseauthenticator``): only the class list's
  usernames may log in (``create_users`` off), and the password typed at a student's first login
  becomes theirs (bcrypt, in ``passwords.dbm``; at least 8 characters). No mail server and no
  list of passwords to hand out: the teacher says "log in with your username and choose a
  password". A forgotten password: the teacher deletes the user in the hub's admin page (the
  password goes with it; their folder stays) and adds them again; the student chooses a new one.
- The teachers (``role`` teacher) are the hub's **admins**: the admin page lists the class,
  starts and stops servers and can open a student's server to help.
- **ClassSpawner** (:mod:`lesson_utils.classroom.hub.spawner`): a real account and private
  folder per student, the limits, the hand-out.
- **jupyterhub-idle-culler** as a hub service: a server idle for ``--cull-after`` seconds (an
  hour by default) is stopped, and its memory given back; the student's files stay.
"""

from __future__ import annotations

from pathlib import Path

from lesson_utils.classroom.hub.settings import Settings

CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def configure(c, settings: Settings) -> None:
    """Fill JupyterHub's config object ``c`` for the class described by ``settings``."""
    from lesson_utils.classroom.hub.spawner import ClassSpawner

    state, venv, python = settings.folder, Path(settings.venv_bin), Path(settings.python)
    members = settings.members()

    c.JupyterHub.bind_url = settings.url
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
    if settings.ssl_cert:
        c.JupyterHub.ssl_cert, c.JupyterHub.ssl_key = settings.ssl_cert, settings.ssl_key
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.cleanup_servers = True  # stopping the hub stops every student's server
    c.JupyterHub.cleanup_proxy = True

    c.ConfigurableHTTPProxy.command = [settings.proxy]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")

    c.JupyterHub.authenticator_class = "firstuseauthenticator.FirstUseAuthenticator"
    c.FirstUseAuthenticator.dbm_path = str(state / "passwords.dbm")
    c.FirstUseAuthenticator.create_users = False
    c.FirstUseAuthenticator.min_password_length = 8
    c.Authenticator.allowed_users = {m.username for m in members}
    c.Authenticator.admin_users = {m.username for m in members if m.is_teacher}

    c.JupyterHub.spawner_class = ClassSpawner
    c.ClassSpawner.languages = {m.username: m.language for m in members}
    c.ClassSpawner.python_bin = str(python.parent)
    c.ClassSpawner.use_cgroups = settings.cgroups
    c.ClassSpawner.tasks_limit = settings.tasks
    c.Spawner.mem_limit = settings.memory
    c.Spawner.cpu_limit = float(settings.cpus)
    c.Spawner.cmd = [
        str(python), "-m", "lesson_utils.classroom.hub.handout", "--handout", str(settings.handout),
        "--", str(python), "-m", "jupyterhub.singleuser",
    ]  # fmt: skip
    c.Spawner.start_timeout = 120  # a class logging in at once on a small machine
    c.Spawner.http_timeout = 90

    every = max(10, min(300, settings.cull_after // 2))
    c.JupyterHub.services = [
        {
            "name": "idle-culler",
            "command": [str(venv / "python"), "-m", "jupyterhub_idle_culler",
                        f"--timeout={settings.cull_after}", f"--cull-every={every}"],
        }
    ]  # fmt: skip
    c.JupyterHub.load_roles = [{"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]}]


def config_file(settings: Settings) -> str:
    """The ``jupyterhub_config.py`` the start command writes into the state folder."""
    return (
        "# Written by `python -m lesson_utils.classroom.hub start`; the settings are in hub.json beside it.\n"
        "from lesson_utils.classroom.hub.config import configure\n"
        "from lesson_utils.classroom.hub.settings import Settings\n\n"
        f"configure(get_config(), Settings.load({str(settings.folder)!r}))  # noqa: F821 - JupyterHub's loader\n"
    )
