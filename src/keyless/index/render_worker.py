"""A description render worker, started by keyless.index.rendering.RenderPool.

It talks to the server over the socket FD, one message each way per description
(multiprocessing's framing around JSON, not pickle: what a process that has just run a
renderer on hostile input sends back is parsed as data), caps its own address space at
MEMORY bytes and lowers its CPU priority.

It imports only keyless.dists and readme_renderer — not the server — and it is its own
program (not a multiprocessing child), so nothing of the server's start-up runs again here.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from keyless.dists.readme import render_description

READY = b"ready"


def encode(value: object) -> bytes:
    # surrogatepass: a description may hold lone surrogates (undecodable upload bytes).
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def decode(message: bytes) -> Any:
    return json.loads(message.decode("utf-8", "surrogatepass"))


def serve(conn: Connection, memory: int, backstop: float) -> None:
    """Import the renderers, cap this process, then render until the server goes away."""
    # Ctrl-C in a terminal reaches the whole process group; the server decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(10)  # rendering yields the CPU to the server's own requests
    render_description("warm up", None)  # the imports, before a request waits on them
    render_description("# warm up", "text/markdown")
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a renderer that aborts leaves no core
    except (ValueError, OSError) as exc:  # a platform without these limits: render uncapped
        print(f"keyless render worker: no memory cap on this system ({exc})", file=sys.stderr)
    conn.send_bytes(READY)
    while True:
        try:
            text, declared = decode(conn.recv_bytes())
        except EOFError:
            return  # the server is gone (also when it was killed): nothing is left behind
        # Should the server die mid-render, SIGALRM's default action ends this process.
        signal.setitimer(signal.ITIMER_REAL, backstop)
        html, failed = None, ""
        try:
            html = render_description(text, declared)
        except Exception as exc:  # noted here, handled below: no allocation in this handler
            failed = "MemoryError" if _caused_by_memory(exc) else type(exc).__name__
        signal.setitimer(signal.ITIMER_REAL, 0)
        # Out of the handler, the failed render's frames, and the memory they held, are freed.
        kind = "html"
        if failed == "MemoryError" or (failed and _peak_address_space() >= memory * 0.9):
            kind = "memory"  # the cap (C code failing an allocation may raise a bare SystemError)
        elif failed:  # a renderer bug on odd input: the description does not render
            # The type only: the message may quote the (hostile, large) description.
            print(f"keyless render worker: readme_renderer raised {failed}", file=sys.stderr)
        try:
            message = encode([kind, html])
        except MemoryError:  # the HTML itself does not fit within the cap
            kind, html = "memory", None
            message = encode([kind, html])
        conn.send_bytes(message)
        if kind == "memory":
            return  # a heap that hit its cap is not worth keeping; the server starts another


def _caused_by_memory(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _peak_address_space() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def main(argv: list[str]) -> None:
    """`FD MEMORY BACKSTOP`: the socket to the server, the address-space cap in bytes, and
    the seconds after which a render ends this process should the server not kill it."""
    fd, memory, backstop = argv
    serve(Connection(int(fd)), int(memory), float(backstop))
