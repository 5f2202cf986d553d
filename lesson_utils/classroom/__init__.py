"""What runs a class, apart from what the lessons import: grading, and the class's server.

- :mod:`lesson_utils.classroom.grade`: the teachers' grader, ``python -m lesson_utils.classroom.grade``.
- :mod:`lesson_utils.classroom.grade_worker`: one notebook's run, in a process of its own.
- :mod:`lesson_utils.classroom.grade_probe`: what the grader sends into a student's kernel (with
  :mod:`lesson_utils.classroom.export`, which writes the questions' variables out, pickle-free).
- :mod:`lesson_utils.classroom.outside`: what the grading process reads from outside the kernel: the files
  it names (never through a link) and ``/proc/<kernel>/maps`` (file-backed memory or private copies).
- :mod:`lesson_utils.classroom.judge`: a process that never ran notebook code rebuilds the exported
  objects and runs the unchanged checkers on them; the grade comes from here.
- :mod:`lesson_utils.classroom.sandbox`: the bubblewrap sandbox of ``--sandbox``.
- :mod:`lesson_utils.classroom.hub`: the class's JupyterHub, ``python -m lesson_utils.classroom.hub start``
  (``make hub``): accounts, hand-out, per-student limits.
- :mod:`lesson_utils.classroom.course`: one lesson's exercises collected, graded and returned,
  ``python -m lesson_utils.classroom.course 01``.
- :mod:`lesson_utils.classroom.userfiles`: files in a student's folder, read and written as root
  without following their links.

A lesson never imports this package; the lessons' helpers are the modules beside it in
:mod:`lesson_utils`.
"""
