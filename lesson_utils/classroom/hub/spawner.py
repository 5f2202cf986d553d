"""The class's spawner: each student's JupyterLab as their own account, in their own control group.

:class:`ClassSpawner` is JupyterHub's :class:`~jupyterhub.spawner.LocalProcessSpawner` (the
server is a process on this machine, started as the student's Unix account, in their home
folder) plus what a class needs:

- before the server starts, as root: the student's home folder is checked to be theirs and
  private again (0700), and their control group is made with the class's limits
  (:mod:`lesson_utils.classroom.hub.limits`);
- in the new process, before it becomes the student: it enters that group (so every kernel and
  terminal the server starts is counted in it) and gets the per-account process limit;
- its environment: the students' Python first on ``PATH`` (every kernel runs the collection's
  packages: :func:`lesson_utils.classroom.hub.__main__.python_for_students`), the numeric
  profile (:func:`lesson_utils.numerics.numeric_environment`: one compute thread, pinned
  kernels), and the student's language for the hand-out;
- its command: the hand-out (:mod:`lesson_utils.classroom.hub.handout`), which then starts
  ``jupyterhub-singleuser``; JupyterLab opens on the first lesson of the student's edition;
- when the server stops: whatever is left in the student's group (a process started with
  ``nohup``, a forgotten kernel) is killed and the group removed.
"""

from __future__ import annotations

import asyncio
import pwd

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, Dict, Integer, Unicode

from lesson_utils.classroom.hub import handout, limits
from lesson_utils.classroom.hub.accounts import check_home, kill_processes_of
from lesson_utils.numerics import numeric_environment


class ClassSpawner(LocalProcessSpawner):
    """A student's server: their account, their folder, their language, their limits."""

    languages = Dict(help="each member's edition, 'en' or 'zh', by username").tag(config=True)
    tasks_limit = Integer(1024, help="processes and threads per student").tag(config=True)
    cgroup_root = Unicode(str(limits.CGROUP_ROOT), help="where the control groups are").tag(config=True)
    use_cgroups = Bool(True, help="False where the control groups cannot be written").tag(config=True)
    python_bin = Unicode(help="the folder of the students' Python: first on their PATH").tag(config=True)

    def _limits(self) -> limits.Limits:
        return limits.Limits(memory=int(self.mem_limit), cpus=float(self.cpu_limit), tasks=self.tasks_limit)

    def _cgroups(self) -> limits.Cgroups:
        return limits.Cgroups(self.cgroup_root)

    @property
    def language(self) -> str:
        return self.languages.get(self.user.name, "en")

    async def start(self):
        account = pwd.getpwnam(self.user.name)
        check_home(account)
        self.default_url = f"/lab/tree/{handout.first_notebook(self.language)}"
        if self.use_cgroups:
            self._cgroups().prepare(self.user.name, self._limits())
        return await super().start()

    def get_env(self) -> dict:
        env = super().get_env()
        env.update(numeric_environment())
        env["PATH"] = f"{self.python_bin}:/usr/local/bin:/usr/bin:/bin"
        env[handout.LANGUAGE_ENV] = self.language
        return env

    def make_preexec_fn(self, name: str):
        become = super().make_preexec_fn(name)
        files = self._cgroups().join_files(name) if self.use_cgroups else []
        student_limits, fallback = self._limits(), not self.use_cgroups

        def preexec() -> None:
            limits.enter(files, student_limits, fallback)
            become()

        return preexec

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if self.use_cgroups:
            left = await asyncio.to_thread(self._cgroups().end, self.user.name)
        else:  # no groups to find them by: every process of the student's account
            left = await asyncio.to_thread(kill_processes_of, pwd.getpwnam(self.user.name).pw_uid)
        if left:
            self.log.info("%s: %d process(es) left after the server stopped, ended", self.user.name, left)
