"""A description render worker: `python -m keyless.index.render_worker FD MEMORY BACKSTOP`.

Started by keyless.index.rendering.RenderPool, never by hand. It talks to the server over the
socket FD (multiprocessing's framing: requests `(text, declared content type)`, replies
`(kind, html)`), caps its own address space at MEMORY bytes and lowers its CPU priority.

It imports only keyless.dists and readme_renderer — not the server — and it is its own
program (not a multiprocessing child), so nothing of the server's start-up runs again here.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from multiprocessing.connection import Connection

from keyless.dists.readme import render_description

READY = "ready"


def serve(conn: Connection, memory: int, backstop: float) -> None:
    """Import the renderers, cap this process, then render until the server goes away."""
    # Ctrl-C in a terminal reaches the whole process group; the server decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(10)  # rendering yields the CPU to the server's own requests
    render_description("warm up", None)  # the imports, before a request waits on them
    render_description("# warm up", "text/markdown")
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a renderer that aborts leaves no core
    conn.send(READY)
    while True:
        try:
            text, declared = conn.recv()
        except EOFError:
            return  # the server is gone (also when it was killed): nothing is left behind
        # Should the server die mid-render, SIGALRM's default action ends this process.
        signal.setitimer(signal.ITIMER_REAL, backstop)
        reply: tuple[str, str | None]
        try:
            reply = ("html", render_description(text, declared))
        except MemoryError:
            reply = ("memory", None)
        except Exception:  # a renderer bug on odd input: the description does not render
            reply = ("html", None)
        signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send(reply)
        if reply[0] == "memory":
            return  # a heap that hit its cap is not worth keeping; the server starts another


if __name__ == "__main__":
    fd, memory, backstop = sys.argv[1:4]
    serve(Connection(int(fd)), int(memory), float(backstop))
