"""Descriptions (READMEs) rendered in worker processes, bounded in size, time and memory.

The server renders a description when it is uploaded (PyPI refuses one that does not render)
and when its project page is shown. readme_renderer holds the GIL while it works, and some
inputs are quadratic or huge: 100 KB of repeated Markdown headings took 20 s, 10 MB of
reStructuredText 164 s and 4 GB, and while the server rendered, no other request was answered.
So:

- a description longer than `max-description-size` is refused before anything renders it;
- rendering runs in `render-workers` long-lived processes (spawned once: a process costs a
  few hundred milliseconds of imports, an upload a few milliseconds), each under an
  address-space cap of `render-memory` and at a lower CPU priority than the server;
- a worker that has not answered within `render-timeout` is killed and replaced, and so is
  one that died; the upload is refused saying which;
- outcomes are cached by content, so the README of a release's twenty wheels, or of a page
  viewed a thousand times, renders once, and a refused one is refused at once when repeated.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import keyless
from keyless.dists.readme import plain_html, render_failure

from .errors import Refused
from .render_worker import READY, decode, encode

log = logging.getLogger("keyless.rendering")

MIB = 1024 * 1024
# How long a new worker may take to import the renderers before the request waiting for it
# is refused: only a broken installation or a machine on its knees takes this long.
STARTUP_TIMEOUT = 30.0
# Rendered HTML kept in memory, keyed by the description's content.
CACHE_SIZE = 32 * MIB
# Where this keyless comes from: the workers run the same code, however the server was started
# (put first on their path only when it is not already on it, so it never shadows the stdlib).
_SOURCE = str(Path(keyless.__file__).resolve().parent.parent)
_BOOT = """import sys
if sys.argv[1] not in sys.path:
    sys.path.insert(0, sys.argv[1])
from keyless.index.render_worker import main
main(sys.argv[2:])
"""


class RenderRefused(Refused):
    """A description the server will not (or could not) render; the message says what to do."""


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    ready: bool = False  # said it has imported the renderers


class RenderPool:
    """Long-lived render worker processes, each used by one request at a time.

    `render` is blocking (call it on a worker thread): it waits for a free worker, at most
    twice `timeout` seconds, then gives it `timeout` seconds to answer.
    """

    def __init__(self, workers: int, timeout: float, memory: int) -> None:
        self.timeout = timeout
        self.memory = memory
        self._size = workers
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Spawn the workers (they import in the background). Idempotent."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        atexit.register(self.close)  # should the server exit without its shutdown running
        for _ in range(self._size):
            self._idle.put(self._spawn())

    def close(self) -> None:
        """Stop every worker, busy or idle, and wait for them to exit."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        atexit.unregister(self.close)
        for worker in workers:
            self._stop(worker)

    def render(self, text: str, declared: str | None) -> str | None:
        """Sanitized HTML, or None when the text does not render as `declared`.

        Raises RenderRefused when it could not be rendered within the deadline or the memory
        cap, or when no worker became free in time.
        """
        self.start()
        worker = self._checkout()
        try:
            worker.conn.send_bytes(encode([text, declared]))
            if not worker.conn.poll(self.timeout):
                self._replace(worker)
                raise RenderRefused(
                    f"The description failed to render within {_seconds(self.timeout)}, "
                    "the limit on this server. Shorten or simplify it (very many headings "
                    "or a very long document take long to render) and upload again."
                )
            kind, html = _reply(worker.conn.recv_bytes())
        except (EOFError, OSError):
            self._replace(worker)
            raise RenderRefused(
                "The description failed to render: the renderer stopped while rendering it "
                f"(it may need more than {self.memory // MIB} MiB of memory, the limit on this "
                "server). Shorten or simplify it and upload again."
            ) from None
        if kind == "memory":
            self._replace(worker)
            raise RenderRefused(
                "The description failed to render within "
                f"{self.memory // MIB} MiB of memory, the limit on this server. Shorten or "
                "simplify it and upload again."
            )
        self._idle.put(worker)
        return html

    def _checkout(self) -> _Worker:
        """A free worker that has started.

        Waits for one at most twice the deadline: a worker busy when we arrive is free (or
        killed and replaced) within one deadline, and the second is a margin for that.
        """
        waited_until = time.monotonic() + 2 * self.timeout
        while True:
            try:
                worker = self._idle.get(timeout=max(0.0, waited_until - time.monotonic()))
            except queue.Empty:
                raise RenderRefused(
                    "The server is busy rendering other descriptions; upload again in a minute.",
                    status=503,
                ) from None
            if not worker.ready:
                return self._started_or_refused(worker)
            if worker.process.poll() is None:
                return worker
            self._replace(worker)  # died while idle (killed from outside): take another

    def _started_or_refused(self, worker: _Worker) -> _Worker:
        """`worker` once it has imported the renderers; RenderRefused if it never does."""
        try:
            if worker.conn.poll(STARTUP_TIMEOUT) and worker.conn.recv_bytes() == READY:
                worker.ready = True
                return worker
        except (EOFError, OSError):
            pass
        log.error("a description render worker did not start (exit code %s)", worker.process.poll())
        self._replace(worker)
        raise RenderRefused(
            "The server's description renderer is not running; the server's log says why.",
            status=503,
        )

    def _spawn(self) -> _Worker:
        # A program of its own, not a fork (which would copy the server's threads and locks)
        # nor a multiprocessing child (which would run the server's main module again).
        ours, theirs = socket.socketpair()
        backstop = self.timeout + 10  # the worker's own deadline, should the server be gone
        arguments = [_SOURCE, str(theirs.fileno()), str(self.memory), str(backstop)]
        command = [sys.executable, "-c", _BOOT, *arguments]
        with theirs:
            process = subprocess.Popen(
                command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
            )
        worker = _Worker(process, Connection(ours.detach()))
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        """Kill `worker` and put a new one in its place (none once the pool is closed)."""
        with self._lock:
            self._all.discard(worker)
            closed = self._closed
        self._stop(worker)
        if not closed:
            self._idle.put(self._spawn())

    @staticmethod
    def _stop(worker: _Worker) -> None:
        worker.process.kill()
        worker.process.wait()
        worker.conn.close()


def _reply(message: bytes) -> tuple[str, str | None]:
    """A worker's answer: ("html", HTML or None) or ("memory", None). Checked, not trusted:
    the worker has just run a renderer on hostile input."""
    try:
        kind, html = decode(message)
    except ValueError:
        raise OSError("a render worker sent something that is not an answer") from None
    if kind not in ("html", "memory") or not (html is None or isinstance(html, str)):
        raise OSError("a render worker sent something that is not an answer")
    return kind, html


def _seconds(value: float) -> str:
    return "1 second" if value == 1 else f"{value:g} seconds"


Outcome = str | None | RenderRefused  # HTML, "does not render", or why it was refused


class Descriptions:
    """The descriptions the server renders: the size limit, the worker pool and a cache."""

    def __init__(self, pool: RenderPool, max_size: int, cache_size: int = CACHE_SIZE) -> None:
        self.pool = pool
        self.max_size = max_size
        self._cache: OrderedDict[bytes, tuple[Outcome, int]] = OrderedDict()
        self._cache_size = cache_size
        self._cached = 0
        self._rendering: dict[bytes, Future[Outcome]] = {}
        self._lock = threading.Lock()

    def check(self, text: str, declared: str | None) -> None:
        """For an upload: raises RenderRefused unless `text` renders as `declared` in time."""
        size = _size(text)
        if size > self.max_size:
            raise RenderRefused(
                f"The description is {_amount(size)}; this server accepts descriptions of at "
                f"most {_amount(self.max_size)}. Shorten the README (a changelog or API "
                "reference belongs in the documentation) and rebuild the distribution."
            )
        outcome = self._render(text, declared)
        if isinstance(outcome, RenderRefused):
            raise RenderRefused(outcome.message, outcome.status)
        if outcome is None:
            raise RenderRefused(render_failure(declared))

    def html(self, text: str, declared: str | None) -> str:
        """For a page: the description as HTML, or escaped text when it does not render,
        would not render in time, or is over the size limit. Never raises."""
        if _size(text) > self.max_size:
            return plain_html(text)
        try:
            outcome = self._render(text, declared)
        except RenderRefused:
            return plain_html(text)
        return outcome if isinstance(outcome, str) else plain_html(text)

    def _render(self, text: str, declared: str | None) -> Outcome:
        key = hashlib.sha256(f"{declared or ''}\n{text}".encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key][0]
            # The same description asked for again while it renders (a release's wheels
            # uploaded in parallel) waits for that rendering instead of taking another worker.
            rendering = self._rendering.get(key)
            if rendering is None:
                self._rendering[key] = Future()
        if rendering is not None:
            try:
                return rendering.result()  # bounded: the rendering it waits for is
            except RenderRefused as exc:  # one exception object is not raised in two threads
                raise RenderRefused(exc.message, exc.status) from None
        try:
            outcome = self._render_now(text, declared)
        except BaseException as exc:  # whatever happens, no waiter is left waiting
            self._finish(key).set_exception(exc)
            raise
        self._remember(key, outcome)
        self._finish(key).set_result(outcome)
        return outcome

    def _render_now(self, text: str, declared: str | None) -> Outcome:
        try:
            return self.pool.render(text, declared)
        except RenderRefused as exc:
            if exc.status >= 500:
                raise  # about the server, not the description: not remembered
            return exc

    def _finish(self, key: bytes) -> Future[Outcome]:
        with self._lock:
            return self._rendering.pop(key)

    def _remember(self, key: bytes, outcome: Outcome) -> None:
        cost = 200 + (len(outcome) if isinstance(outcome, str) else 0)
        if cost > self._cache_size:
            return
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = (outcome, cost)
            self._cached += cost
            while self._cached > self._cache_size:
                _, (_, freed) = self._cache.popitem(last=False)
                self._cached -= freed


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _amount(size: int) -> str:
    if size >= MIB:
        return f"{size / MIB:.1f} MiB ({size:,} bytes)"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB ({size:,} bytes)"
    return f"{size:,} bytes"
