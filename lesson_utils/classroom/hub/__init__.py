"""The class's JupyterHub on one machine: accounts, hand-out, limits, and the hub's configuration.

``make hub CLASS=class.csv`` (``python -m lesson_utils.classroom.hub start``) runs it; the
modules, in the order a login meets them:

- :mod:`~lesson_utils.classroom.hub.classlist`: the class list (username, language, role).
- :mod:`~lesson_utils.classroom.hub.accounts`: one Unix account and private home folder per person.
- :mod:`~lesson_utils.classroom.hub.settings`: the hub's folder and the settings kept in it.
- :mod:`~lesson_utils.classroom.hub.config`: JupyterHub's configuration, and why these parts.
- :mod:`~lesson_utils.classroom.hub.spawner`: each student's server, as them, with their limits.
- :mod:`~lesson_utils.classroom.hub.limits`: memory, CPU and processes per student (control groups).
- :mod:`~lesson_utils.classroom.hub.handout`: the lessons into ``~/lessons`` (nbgitpuller's merge).

Collecting, grading and returning a lesson's exercises is :mod:`lesson_utils.classroom.course`.
"""
