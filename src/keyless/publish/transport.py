"""The index client's HTTP/1.1 connections: httpx's transport interface over the standard
library's `http.client`, with keep-alive connections pooled per host.

Why not httpx's own transport (httpcore and h11): a publish sends ~155 small requests through
an upload session (50 legacy uploads without), and a request through httpx's client took
1.1-1.3 ms of CPU with httpcore and h11 below it, 0.7-0.8 ms with `http.client` (GETs on one
keep-alive connection to a keyless server, best of 3 x 400); the client's CPU is taken from
the server's cores on a small machine, and httpcore and h11 need not be imported at all.

httpx's client still does everything above the connection — URLs, headers, redirects,
timeouts, response decoding — so callers see the same `httpx.Response`s and the same
`httpx.TransportError`s (certificate failures say CERTIFICATE_VERIFY_FAILED, as before).

Not used when the environment names proxies: httpx's own transports speak to them
(see `keyless.publish.indexclient.new_http_client`).
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

# Idle connections kept per host (more parallel uploads than this reconnect, which is correct,
# only slower).
_MAX_IDLE = 16
_READ_CHUNK = 64 * 1024

_Key = tuple[str, str, int]


class StdlibTransport(httpx.BaseTransport):
    """Requests sent over pooled `http.client` connections; TLS set up on the first https
    request with the context `tls_context()` returns (loading the trusted CAs costs 40-110 ms,
    and a plain-http index never needs them). Thread-safe: the upload threads share it."""

    def __init__(self, tls_context: Callable[[], ssl.SSLContext]) -> None:
        self._make_tls_context = tls_context
        self._tls: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._closed = False

    # ------------------------------------------------------------------- connections

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = self._make_tls_context()
            return self._tls

    def _connection(
        self, key: _Key, timeouts: dict[str, float | None], request: httpx.Request
    ) -> http.client.HTTPConnection:
        """An idle connection to `key` the server has not closed, else a new one."""
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                kept = idle.pop()
                if _still_open(kept):
                    return kept
                kept.close()
        scheme, host, port = key
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=timeouts.get("connect"), context=self._tls_context()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeouts.get("connect"))
        try:
            connection.connect()
        except TimeoutError as exc:
            connection.close()
            raise httpx.ConnectTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:  # ssl.SSLError is one: an untrusted certificate, too
            connection.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return connection

    def _release(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < _MAX_IDLE:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in connections:
            connection.close()

    # ---------------------------------------------------------------------- requests

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        port = url.port or (443 if scheme == "https" else 80)
        key: _Key = (scheme, url.raw_host.decode("ascii"), port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        connection = self._connection(key, timeouts, request)
        try:
            response = self._exchange(connection, request, timeouts)
        except BaseException:
            connection.close()
            raise
        body = _Body(response, lambda: self._release(key, connection), connection.close, request)
        return httpx.Response(
            response.status,
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.getheaders()],
            stream=body,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": response.reason.encode("latin-1", "replace"),
            },
        )

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> http.client.HTTPResponse:
        """Send `request` on `connection` and read the answer's status and headers."""
        _set_timeout(connection, timeouts.get("write"))
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        write_failure: OSError | None = None
        try:
            connection.putrequest(
                request.method,
                request.url.raw_path.decode("ascii"),
                skip_host=True,
                skip_accept_encoding=True,
            )
            for name, value in request.headers.raw:
                connection.putheader(name, value)
            connection.endheaders()
            for chunk in _body(request):
                if chunked:
                    connection.send(b"%X\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    connection.send(chunk)
            if chunked:
                connection.send(b"0\r\n\r\n")
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:
            # The index may have answered (a 413, a 401) and closed before taking the whole
            # body: its answer says more than a broken pipe, so read it when there is one.
            write_failure = exc
        _set_timeout(connection, timeouts.get("read"))
        try:
            return connection.getresponse()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            if write_failure is not None:
                raise httpx.WriteError(str(write_failure), request=request) from write_failure
            raise _read_error(exc, request) from exc


def _set_timeout(connection: http.client.HTTPConnection, seconds: float | None) -> None:
    # Each change is a system call (two a request when the read and write timeouts are the
    # same, as they are for the index client): only when it changes.
    sock = connection.sock
    if sock is not None and sock.gettimeout() != seconds:
        sock.settimeout(seconds)


def _body(request: httpx.Request) -> Iterator[bytes]:
    stream: Any = request.stream
    for chunk in stream:
        if chunk:
            yield bytes(chunk)


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection may be reused: the server has not closed it (an idle socket
    that is readable has seen the end of the stream, or bytes nobody asked for)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _read_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    if isinstance(exc, http.client.RemoteDisconnected):
        return httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    if isinstance(exc, http.client.IncompleteRead):
        return httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body: {exc}",
            request=request,
        )
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request)
    return httpx.ReadError(str(exc) or type(exc).__name__, request=request)


class _Body(httpx.SyncByteStream):
    """An answer's body as it is read; its connection goes back to the pool once the body
    was read to its end (and the server keeps it open), else it is closed."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        release: Callable[[], None],
        discard: Callable[[], None],
        request: httpx.Request,
    ) -> None:
        self._response = response
        self._release = release
        self._discard = discard
        self._request = request
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        while True:
            try:
                chunk = response.read(_READ_CHUNK)
            except TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc) or "timed out", request=self._request) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise _read_error(exc, self._request) from exc
            if not chunk:
                break
            yield chunk

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        response = self._response
        if response.isclosed() and not response.will_close:
            self._release()  # read to its end: the connection is ready for another request
        else:
            response.close()
            self._discard()
