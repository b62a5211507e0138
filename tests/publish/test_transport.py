"""The index client's connections (keyless.publish.transport): the standard library's
`http.client` under httpx, kept alive per host, with the CAs and proxies users rely on."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from keyless.publish.indexclient import IndexClient, new_http_client
from tests.builders import build_wheel, write_dist
from tests.conftest import CA_VARIABLES, LiveServer

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy settings from the environment the tests run in (either spelling)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# Runs `keyless publish ARGS` in a fresh interpreter, counting the TCP connections it opens,
# and prints its exit status, the connections, and whether httpx's own transport
# (httpcore) was ever loaded.
_PUBLISH_AND_COUNT = """
import http.client, json, sys
from keyless.cli.main import main
connects = []
original = http.client.HTTPConnection.connect
def counted(self):
    connects.append(self.host)
    original(self)
http.client.HTTPConnection.connect = counted
status = main(sys.argv[1:])
print(json.dumps({"status": status, "connects": len(connects),
                  "httpcore": "httpcore" in sys.modules}))
"""


def _publish_counting(
    args: list[str], tmp_path: Path, env: dict[str, str]
) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-c", _PUBLISH_AND_COUNT, "publish", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stdout + done.stderr
    return json.loads(lines[-1]), done.stdout + done.stderr


def _release(folder: Path, name: str, wheels: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        # Different bytes each: an index refuses a file identical to one it has.
        str(write_dist(folder, *build_wheel(name, "1.0", build_tag=str(i + 1), extra_files=extra)))
        for i in range(wheels)
        for extra in [{f"data/{i}.txt": str(i).encode()}]
    ]


def _plain_env(token: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in PROXY_VARIABLES and k not in CA_VARIABLES
    }
    env.update(KEYLESS_TOKEN=token, PYTHONPATH=os.pathsep.join(sys.path))
    return env


def test_a_session_publish_keeps_a_few_connections_alive_and_never_loads_httpcore(
    server: LiveServer, tmp_path: Path
) -> None:
    """~3 requests a file through a session, over at most one connection per upload thread
    (and the main thread's): httpcore with h11 cost ~1 ms of CPU per request more."""
    files = _release(tmp_path / "dist", "conn-reuse", 6)
    token = server.token("conn-owner", "prod")
    outcome, text = _publish_counting(
        ["--repository-url", server.upload_url("prod"), "--parallel", "2", *files],
        tmp_path,
        _plain_env(token),
    )
    assert outcome["status"] == 0, text
    assert "through upload session(s) (PEP 694)" in text
    assert outcome["httpcore"] is False
    # 6 files x (create, bytes, complete) + lookups, session create and publish: > 20 requests.
    assert 1 <= outcome["connects"] <= 3, text


def test_the_ca_named_with_cert_is_trusted_over_the_standard_library_connections(
    tls_server: LiveServer, tmp_path: Path
) -> None:
    assert tls_server.tls is not None
    files = _release(tmp_path / "dist", "conn-cert", 2)
    token = tls_server.token("conn-cert-owner", "prod")
    env = _plain_env(token)
    url = tls_server.upload_url("prod")
    outcome, text = _publish_counting(
        ["--repository-url", url, "--cert", str(tls_server.tls.ca), "--no-session", *files],
        tmp_path,
        env,
    )
    assert outcome["status"] == 0, text
    assert "published: 2 uploaded" in text
    assert outcome["httpcore"] is False
    # Without it the certificate is not trusted, and the message says what to do.
    refused, text = _publish_counting(["--repository-url", url, *files], tmp_path, env)
    assert refused["status"] == 1
    assert "CERTIFICATE_VERIFY_FAILED" in text
    assert "pass its CA with --cert" in text


@pytest.fixture
def recording_proxy() -> Iterator[tuple[str, list[str]]]:
    """A forward HTTP proxy that records each request line's target and answers 404."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"message": "not here"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}", seen
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)


def test_a_proxy_from_the_environment_carries_the_requests(
    recording_proxy: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a proxy configured, requests go to it (httpx's own transports, as before)."""
    proxy_url, seen = recording_proxy
    without_proxies(monkeypatch)
    monkeypatch.setenv("http_proxy", proxy_url)
    with new_http_client(environ={}) as http:
        client = IndexClient("http://index.invalid/prod/legacy/", http=http)
        assert client.existing_entries("Demo_Pkg") == {}
    assert seen == ["http://index.invalid/prod/simple/demo-pkg/"]


@dataclass
class OneShotServer:
    """A raw HTTP/1.1 server that answers one request a connection with `answer`, then
    closes it. `requests` holds each request's bytes; `closed` is set after each close."""

    url: str
    requests: list[bytes]
    closed: threading.Event


@contextlib.contextmanager
def one_shot_server(
    request_ends: Callable[[bytes], bool], answer: bytes
) -> Iterator[OneShotServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    served = OneShotServer(f"http://127.0.0.1:{listener.getsockname()[1]}", [], threading.Event())

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                received = b""
                while not request_ends(received):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    received += chunk
                served.requests.append(received)
                conn.sendall(answer)
            served.closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def closing_server() -> Iterator[OneShotServer]:
    """Answers each request 200 "ok" on a keep-alive response, then closes the connection
    (as a server whose keep-alive timeout ran out does)."""
    with one_shot_server(
        lambda received: b"\r\n\r\n" in received,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ) as served:
        yield served


def test_an_idle_connection_the_server_closed_is_not_reused(
    closing_server: OneShotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, closed = closing_server.url, closing_server.closed
    without_proxies(monkeypatch)
    with new_http_client(environ={}) as http:
        for _ in range(3):
            closed.clear()
            response = http.get(f"{url}/")
            assert (response.status_code, response.text) == (200, "ok")
            assert closed.wait(5)


def test_a_kept_alive_connection_sets_its_socket_timeout_only_when_it_changes(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each change is a system call: with equal read and write timeouts, one at the connect
    and one at the first request, not two more for every request."""
    without_proxies(monkeypatch)
    calls: list[float | None] = []
    settimeout = socket.socket.settimeout

    def counted(self: socket.socket, value: float | None) -> None:
        calls.append(value)
        settimeout(self, value)

    monkeypatch.setattr(socket.socket, "settimeout", counted)
    with new_http_client(environ={}, timeout=30) as http:
        for _ in range(5):
            assert http.get(f"{server.url}/_/health").status_code == 200
    assert calls == [15.0, 30.0]


@pytest.fixture
def recording_server() -> Iterator[OneShotServer]:
    """Takes one request a connection (headers and a chunked body), records its bytes and
    answers 200 "ok" with Connection: close."""
    with one_shot_server(
        lambda received: received.endswith(b"\r\n0\r\n\r\n"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ) as served:
        yield served


def test_a_body_of_unknown_length_is_sent_chunked(
    recording_server: OneShotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, requests = recording_server.url, recording_server.requests
    without_proxies(monkeypatch)

    def parts() -> Iterator[bytes]:
        yield b"hello, "
        yield b""  # an empty piece must not end the body early
        yield b"index"

    with new_http_client(environ={}) as http:
        response = http.post(f"{url}/upload", content=parts())
        assert (response.status_code, response.text) == (200, "ok")
    [request] = requests
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /upload HTTP/1.1\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert body == b"7\r\nhello, \r\n5\r\nindex\r\n0\r\n\r\n"
