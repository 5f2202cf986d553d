"""The grading process keeps a bounded amount of a notebook's output: a notebook that prints without end
cannot fill the memory of the grading process, which runs outside the sandbox and its memory limit."""

import nbformat

from lesson_utils.classroom.grade_worker import MAX_OUTPUT, CappedClient


def message(kind: str, content: dict) -> dict:
    return {"msg_type": kind, "content": content, "parent_header": {"msg_id": "cell"}, "header": {"msg_type": kind}}


def test_output_past_the_cap_is_dropped_and_counted_but_errors_are_kept():
    client = CappedClient(nbformat.v4.new_notebook())
    client.reset_execution_trackers()  # as executing a notebook does first, and each cell:
    client.clear_before_next_output = False
    outs: list = []
    line = "x" * 2**20
    for _ in range(3 * MAX_OUTPUT // len(line)):
        client.output(outs, message("stream", {"name": "stdout", "text": line}), None, 0)
    client.output(outs, message("display_data", {"data": {"text/plain": line}, "metadata": {}}), None, 0)
    client.output(outs, message("error", {"ename": "ValueError", "evalue": "late", "traceback": []}), None, 0)
    kept = sum(len(o.get("text", "")) for o in outs)
    assert kept <= MAX_OUTPUT and client.kept <= MAX_OUTPUT + 100
    assert client.dropped >= 2 * MAX_OUTPUT
    assert outs[-1]["output_type"] == "error" and outs[-1]["evalue"] == "late"
