"""Executing notebooks in a fresh kernel: nbclient, with one lost wake-up fixed.

``make notebooks``, the timing script, the opt-in test and the grader all run notebooks
through :class:`NotebookClient`. It is nbclient's client with one change, found while
measuring why lesson 03 sometimes sat idle at its widget cell until the 600 s cell
timeout and then went on without an error:

- while a cell runs, nbclient's stand-in for an ``ipywidgets.Output`` widget answers each
  output the cell sends into that widget with a ``comm_msg`` on the *shell* socket
  (``nbclient/output_widget.py``); meanwhile the same socket is being polled, through
  ``zmq.asyncio``, for the cell's ``execute_reply``;
- ``jupyter_client``'s ``Session.send`` writes through a plain (synchronous) view of that
  asyncio socket, and any operation on a ZeroMQ socket consumes its edge-triggered
  "readable" signal. If the reply arrived just before the send, the pending poll is never
  woken: it returns only at its timeout, finds the reply there, and the run goes on;
- pyzmq's asyncio socket re-checks after its *own* sends (``_schedule_remaining_events``);
  the synchronous view skips that. So this client re-checks after every shell send.

Measured with a minimal notebook (an ``interact`` whose function draws and prints into
its Output widget while the cell runs): 3 of 30 runs hung, 16 of 50 with a larger burst of
output, and all 30 when the client was slowed down as on a busy machine; with the re-check,
0 of 160. Lesson 03's old widget cell hung the same way. ``tests/test_notebooks_module.py`` reproduces the
lost wake-up deterministically on two ZeroMQ sockets. The lessons also avoid the
situation: their widgets compute nothing until a button is pressed.

Example:
    >>> import nbformat
    >>> notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    >>> _ = NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    >>> notebook.cells[0].outputs[0]["text"]
    '42\\n'
"""

from __future__ import annotations

from typing import Any

import nbclient
from nbclient.util import run_sync


def rearm_after_send(channel: Any) -> None:
    """Make ``channel.send`` re-check its socket for messages that arrived meanwhile.

    ``channel`` is a jupyter_client ``ZMQSocketChannel`` over a ``zmq.asyncio`` socket.
    Without an asyncio socket (nothing is waiting on it then), the send is left as it is.

    Example:
        >>> class Channel:  # anything with .send and .socket
        ...     socket = None
        ...     def send(self, msg): print("sent", msg)
        >>> channel = Channel(); rearm_after_send(channel); channel.send("m")
        sent m
    """
    send = channel.send
    recheck = getattr(channel.socket, "_schedule_remaining_events", None)  # pyzmq's asyncio socket
    if recheck is None:
        return

    def send_then_recheck(msg: dict) -> None:
        send(msg)
        recheck()  # a reply that came in before this send must still wake the pending poll

    channel.send = send_then_recheck


class NotebookClient(nbclient.NotebookClient):
    """``nbclient.NotebookClient`` whose shell channel re-checks for replies after each send."""

    async def async_start_new_kernel_client(self) -> Any:
        kernel_client = await super().async_start_new_kernel_client()
        rearm_after_send(kernel_client.shell_channel)
        return kernel_client

    start_new_kernel_client = run_sync(async_start_new_kernel_client)  # the synchronous twin, too
