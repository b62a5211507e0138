"""Slow, idle and refused clients cannot hold the server's time, descriptors or memory.

Against live servers with small `[limits]`: clients that trickle a request's head or body are
closed on time (and a stalled upload leaves no temp file), connections beyond
`max-connections` never starve the others of descriptors, memory returns to its baseline
once slow uploads are gone, and an upload refused for its token is answered to twine and uv
without the server reading the rest of the file.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import resource
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.builders import build_wheel
from tests.conftest import SERVER_CONFIG, LiveServer, client_env, start_server, stop_server

from .sessions_api import open_session, post
from .uploading import upload

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MIN_BODY_RATE = 1024
MAX_CONNECTIONS = 50
# How late a deadline may be met on a loaded two-core machine.
MARGIN = 2.0
MIB = 1024 * 1024
BOUNDARY = "keyless-test-boundary"
BAD_TOKEN = "Invalid or non-existent authentication information."


def limits(header_timeout: float) -> str:
    return SERVER_CONFIG + (
        f"\n[limits]\nheader-timeout = {header_timeout}\nbody-timeout = {BODY_TIMEOUT}\n"
        f"min-body-rate = {MIN_BODY_RATE}\nmax-connections = {MAX_CONNECTIONS}\n"
    )


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("limited"), config_text=limits(HEADER_TIMEOUT))
    yield live
    stop_server(live)


def connect(server: LiveServer) -> socket.socket:
    host, port = server.url.split("://")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    if server.tls is None:
        return sock
    context = ssl.create_default_context(cafile=str(server.tls.ca))
    return context.wrap_socket(sock, server_hostname=host)


def closed_by_server(sock: socket.socket, wait: float = 0.0) -> bytes | None:
    """What the server sent before closing `sock`, or None if still open after `wait` s."""
    sock.settimeout(wait) if wait else sock.setblocking(False)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (BlockingIOError, TimeoutError):
        return None
    except ConnectionResetError:
        pass
    return received


def trickle_until_closed(sock: socket.socket, data: bytes, interval: float, limit: float) -> float:
    """Send `data` a byte per `interval` until the server closes; seconds taken (≤ limit)."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > limit:
            break
        try:
            sock.send(bytes([byte]))
        except OSError:  # reset after the server closed
            break
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            break
    return time.monotonic() - started


def upload_head(server: LiveServer, token: str, length: int) -> bytes:
    """An upload's head and the start of its body, up to a file of `length` bytes."""
    preamble = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
        'filename="slow_demo-1.0-py3-none-any.whl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        f"POST /prod/legacy/ HTTP/1.1\r\nHost: {server.url.split('://')[1]}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(preamble) + length}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode() + preamble


def test_a_head_sent_slowly_is_closed_after_the_header_timeout(limited: LiveServer) -> None:
    head = b"GET /_/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100 + b"\r\n\r\n"
    with connect(limited) as slow, connect(limited) as silent:
        taken = trickle_until_closed(slow, head, 0.3, HEADER_TIMEOUT + MARGIN + 5)
        assert taken < HEADER_TIMEOUT + MARGIN
        answer = closed_by_server(slow, wait=1)
        assert answer is not None
        assert answer.startswith(b"HTTP/1.1 408 ")
        # A connection that sent nothing at all is closed too, by then, without an answer.
        assert closed_by_server(silent, wait=1) == b""


def test_an_endless_head_is_refused(limited: LiveServer) -> None:
    with connect(limited) as sock:
        sock.sendall(b"GET /_/health HTTP/1.1\r\nX-Padding: " + b"a" * (128 * 1024))
        answer = closed_by_server(sock, wait=HEADER_TIMEOUT / 2)
        assert answer is not None
        assert answer.startswith(b"HTTP/1.1 431 ")


@pytest.mark.local_only  # watches the folder's temp files
def test_a_body_sent_slowly_is_closed_and_its_temp_file_removed(limited: LiveServer) -> None:
    token = limited.token("slow-owner", "prod")
    tmp = limited.data_dir / "blobs" / "tmp"
    with connect(limited) as sock:
        # 2 MiB at once, so the upload's temp file exists, then a byte a second.
        sock.sendall(upload_head(limited, token, 10 * MIB) + b"x" * (2 * MIB))
        deadline = time.monotonic() + 10
        while not list(tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp.iterdir()), "the upload's temp file should exist while it is received"
        # The window that was running ends, with enough bytes; the next one has too few.
        taken = trickle_until_closed(sock, b"x" * 100, 1.0, 2 * BODY_TIMEOUT + MARGIN + 5)
        assert taken < 2 * BODY_TIMEOUT + MARGIN
        answer = closed_by_server(sock, wait=1)
        assert answer is not None
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
    deadline = time.monotonic() + 5
    while list(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp.iterdir()) == []


def test_a_body_that_pauses_is_closed(limited: LiveServer) -> None:
    token = limited.token("slow-owner", "prod")
    with connect(limited) as sock:
        sock.sendall(upload_head(limited, token, 1000) + b"x" * 10)
        readable, _, _ = select.select([sock], [], [], BODY_TIMEOUT + MARGIN)
        assert readable, "the server should close a body that stopped"
        answer = closed_by_server(sock, wait=1)
        assert answer is not None
        assert b"408 Request Timeout" in answer


def test_a_client_that_stops_reading_a_download_is_closed(limited: LiveServer) -> None:
    token = limited.token("slow-owner", "prod")
    filename, data = build_wheel(
        "slow-reader", "1.0", extra_files={"slow_reader/blob.bin": os.urandom(8 * MIB)}
    )
    with limited.client() as client:
        assert upload(client, "prod", token, filename, data).status_code == 200
    path = f"/files/{hashlib.sha256(data).hexdigest()}/{filename}"
    host, port = limited.url.split("://")[1].split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connecting
        sock.connect((host, int(port)))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        time.sleep(BODY_TIMEOUT + MARGIN + 2)  # not reading; the server gives up sending
        received = 0
        sock.settimeout(5)
        try:
            while part := sock.recv(65536):
                received += len(part)
        except OSError:  # reset, or nothing more within 5 s
            pass
    # Response head and body together: the whole file would be more than `len(data)`.
    assert 0 < received < len(data), "the server should stop sending to a client not reading"


def rss(server: LiveServer) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def legacy_heads(server: LiveServer, token: str, count: int) -> list[bytes]:
    """The heads of `count` uploads of a 100 MiB file through the legacy API."""
    return [upload_head(server, token, 100 * MIB)] * count


def session_heads(server: LiveServer, token: str, count: int) -> list[bytes]:
    """The heads of `count` `http-post-bytes` requests of 100 MiB files of a new session."""
    host = server.url.split("://")[1]
    name = f"slow-session-{next(SESSIONS)}"
    with server.client() as http:
        session = open_session(http, token, name, "1.0")
        heads = []
        for number in range(count):
            created = post(
                http,
                session["links"]["upload"],
                token,
                {
                    "filename": f"{name.replace('-', '_')}-1.0-{number}-py3-none-any.whl",
                    "size": 100 * MIB,
                    "hashes": {"sha256": "0" * 64},
                    "mechanism": "http-post-bytes",
                },
            )
            assert created.status_code == 202, created.text
            path = httpx.URL(created.json()["mechanism"]["file_url"]).raw_path.decode()
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Length: {100 * MIB}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            heads.append(head.encode())
    return heads


SESSIONS = itertools.count()


def stall_uploads(server: LiveServer, heads: list[bytes]) -> list[socket.socket]:
    """Uploads with these heads that send 3 MiB of their file and then nothing more."""
    socks = []
    for head in heads:
        sock = connect(server)
        sock.sendall(head + b"x" * (3 * MIB))
        socks.append(sock)
    return socks


def wait_until_closed(socks: list[socket.socket], limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if all(closed_by_server(sock) is not None for sock in socks):
            break
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.local_only  # watches the folder's temp files
@pytest.mark.parametrize("heads", [legacy_heads, session_heads], ids=["legacy", "session"])
def test_memory_returns_to_its_baseline_after_stalled_uploads(
    limited: LiveServer, heads: Callable[[LiveServer, str, int], list[bytes]]
) -> None:
    """Rounds of 40 stalled uploads: each round's memory is given back when it is closed.

    Through the legacy API and through a PEP 694 session's `http-post-bytes`, whose bodies
    stream into the blob store the same way.

    The baseline is taken after a first round (thread stacks, caches and the statements it
    prepared stay). The server hands freed memory back to the OS when a burst of uploads is
    over (index/heap.py); without that, glibc's heap kept 5 to 14 MiB of the rounds at random.
    A round that is not released adds its memory (about 10 MiB here) again.
    """
    token = limited.token("slow-owner", "prod")
    start = rss(limited)
    held = 0
    for round_ in range(4):
        socks = stall_uploads(limited, heads(limited, token, 40))
        held = max(held, rss(limited))
        taken = wait_until_closed(socks, 2 * BODY_TIMEOUT + MARGIN + 5)
        assert taken < 2 * BODY_TIMEOUT + MARGIN, "stalled uploads should be closed"
        for sock in socks:
            sock.close()
        time.sleep(0.5)
        if round_ == 0:
            baseline = rss(limited)
    after = rss(limited)
    print(f"RSS start {start / MIB:.1f} MiB, held {held / MIB:.1f}, baseline {baseline / MIB:.1f}")
    print(f"RSS after 3 more rounds {after / MIB:.1f} MiB")
    assert held > start + 5 * MIB, "the stalled uploads should have held memory"
    assert after < baseline + 5 * MIB
    # And given back to the OS, not only reused: glibc kept 19 to 31 MiB of it without the trim.
    assert after < start + 8 * MIB
    assert list((limited.data_dir / "blobs" / "tmp").iterdir()) == []


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[LiveServer]:
    """A server allowed 50 connections, whose descriptor limit is then lowered to 150."""
    live = start_server(tmp_path / "capped", config_text=limits(header_timeout=5))
    fds = 150
    resource.prlimit(live.process.pid, resource.RLIMIT_NOFILE, (fds, fds))
    yield live
    stop_server(live)


def health_within(server: LiveServer, seconds: float) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=seconds) as client:
        return client.get("/_/health")


def test_idle_connections_cannot_take_the_descriptors_of_others(capped: LiveServer) -> None:
    """More idle connections than descriptors: the newest replace the oldest idle ones."""
    idle = [connect(capped) for _ in range(200)]
    try:
        started = time.monotonic()
        assert health_within(capped, 2).status_code == 200
        assert time.monotonic() - started < 2
        # The server holds at most max-connections of them: the others were closed at once,
        # long before the header timeout.
        open_ones = [sock for sock in idle if closed_by_server(sock) is None]
        assert len(open_ones) <= MAX_CONNECTIONS
    finally:
        for sock in idle:
            sock.close()


def test_when_every_connection_is_busy_new_ones_get_503_at_once(capped: LiveServer) -> None:
    """Connections in the middle of a request are not replaced: a newcomer gets 503."""
    busy = [connect(capped) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in busy:
            sock.sendall(b"GET /_/health HTTP/1.1\r\n")  # a head that is never finished
        time.sleep(0.5)
        started = time.monotonic()
        refused = health_within(capped, 2)
        assert refused.status_code == 503
        assert "too many connections" in refused.text
        assert time.monotonic() - started < 2
        # Once the header timeout has closed the busy ones, everyone is served again.
        deadline = time.monotonic() + 5 + MARGIN
        while time.monotonic() < deadline:
            if health_within(capped, 2).status_code == 200:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the server did not answer once the busy connections were closed")
    finally:
        for sock in busy:
            sock.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_refused_upload_is_answered_without_reading_the_file(
    limited: LiveServer, tls_server: LiveServer, scheme: str
) -> None:
    """A client that keeps sending after a refusal: the server stops reading it early.

    (Over TLS, closing a connection waits for the client's TLS close and reads whatever
    it sends meanwhile: the server must not close that way here.)
    """
    server = limited if scheme == "http" else tls_server
    size = 128 * MIB
    with connect(server) as sock:
        sock.sendall(upload_head(server, "keyless-not-a-real-token", size))
        sent = 0
        chunk = b"x" * 65536
        sock.settimeout(5)
        try:
            while sent < size:
                sent += sock.send(chunk)
        except (OSError, TimeoutError):
            pass
        answer = b""
        try:
            while part := sock.recv(65536):
                answer += part
        except OSError:
            pass
    print(f"{scheme}: the client could send {sent / MIB:.1f} MiB of a refused 128 MiB body")
    assert b"403 " in answer.split(b"\r\n")[0]
    # What the kernels' buffers on both ends took, and at most LINGER_BYTES more.
    assert sent < 32 * MIB, f"the server read {sent} bytes of a refused body"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_early_answer_says_the_connection_closes_so_clients_do_not_reuse_it(
    limited: LiveServer, tls_server: LiveServer, scheme: str
) -> None:
    """A client that sent all its body and read the refusal must not reuse the connection.

    The server ends a connection after answering before the whole body came (it discards
    what still arrives, then closes): the answer must say so, or a pooling client sends its
    next request into it and gets no answer at all — over TLS, which cannot half-close, the
    client sees nothing else that tells it.
    """
    server = limited if scheme == "http" else tls_server
    # Larger than what the server reads ahead before the application asks for the body.
    filename, data = build_wheel("early-answer", "1.0", extra_files={"blob.bin": os.urandom(MIB)})
    with server.client() as client:
        for _ in range(3):
            refused = upload(client, "prod", "keyless-not-a-real-token", filename, data)
            assert refused.status_code == 403, refused.text
            assert refused.headers.get("connection") == "close"
            # The same client (and pool) goes on; before the fix this got no response.
            assert client.get("/_/health").status_code == 200


@pytest.fixture(scope="module")
def big_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    filename, data = build_wheel(
        "big-refused", "1.0", extra_files={"big_refused/blob.bin": os.urandom(40 * MIB)}
    )
    path = tmp_path_factory.mktemp("dist") / filename
    path.write_bytes(data)
    return path


@pytest.mark.clients
def test_twine_and_uv_show_the_refusal_of_a_large_upload(
    limited: LiveServer, big_wheel: Path, tmp_path: Path
) -> None:
    env = client_env(tmp_path)
    url = limited.upload_url("prod")
    token = "keyless-not-a-real-token"
    twine = [sys.executable, "-m", "twine", "upload", "--non-interactive"]
    uv = [sys.executable, "-m", "uv", "publish", "--publish-url", url, "--token", token]
    for command in (
        [*twine, "--disable-progress-bar", "--repository-url", url, "-u", "__token__", "-p", token],
        uv,
    ):
        for _ in range(3):
            done = subprocess.run(
                [*command, str(big_wheel)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            output = " ".join((done.stdout + done.stderr).split())
            assert done.returncode != 0
            assert BAD_TOKEN in output, output


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (50, "50 (356, 1000) no warning"),  # the soft limit is raised to 2 * 50 + 256
        (1000, "372 (1000, 1000) warning"),  # the hard limit allows only (1000 - 256) / 2
    ],
)
def test_the_descriptor_limit_is_raised_or_the_connections_lowered(
    wanted: int, expected: str
) -> None:
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 1000))\n"
        "from keyless.index.server import connection_limit\n"
        f"allowed = connection_limit({wanted})\n"
        "sys.stderr.flush()\n"
        "print(allowed, resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    warned = "warning" if "lower max-connections" in done.stderr else "no warning"
    assert f"{done.stdout.strip()} {warned}" == expected


def test_a_big_session_file_streams_into_the_store_in_bounded_memory(limited: LiveServer) -> None:
    """A 90 MiB file (the limit is 100 MB) sent by `http-post-bytes` is never held whole."""
    token = limited.token("big-session-owner", "prod")
    block, blocks = os.urandom(MIB), 90
    digest = hashlib.sha256()
    for _ in range(blocks):
        digest.update(block)
    peak, done = 0, False

    def watch() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, rss(limited))
            time.sleep(0.02)

    with limited.client() as http:
        session = open_session(http, token, "big-session", "1.0")
        created = post(
            http,
            session["links"]["upload"],
            token,
            {
                "filename": "big_session-1.0-py3-none-any.whl",
                "size": blocks * MIB,
                "hashes": {"sha256": digest.hexdigest()},
                "mechanism": "http-post-bytes",
            },
        )
        assert created.status_code == 202, created.text
        start = rss(limited)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            sent = http.post(
                created.json()["mechanism"]["file_url"],
                content=(block for _ in range(blocks)),
                headers={"Content-Type": "application/octet-stream"},
                auth=("__token__", token),
            )
        finally:
            done = True
            watcher.join()
        status = http.get(created.headers["location"], auth=("__token__", token))
    assert sent.status_code == 204, sent.text
    assert status.json()["status"] == "pending", status.text  # received, not yet completed
    print(f"RSS before {start / MIB:.1f} MiB, peak {peak / MIB:.1f}")
    assert peak - start < 40 * MIB, f"the server grew by {(peak - start) // MIB} MiB"
