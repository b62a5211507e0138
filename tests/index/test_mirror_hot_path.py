"""The mirror's hot paths on a live server: cached upstream pages answered from memory as local
pages are (no database read, the same headers as when first fetched), dropped at once when the
name becomes the index's own in any server process on the same data; first downloads streamed
to the client while they are stored, nothing left behind by a client that goes away."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.builders import build_wheel
from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.index.test_mirror import JSON, first_file_url, mirror_config, publish, stored_soon
from tests.index.uploading import upload

# Headers every response carries that differ from one response to the next.
PER_RESPONSE = {"date", "server"}


def cache_counts(client: httpx.Client) -> tuple[int, int]:
    """This process's simple-page cache hits and misses (/_/metrics)."""
    text = client.get("/_/metrics").text
    hits = re.search(r"^keyless_simple_cache_hits_total (\d+)", text, re.M)
    misses = re.search(r"^keyless_simple_cache_misses_total (\d+)", text, re.M)
    assert hits is not None, text
    assert misses is not None, text
    return int(hits.group(1)), int(misses.group(1))


def headers_of(answer: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in answer.headers.multi_items() if k not in PER_RESPONSE]


def test_a_cached_upstream_page_is_answered_from_memory_as_a_local_page_is(
    upstream: LiveServer, tmp_path: Path
) -> None:
    publish(upstream, "test", "cached-lib", "1.0")
    mirror = start_server(tmp_path / "mirror", config_text=mirror_config(upstream))
    try:
        with mirror.client() as client:
            first = {
                accept: client.get("/main/simple/cached-lib/", headers={"Accept": accept})
                for accept in (JSON, "text/html")
            }
            hits, misses = cache_counts(client)
            again = {
                accept: client.get("/main/simple/cached-lib/", headers={"Accept": accept})
                for accept in (JSON, "text/html")
            }
            etag = first[JSON].headers["etag"]
            unchanged = client.get(
                "/main/simple/cached-lib/", headers={"Accept": JSON, "If-None-Match": etag}
            )
            hits_after, misses_after = cache_counts(client)
    finally:
        stop_server(mirror)
    for accept, answer in first.items():
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-keyless-source"] == "upstream"
        assert again[accept].content == answer.content
        assert headers_of(again[accept]) == headers_of(answer), accept
    assert unchanged.status_code == 304
    assert unchanged.headers["x-keyless-source"] == "upstream"
    assert unchanged.headers["etag"] == etag
    # Three answers from the page cache, none of them a miss (a miss reads the database).
    assert (hits_after - hits, misses_after - misses) == (3, 0)


def test_a_local_upload_in_another_process_wins_over_a_cached_upstream_page(
    upstream: LiveServer, tmp_path: Path
) -> None:
    publish(upstream, "test", "taken-lib", "99.0")
    config = mirror_config(upstream)
    mirror = start_server(tmp_path / "mirror", config_text=config)
    # A second server process on the same data, as `serve --workers 2` runs, reached apart.
    other = start_server(tmp_path / "other", config_text=config, data_dir=mirror.data_dir)
    try:
        with mirror.client() as client:
            before = client.get("/main/simple/taken-lib/", headers={"Accept": JSON})
            assert before.json()["versions"] == ["99.0"]
            assert client.get("/main/simple/taken-lib/", headers={"Accept": JSON}).json() == (
                before.json()
            )  # now kept in memory
        publish(other, "main", "taken-lib", "1.0")
        with mirror.client() as client:
            after = client.get("/main/simple/taken-lib/", headers={"Accept": JSON})
    finally:
        stop_server(other)
        stop_server(mirror)
    assert after.status_code == 200, after.text
    assert after.json()["versions"] == ["1.0"]
    assert "x-keyless-source" not in after.headers


def test_a_cached_upstream_page_is_revalidated_once_its_ttl_ends(
    upstream: LiveServer, tmp_path: Path
) -> None:
    publish(upstream, "test", "ttl-lib", "1.0")
    mirror = start_server(tmp_path / "mirror", config_text=mirror_config(upstream, ttl=1))
    try:
        with mirror.client() as client:
            first = client.get("/main/simple/ttl-lib/", headers={"Accept": JSON}).json()
            publish(upstream, "test", "ttl-lib", "2.0")
            within = client.get("/main/simple/ttl-lib/", headers={"Accept": JSON}).json()
            # Bounded: the TTL is one second; the page must change well before this ends.
            for _ in range(50):
                later = client.get("/main/simple/ttl-lib/", headers={"Accept": JSON}).json()
                if later["versions"] != within["versions"]:
                    break
                time.sleep(0.1)
    finally:
        stop_server(mirror)
    assert first["versions"] == ["1.0"]
    assert later["versions"] == ["1.0", "2.0"]


# ------------------------------------------------------------------ first downloads of files

FILE_PATH = "/packages/gated_lib-1.0-py3-none-any.whl"
HEAD = 3 * 1024 * 1024  # sent at once; the rest only once the test opens the gate


@dataclass
class GatedUpstream:
    """A stdlib HTTP server with one project whose one file is sent in two parts: `HEAD`
    bytes, then the rest once `gate` is set (or after 20 s, so that nothing hangs)."""

    url: str
    data: bytes
    gate: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def gated() -> Iterator[GatedUpstream]:
    port = free_port()
    state = GatedUpstream(f"http://127.0.0.1:{port}", os.urandom(HEAD + 2 * 1024 * 1024))
    sha256 = hashlib.sha256(state.data).hexdigest()
    page = f'<html><body><a href="{FILE_PATH}#sha256={sha256}">x</a></body></html>'.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/simple/gated-lib/":
                content_type, body = "text/html", page
            elif self.path == FILE_PATH:
                content_type, body = "application/octet-stream", state.data
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            if self.path != FILE_PATH:
                self.wfile.write(body)
                return
            self.wfile.write(body[:HEAD])
            self.wfile.flush()
            state.gate.wait(20)
            self.wfile.write(body[HEAD:])

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.gate.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@dataclass
class GatedMirror:
    server: LiveServer
    url: str  # of the gated file, on the mirror (its page fetched, the file not yet)
    sha256: str


@pytest.fixture
def gated_mirror(gated: GatedUpstream, tmp_path: Path) -> Iterator[GatedMirror]:
    """A server whose index `main` mirrors `gated`."""
    config = f'[indexes.main]\nupstream = "{gated.url}/simple/"\n'
    mirror = start_server(tmp_path / "mirror", config_text=config)
    try:
        with mirror.client() as client:
            url = first_file_url(client, "/main/simple/gated-lib/")
        yield GatedMirror(mirror, url, hashlib.sha256(gated.data).hexdigest())
    finally:
        stop_server(mirror)


def temp_files(server: LiveServer) -> list[Path]:
    return sorted((server.data_dir / "blobs" / "tmp").glob("*"))


def test_a_first_download_streams_while_stored_and_one_left_early_leaves_nothing(
    gated: GatedUpstream, gated_mirror: GatedMirror
) -> None:
    mirror, url = gated_mirror.server, gated_mirror.url
    # A client that goes away with the gate shut: the upstream's transfer is abandoned.
    with mirror.client() as client, client.stream("GET", url) as answer:
        assert answer.status_code == 200
        first = next(answer.iter_raw())
    assert first == gated.data[: len(first)]
    assert not mirror.blobs().exists(gated_mirror.sha256)
    # The next client gets the bytes the upstream sent before it sends the rest.
    with mirror.client() as client, client.stream("GET", url) as answer:
        chunks = answer.iter_raw()
        received = bytearray()
        while len(received) < 1024 * 1024:
            received += next(chunks)
        before_the_rest = len(received)
        gated.gate.set()
        for chunk in chunks:
            received += chunk
    assert before_the_rest >= 1024 * 1024
    assert bytes(received) == gated.data
    assert stored_soon(mirror, gated_mirror.sha256)
    # Nothing of the abandoned transfer is left (its thread ends within the upstream's
    # timeout at most; bounded wait).
    for _ in range(100):
        if not temp_files(mirror):
            break
        time.sleep(0.1)
    assert temp_files(mirror) == []


@pytest.mark.local_only  # holds the SQLite file's write lock from the test
def test_the_last_bytes_go_once_checked_and_a_store_failing_after_leaves_nothing_half_done(
    gated: GatedUpstream, gated_mirror: GatedMirror
) -> None:
    """The client's last bytes wait for the hash check, not for the file to be made durable
    and recorded: with the database's write lock held by another process, the client still
    gets the whole file at once. The record then fails (the lock outlasts the server's busy
    timeout, 10 s): the log says so, no row, no temp file, nothing half-written."""
    gated.gate.set()
    mirror = gated_mirror.server
    lock = sqlite3.connect(mirror.database, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with httpx.Client(base_url=mirror.url, timeout=5) as client:
            answer = client.get(gated_mirror.url)  # before the change: a read timeout
        took = time.monotonic() - started
        assert answer.status_code == 200
        assert answer.content == gated.data
        assert took < 5
        for _ in range(200):  # bounded: the server gives up on the lock after 10 s
            if "was sent but not stored" in mirror.log():
                break
            time.sleep(0.1)
    finally:
        lock.rollback()
        lock.close()
    assert f"{FILE_PATH.rsplit('/', 1)[1]} from the upstream of gated-lib" in mirror.log()
    assert stored_rows(mirror) == []
    assert temp_files(mirror) == []
    # Placed whole before the record failed, if at all: unreferenced, garbage collection's.
    blobs = mirror.blobs()
    sha256 = gated_mirror.sha256
    assert not blobs.exists(sha256) or blobs.exists(sha256, len(gated.data))


def stored_rows(server: LiveServer) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(server.database)) as conn:
        return conn.execute("SELECT filename, sha256 FROM mirrored_files").fetchall()


def test_a_first_download_from_an_upstream_behind_tls_arrives_whole(
    tls_server: LiveServer, tmp_path: Path
) -> None:
    """The large reads go through the TLS stream httpx opened (the CA trusted through
    SSL_CERT_FILE, as httpx reads it)."""
    assert tls_server.tls is not None
    filename, data = build_wheel("tls-big-lib", "1.0", extra_files={"big.bin": os.urandom(3 << 20)})
    with tls_server.client() as client:
        token = tls_server.token("test-owner", "test")
        assert upload(client, "test", token, filename, data).status_code == 200
    mirror = start_server(
        tmp_path / "mirror",
        config_text=mirror_config(tls_server),
        env={"SSL_CERT_FILE": str(tls_server.tls.ca)},
    )
    try:
        with mirror.client() as client:
            wheel = client.get(first_file_url(client, "/main/simple/tls-big-lib/"))
        assert wheel.status_code == 200
        assert wheel.content == data
    finally:
        stop_server(mirror)
