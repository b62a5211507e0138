"""A file's first download: read from the upstream on a thread of its own, stored and sent.

The thread reads the upstream, feeds the blob store and stores the file (`_Fetch`); the event
loop only sends what it hands over, a piece of `SEND_PIECE` bytes at a time (measured, 50 MB at
the client's 64 KiB reads through the async client cost the event loop ~0.25 CPU-s, as much as
the digests; the blocking client in a thread ~0.06). The last piece is held back until the
whole file hashed to the sha256 the upstream's page gave: bytes that do not match are not
stored and the download ends one piece short, so no client ever receives a complete tampered
file. It goes as soon as the hash matches, while the thread makes the file durable, places and
records it (0.05-0.1 s per 50 MB here, which the client no longer waits for); the response
ends once that is done, so the next request on the same connection finds the file stored.

What is fetched, from where and with which credentials, and how a stored file is recorded,
is the `Mirror`'s (`__init__.py`): this module gets an open response and a `store` to call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator

import httpx

from keyless.store.blobs import BlobStore, Digests, PendingBlob, write_all

from .refused import MirrorRefused
from .upstream import UpstreamFile

log = logging.getLogger("keyless.mirror")

# What a first download hands the event loop to send at once, and how many such pieces may
# wait for it (the memory a slow client can hold up, besides the store's own backlog).
SEND_PIECE = 1024 * 1024
PIECES_WAITING = 4


async def store_while_streaming(
    blobs: BlobStore,
    response: httpx.Response,
    found: UpstreamFile,
    name: str,
    store: Callable[[PendingBlob, Digests], None],
) -> AsyncGenerator[bytes, None]:
    """The bytes of `response` (`found` of project `name`) as they arrive, written to `blobs`
    on the way and, once they hash to `found.sha256`, stored by `store` (on the reading
    thread, which closes `response`)."""
    # Only the sha256 is checked: the upstream's page gives no other digest.
    fetch = _Fetch(
        blobs.new_writer(found.sha256, sha256_only=True),
        response,
        found,
        name,
        store,
    )
    fetch.start()
    held: bytes | None = None
    try:
        while isinstance(piece := await fetch.next_item(), bytes):
            if held is not None:
                yield held
            held = piece
        # The thread's word that the bytes hash as the page says (a mismatch raised).
        if held is not None:
            yield held
        await fetch.next_item()  # stored (or failed to be, said in the log)
    finally:
        fetch.stop()


HTTP1 = ("HTTP/1.0", "HTTP/1.1")  # what h11 speaks: a body of known length follows the headers


def _body_pieces(response: httpx.Response, size: int) -> Iterator[bytes]:
    """The body of `response` (status and headers read), raw, in pieces of `size` bytes.

    A body of known length on an HTTP/1.x connection is read straight from the connection
    (the `network_stream` httpx hands out, TLS and proxies included) in reads of up to `size`
    bytes: httpx's own reading (httpcore and h11) reads 64 KiB at a time and copies each read
    twice, ~0.1 CPU-s per 50 MB here against ~0.02 this way. Only what h11 already holds (read
    with the headers) comes through httpx: its first chunk. Should that ever leave bytes
    behind, the file would not hash to its sha256 and be refused, not stored. The connection
    is closed afterwards, never reused (h11 did not see the body end).
    Any other body (chunked, of no stated length, HTTP/2), or a connection whose stream is not
    what `_direct_read` expects, is httpx's chunks, joined.
    """
    length = response.headers.get("content-length", "")
    raw = response.iter_raw()
    try:
        read = None
        if length.isdigit() and response.http_version in HTTP1:
            read = _direct_read(response, size)
        if read is None:
            yield from _joined(raw, size)
            return
        first = next(raw, b"")
        left = int(length) - len(first)
        parts, collected = [first], len(first)
        while left > 0:
            try:
                chunk = read(min(size - collected, left))
            except Exception as exc:  # httpcore's ReadTimeout or ReadError: named in the message
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None
            if not chunk:
                raise httpx.RemoteProtocolError(
                    f"the upstream closed the connection {left} bytes before the end of the file"
                )
            parts.append(chunk)
            collected += len(chunk)
            left -= len(chunk)
            if collected >= size:
                yield b"".join(parts)
                parts, collected = [], 0
        if collected:
            yield b"".join(parts)
    finally:
        if isinstance(raw, Generator):  # closes the connection if h11 did not see the end
            raw.close()


def _direct_read(response: httpx.Response, size: int) -> Callable[[int], bytes] | None:
    """`read(n)`: up to n bytes straight off the connection `response` came on, or None when
    the stream httpx hands out is not the one httpcore 1.x gives (`network_stream`, whose
    blocking `read(max_bytes, timeout=)` may be called): another httpcore may hand out none,
    or one of another shape. Checked before anything is read from it, so the body is then
    read through httpx whole, slower but the same bytes; why is logged once, at debug."""
    # The read timeout httpx applies to its own reads (`timeout_of`: between two reads). The
    # mirror always sets one: without it, a silent upstream would hold the reads for ever.
    timeouts = response.request.extensions.get("timeout")
    timeout = timeouts.get("read") if isinstance(timeouts, dict) else None
    stream = response.extensions.get("network_stream")
    method = getattr(stream, "read", None)
    if not isinstance(timeout, int | float):
        why = "httpx's request carries no read timeout (extensions['timeout']['read'])"
    elif stream is None:
        why = "httpx hands out no network_stream"
    elif not callable(method):
        why = f"its network_stream ({type(stream).__name__}) has no read()"
    elif inspect.iscoroutinefunction(method):
        why = f"the read() of its network_stream ({type(stream).__name__}) is async"
    else:
        try:
            inspect.signature(method).bind(size, timeout=timeout)
        except (TypeError, ValueError):  # ValueError: no signature to be read
            why = (
                f"the read() of its network_stream ({type(stream).__name__}) does not take "
                "(max_bytes, timeout=)"
            )
        else:
            return lambda n: method(n, timeout=timeout)
    if why not in _said:
        _said.add(why)
        log.debug("first downloads are read through httpx's chunks (slower): %s", why)
    return None


# Why `_direct_read` could not be used, as logged: once per process and reason is enough.
_said: set[str] = set()


def _joined(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """`chunks` joined into pieces of at least `size` bytes (the last may be shorter)."""
    parts: list[bytes] = []
    collected = 0
    for chunk in chunks:
        parts.append(chunk)
        collected += len(chunk)
        if collected >= size:
            yield b"".join(parts)
            parts, collected = [], 0
    if parts:
        yield b"".join(parts)


class _Fetch:
    """An upstream file read on a thread of its own into a pending blob, its bytes handed to
    the event loop in pieces (at most `PIECES_WAITING` at a time: a slow client slows the
    reading, bounded memory); then, once every byte hashed as the page says, the digests
    (the loop may send the last piece), and `None` once `store` made the file durable,
    placed and recorded it. Bytes that do not match are refused: an error instead, nothing
    stored.

    The write is the thread's throughout: it discards the pending write at the end, whatever
    happened (the store keeps its own link to placed bytes). A client that goes away while
    the upstream is still being read (`stop`) ends the reading and nothing is stored; once
    every byte is read and checked, the file is stored whether its client stays or not.
    """

    def __init__(
        self,
        writer: PendingBlob,
        response: httpx.Response,
        found: UpstreamFile,
        name: str,
        store: Callable[[PendingBlob, Digests], None],
    ) -> None:
        self.writer = writer
        self._response = response
        self._found = found
        self._name = name
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._items: asyncio.Queue[bytes | Digests | BaseException | None] = asyncio.Queue()
        self._room = threading.Semaphore(PIECES_WAITING)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mirror-fetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def next_item(self) -> bytes | Digests | None:
        """The next bytes, the digests after the last, then None once stored; raises what
        the thread met before the digests."""
        item = await self._items.get()
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, bytes):
            self._room.release()
        return item

    def stop(self) -> None:
        """End the reading if it is not over (the client went away)."""
        self._stopping.set()

    def _run(self) -> None:
        try:
            write_all(self.writer, self._chunks())
            self._response.close()
            digests = self.writer.hashed()
            if digests.sha256 != self._found.sha256:
                log.error(
                    "refused %s from the upstream of %s: its bytes hash to %s, its page says %s",
                    self._found.filename, self._name, digests.sha256, self._found.sha256,
                )  # fmt: skip
                raise MirrorRefused(
                    f"{self._found.filename!r} does not match its upstream hash.", 502
                )
            self._post(digests)
            try:
                self._store(self.writer, digests)
            except Exception as exc:  # the client has the file already: said in the log
                log.error(
                    "%s from the upstream of %s was sent but not stored: %s: %s",
                    self._found.filename, self._name, type(exc).__name__, exc,
                )  # fmt: skip
            self._post(None)
        except _Stopped:
            pass
        except httpx.HTTPError as exc:
            with contextlib.suppress(_Stopped):
                self._post(
                    MirrorRefused(
                        f"the upstream stopped sending {self._found.filename!r} "
                        f"({type(exc).__name__}: {exc}); nothing stored.",
                        502,
                    )
                )
        except BaseException as exc:
            with contextlib.suppress(_Stopped):
                self._post(exc)
        finally:
            self._response.close()
            self.writer.discard()

    def _chunks(self) -> Iterator[bytes]:
        """The upstream's bytes for the store, each piece also handed to the loop: the same
        bytes object goes to both, and the store's write keeps a piece of `BATCH` bytes as it
        is (`b"".join` of one bytes object copies nothing)."""
        for piece in _body_pieces(self._response, SEND_PIECE):
            yield piece
            self._hand(piece)

    def _hand(self, piece: bytes) -> None:
        while not self._room.acquire(timeout=0.2):
            if self._stopping.is_set():
                raise _Stopped
        if self._stopping.is_set():
            raise _Stopped
        self._post(piece)

    def _post(self, item: bytes | Digests | BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the event loop is closed: the server is stopping
            raise _Stopped from None


class _Stopped(Exception):
    """The download was abandoned while its thread was still reading."""
