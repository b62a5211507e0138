"""`serve(app, settings)`: runs the index under uvicorn, with keyless's limits on connections.

uvicorn alone lets one client hold a connection, its buffers and a descriptor for as long
as it likes: a connection that never sends a byte is never closed, nothing bounds how long
a request's head or body may take, its connection limit answers 503 but keeps every
descriptor, and after an early answer (an upload refused for a bad token) it reads and
discards the rest of the body, however large. `KeylessProtocol`, a subclass of uvicorn's
httptools protocol, adds what `[limits]` promises (see `LimitsSettings`):

- the head: a request's line and headers must arrive whole within `header_timeout` of the
  connection opening or of the previous response, and be at most `MAX_HEAD` bytes;
- the body: no pause longer than `body_timeout`, and at least `min_body_rate` bytes per
  second over each `body_timeout` window, while keyless is reading it;
- the response: a client that stops reading it (our send buffer stays full) for
  `body_timeout` is closed, instead of holding its connection and request forever;
- connections: at most `max_connections`. A new one above that takes the place of the
  oldest idle one (connected, no request in progress), or, when none is idle, is answered
  503 and closed at once, so its descriptor is free again;
- an early answer (sent while the request body is still arriving, like a refused upload)
  ends the connection: we shut down our side after it and read on, discarding, for at most
  `LINGER_SECONDS` and `LINGER_BYTES`, so a client still sending can read it (`_linger`).

A request that breaks a limit gets a short 408/431 when it can still read one, and is
closed; the application sees `http.disconnect`, so an upload's temp file is removed.

httptools comes with `uvicorn[standard]`, which keyless requires: there is no fallback to
uvicorn's pure-Python h11 protocol, which would silently serve without these limits.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from dataclasses import replace
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from keyless.config import LimitsSettings, Settings
from keyless.index.reason import install as install_reasons

# A request's line and headers together; httptools itself has no bound.
MAX_HEAD = 64 * 1024
# After an early answer: how long and how much of the rest of the body we still read.
# Enough for a client that is nearly done sending to finish and read the answer; a client
# with more to send gets a reset, after which twine and uv still print the answer (Linux).
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
# Descriptors a connection may hold: its socket and, while it uploads, the temp file.
DESCRIPTORS_PER_CONNECTION = 2
# Descriptors kept for the rest: the listening socket, logs, the database as each worker
# thread opens it (a server measured 17 at start, 51 after 20 uploads at once).
RESERVED_DESCRIPTORS = 256
# Timers may fire this early (the event loop's clock resolution).
SLACK = 0.01
# How long a short answer still in our send buffer has to reach a client we close on.
CLOSE_GRACE = 2.0


def _answer(status: str, message: str) -> bytes:
    body = f"{status}: {message}\n".encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


BUSY = _answer("503 Service Unavailable", "too many connections, try again shortly")
HEAD_TOO_SLOW = _answer("408 Request Timeout", "the request headers did not arrive in time")
HEAD_TOO_LARGE = _answer("431 Request Header Fields Too Large", "request headers too large")


class KeylessProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, held to `limits` (see the module's docstring).

    The simple pages are the hot path: a whole GET usually arrives in one `data_received`
    call and needs no timer, so that path adds a few attribute checks and nothing more.
    """

    limits: ClassVar[LimitsSettings]
    # Connections with no request in progress, oldest first: the ones a new connection
    # may replace when all `max_connections` are taken. One server per class (`serve`).
    idle: ClassVar[dict[KeylessProtocol, None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = False
        self.head_since = 0.0  # when the connection opened or the last response ended
        self.head_bytes = 0  # of a request head not yet complete
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_last = 0.0  # when the last body bytes arrived
        self.window_end = 0.0  # end of the current `body_timeout` window
        self.window_bytes = 0  # body bytes received in it
        self.send_timer: asyncio.TimerHandle | None = None
        self.lingering = False
        self.linger_left = 0
        # The request whose answer says `connection: close` if it comes early, and whether
        # one did (see `_announce_close_on_early_answer`).
        self.announcing: RequestResponseCycle | None = None
        self.close_announced = False

    # Connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections and not self._evict_idle():
            self.refused = True
            self.transport = transport
            transport.write(BUSY)
            self._shut()
            return
        super().connection_made(transport)
        self._now_idle()
        deadline = self.head_since + self.limits.header_timeout
        self.head_timer = self.loop.call_at(deadline, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.idle.pop(self, None)
        self._cancel_timers()
        super().connection_lost(exc)

    def _now_idle(self) -> None:
        self.idle[self] = None
        self.head_since = self.loop.time()

    def _evict_idle(self) -> bool:
        """Close the connection idle for longest, to make room; False if none is idle."""
        for oldest in self.idle:
            del self.idle[oldest]
            oldest._shut()
            return True
        return False

    def _cancel_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer, self.send_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = self.send_timer = None

    def _close(self, answer: bytes = b"") -> None:
        """Close now, after `answer` if any; the application sees the client gone."""
        if self.cycle is not None and not self.cycle.response_complete:
            if self.cycle.response_started:
                answer = b""  # the client is in the middle of a response: cut it
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._cancel_timers()
        if answer and not self.transport.is_closing():
            self.transport.write(answer)
        self._shut()

    def _shut(self) -> None:
        """Close the connection, and free its descriptor soon, whatever the client does.

        A short answer still in the send buffer gets `CLOSE_GRACE` seconds. Over TLS,
        close() would also wait up to 30 s for the client's close_notify (reading all it
        sends meanwhile); abort() does not, and after a flushed answer loses nothing.
        """
        transport = self.transport
        if transport.get_write_buffer_size():
            transport.close()
            self.loop.call_later(CLOSE_GRACE, transport.abort)
        else:
            transport.abort()

    def timeout_keep_alive_handler(self) -> None:
        self._shut()  # an idle connection: nothing to flush

    # Bytes in and out

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._discard(len(data))
            return
        self.idle.pop(self, None)
        super().data_received(data)
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            # No new request started: its head is not complete yet.
            if self.transport.is_closing():
                return
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD:
                self._close(HEAD_TOO_LARGE)
            elif self.head_timer is None:
                deadline = self.head_since + self.limits.header_timeout
                self.head_timer = self.loop.call_at(deadline, self._head_late)
            return
        # A request is in progress: its head is complete; is its body?
        self.head_bytes = 0
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        if cycle.more_body and self.body_timer is None and not self.transport.is_closing():
            if cycle is not self.announcing:
                self._announce_close_on_early_answer(cycle)
            self._start_body_window()

    def on_body(self, body: bytes) -> None:
        self.body_last = self.loop.time()
        self.window_bytes += len(body)
        super().on_body(body)

    def on_response_complete(self) -> None:
        if self.lingering:
            return
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        if self.cycle.more_body and not self.transport.is_closing():
            self._linger()  # answered before the whole body came
            return
        if self.close_announced:  # the rest of the body came while the answer was sent
            self._shut()
            return
        waiting = bool(self.pipeline)  # a whole next request is queued
        super().on_response_complete()
        if not waiting and not self.transport.is_closing():
            self._now_idle()

    def pause_writing(self) -> None:
        super().pause_writing()
        # The client is not reading what we send: it has `body_timeout` to resume.
        if self.send_timer is None:
            self.send_timer = self.loop.call_later(self.limits.body_timeout, self._close)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    # Deadlines

    def _head_late(self) -> None:
        self.head_timer = None
        # A connection that sent nothing is simply closed (a browser's spare connection).
        self._close(HEAD_TOO_SLOW if self.head_bytes else b"")

    def _start_body_window(self) -> None:
        now = self.loop.time()
        self.body_last = now
        self.window_end = now + self.limits.body_timeout
        self.window_bytes = 0
        self.body_timer = self.loop.call_at(self.window_end, self._check_body)

    def _check_body(self) -> None:
        self.body_timer = None
        cycle = self.cycle
        if not cycle.more_body or cycle.response_complete:
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            # keyless is not reading (the application is busy, or has not asked for the
            # body yet): the client is not late. Start a new window.
            self._start_body_window()
            return
        now = self.loop.time() + SLACK
        timeout = self.limits.body_timeout
        if now - self.body_last >= timeout:
            self._close(_answer("408 Request Timeout", f"no request body for {timeout:g} s"))
            return
        if now >= self.window_end:
            if self.window_bytes < self.limits.min_body_rate * timeout:
                rate = self.limits.min_body_rate
                self._close(_answer("408 Request Timeout", f"request body slower than {rate} B/s"))
                return
            self.window_end = now + timeout
            self.window_bytes = 0
        when = min(self.window_end, self.body_last + timeout)
        self.body_timer = self.loop.call_at(when, self._check_body)

    # An early answer

    def _announce_close_on_early_answer(self, cycle: RequestResponseCycle) -> None:
        """Make an answer that starts before the whole body came say `connection: close`.

        The connection ends after such an answer (`_linger`). Without the header a client
        that read the whole answer puts the connection back in its pool and sends its next
        request into a socket that discards it and then closes ("server disconnected
        without sending a response"). uvicorn writes the header for a cycle that is not
        keep-alive, but would then also close the transport itself once the answer is
        sent, before `_linger` could run: so the cycle is not keep-alive only while its
        head is written. Done for requests whose body spans several reads, before their
        application task starts (it runs after this callback), so `send` is ours.
        """
        self.announcing = cycle
        send = cycle.send

        async def send_announcing_close(message: Any) -> None:
            if message["type"] != "http.response.start" or not cycle.more_body:
                await send(message)
                return
            cycle.keep_alive = False
            try:
                await send(message)
            finally:
                cycle.keep_alive = True
            self.close_announced = True

        cycle.send = send_announcing_close  # type: ignore[method-assign]

    def _linger(self) -> None:
        """Close after an answer sent while the request body is still arriving.

        Closing a socket with unread bytes in it makes the kernel send a reset. A client
        still sending reads the answer only once sending fails (urllib3, which twine uses)
        or is done; Linux keeps the answer readable after the reset (twine and uv print it
        even without lingering), but a system that drops received data on a reset would
        lose it. So we shut down our side (the client reads the answer, then end of
        stream), go on reading and discarding for a short, bounded while — long enough for
        a small upload to finish, so that no reset happens at all — and close.
        """
        self.lingering = True
        self._cancel_timers()
        if self.transport.can_write_eof():  # TLS cannot half-close
            self.transport.write_eof()
        self.flow.resume_reading()
        self.linger_left = LINGER_BYTES
        self.loop.call_later(LINGER_SECONDS, self._shut)

    def _discard(self, size: int) -> None:
        self.linger_left -= size
        if self.linger_left <= 0:
            self._shut()


def connection_limit(wanted: int) -> int:
    """How many connections the descriptor limit allows, raising its soft limit if needed.

    Each connection takes descriptors; when they run out, accept() fails and every client,
    health checks too, waits. So the soft limit is raised to what `wanted` connections need
    (at most the hard limit), and when even the hard limit is too low the number of
    connections is lowered to fit, with a warning.
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit to manage
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted * DESCRIPTORS_PER_CONNECTION + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    allowed = max((soft - RESERVED_DESCRIPTORS) // DESCRIPTORS_PER_CONNECTION, 1)
    print(
        f"warning: the descriptor limit ({soft}, hard limit {hard}) allows {allowed} "
        f"connections, not max-connections = {wanted}; raise it (ulimit -n, or "
        "LimitNOFILE= in a systemd unit) or lower max-connections",
        file=sys.stderr,
        flush=True,
    )
    return allowed


def protocol_for(limits: LimitsSettings) -> type[KeylessProtocol]:
    """A KeylessProtocol class held to `limits`, with its own list of idle connections."""
    return type("KeylessProtocol", (KeylessProtocol,), {"limits": limits, "idle": {}})


def _freeze_start_up_objects() -> None:
    """Leave what start-up made (modules, classes, functions, the app: ~85,000 objects) out of
    every later garbage collection.

    They live as long as the process, but the collector's oldest generation scanned them all
    whenever enough new objects had survived, 50-190 ms of CPU each time here (most of it
    while requests waited), e.g. during the ~150 requests of a 50-file upload session. Frozen,
    a full collection scans only what requests left behind. Collected first, so that start-up
    garbage is freed rather than kept.
    """
    gc.collect()
    gc.freeze()


def serve(app: object, settings: Settings, listen_fd: int | None = None) -> None:
    """Serve `app` on the address in `settings` until interrupted, or on the listening socket
    `listen_fd` (a worker of `keyless serve --workers N`, see supervisor.py)."""
    install_reasons()
    limits = settings.limits
    limits = replace(limits, max_connections=connection_limit(limits.max_connections))
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        http=protocol_for(limits),
        ws="none",  # keyless has no WebSocket routes
        timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
        access_log=False,  # ours (keyless.access) logs without query strings or headers
        log_level="warning",
        server_header=False,
    )
    server = uvicorn.Server(config)
    _freeze_start_up_objects()
    if listen_fd is None:
        server.run()
    else:
        server.run(sockets=[socket.socket(fileno=listen_fd)])
    if not server.started:  # as uvicorn.run: a server that never started is a failure
        sys.exit(3)
