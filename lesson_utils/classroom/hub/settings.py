"""The hub's folder (``--state``, ``/srv/lesson-hub`` by default) and the settings kept in it.

Everything the hub and the teacher's commands keep lies in one folder that only root can list
(mode 0711: the students' processes may pass through it to ``handout/``, nothing more)::

    /srv/lesson-hub/
        hub.json              the settings the hub was started with (read by the course command too)
        class.csv             the class list it was started with
        jupyterhub.sqlite     JupyterHub's database; jupyterhub_cookie_secret; passwords.dbm (bcrypt hashes)
        handout/              en.git, zh.git and their gitconfig: readable by the students (0755)
        python/               only where the students cannot run the collection's own Python (see
                              __main__.python_for_students): a bridge to the same packages (0755)
        grades/lessonNN/<time>/   each collection: submissions/ and the grader's output (0700)
        jupyterhub-proxy.pid  the proxy's process, while the hub runs
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from lesson_utils.classroom.hub.classlist import Member, read_class

DEFAULT_STATE = Path("/srv/lesson-hub")
COLLECTION = Path(__file__).resolve().parents[3]
PROXY = COLLECTION / "build" / "hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
VENV_BIN = Path(sys.prefix) / "bin"  # the collection's environment: the hub's, and every student's kernel


@dataclass
class Settings:
    """How the hub runs; saved as ``hub.json`` in the state folder."""

    state: str = str(DEFAULT_STATE)
    ip: str = "127.0.0.1"
    port: int = 8000
    homes: str = "/home"
    memory: str = "4G"
    cpus: float = 1.0
    tasks: int = 1024
    cgroups: bool = False  # whether the limits are the control groups' (found at start) or per process
    cull_after: int = 3600  # seconds without activity before a student's server is stopped
    ssl_cert: str = ""
    ssl_key: str = ""
    hub_port: int = 0  # the hub's own API, on 127.0.0.1 (chosen free at start)
    proxy_api_port: int = 0  # the proxy's API, on 127.0.0.1 (chosen free at start)
    proxy: str = str(PROXY)
    venv_bin: str = str(VENV_BIN)  # the hub's own Python (root runs it)
    python: str = ""  # the students' servers' and kernels' Python (see python_for_students)

    # -- the folder's parts ---------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return Path(self.state)

    @property
    def handout(self) -> Path:
        return self.folder / "handout"

    @property
    def grades(self) -> Path:
        return self.folder / "grades"

    @property
    def class_list(self) -> Path:
        return self.folder / "class.csv"

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_cert else "http"
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{scheme}://{host}:{self.port}"

    def members(self) -> list[Member]:
        return read_class(self.class_list)

    # -- saved and read back --------------------------------------------------------------------------
    def save(self) -> None:
        (self.folder / "hub.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state: str | Path) -> Settings:
        path = Path(state) / "hub.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: no hub was started with --state {state} "
                "(start one with `make hub CLASS=class.csv`, or pass the --state it was started with)"
            )
        return cls(**json.loads(path.read_text()))
