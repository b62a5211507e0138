"""Bad input and interruptions: a 4xx that says what to fix, and nothing half-written."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest

from keyless.store.blobs import BATCH
from tests.builders import build_wheel
from tests.conftest import LiveServer, start_server, stop_server

from .uploading import form_fields, upload


def temp_files(server: LiveServer) -> list[Path]:
    return list((server.data_dir / "blobs" / "tmp").iterdir())


def multipart_body(filename: str, data: bytes, boundary: str) -> bytes:
    parts = []
    for key, value in form_fields(filename, data):
        disposition = f'Content-Disposition: form-data; name="{key}"'
        parts.append(f"--{boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


@pytest.mark.local_only  # watches the folder's temp files
def test_an_upload_cut_off_half_way_leaves_nothing(server: LiveServer, http: httpx.Client) -> None:
    token = server.token("cut-owner", "prod")
    # Random (incompressible) and bigger than a hand-over batch, so the server is writing
    # the temp file while the upload still arrives.
    pad = os.urandom(3 * BATCH)
    filename, data = build_wheel("cut-demo", "1.0", extra_files={"cut_demo/pad.bin": pad})
    body = multipart_body(filename, data, "xyzzy")
    host, port = server.url.removeprefix("http://").split(":")
    auth = httpx.BasicAuth("__token__", token)._auth_header
    head = (
        f"POST /prod/legacy/ HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyzzy\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + body[: len(body) - 1000])  # the file's last bytes never arrive
        deadline = time.monotonic() + 5
        while not temp_files(server) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert temp_files(server), "the server should be streaming the file to a temp file"
    deadline = time.monotonic() + 5
    while temp_files(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(server) == []
    assert http.get("/prod/simple/cut-demo/").status_code == 404
    # The same upload, complete, then works: nothing of the first attempt is in the way.
    assert upload(http, "prod", token, filename, data).status_code == 200


def test_two_clients_upload_the_same_file_at_once(server: LiveServer) -> None:
    token = server.token("race-owner", "prod")
    results: list[int] = []
    for attempt in range(5):
        filename, data = build_wheel("race-demo", f"1.{attempt}")
        barrier = threading.Barrier(2)

        def send(
            filename: str = filename, data: bytes = data, barrier: threading.Barrier = barrier
        ) -> None:
            with server.client() as client:
                barrier.wait()
                results.append(upload(client, "prod", token, filename, data).status_code)

        threads = [threading.Thread(target=send) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [200] * 10
    with server.client() as client:
        page = client.get(
            "/prod/simple/race-demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        ).json()
    assert sorted(f["filename"] for f in page["files"]) == [
        f"race_demo-1.{n}-py3-none-any.whl" for n in range(5)
    ]


def test_two_clients_race_different_bytes_under_one_name(server: LiveServer) -> None:
    token = server.token("race2-owner", "prod")
    filename, first = build_wheel("race-two", "1.0")
    _, second = build_wheel("race-two", "1.0", extra_files={"race_two/other.py": b"x = 2\n"})
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def send(data: bytes) -> None:
        with server.client() as client:
            barrier.wait()
            answers.append(upload(client, "prod", token, filename, data))

    threads = [threading.Thread(target=send, args=(d,)) for d in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 400]
    loser = next(a for a in answers if a.status_code == 400)
    assert "File already exists" in loser.text


GARBAGE = [
    (
        "POST",
        "/prod/legacy/",
        {"content-type": "multipart/form-data; boundary=b"},
        b"--b\r\nnonsense",
    ),
    ("POST", "/prod/legacy/", {"content-type": "multipart/form-data"}, b"no boundary"),
    ("POST", "/prod/legacy/", {"content-type": "text/plain"}, b"\xff\xfe"),
    ("GET", "/prod/simple/%ff%fe/", {}, b""),
    ("GET", "/prod/simple/x/", {"accept": "application/vnd.pypi.simple.v1+json;q=abc"}, b""),
    ("GET", "/prod/pypi/%00/json", {}, b""),
    ("GET", "/prod/pypi/demo/not..a..version/json", {}, b""),
    ("GET", "/files/zz/evil", {}, b""),
    ("GET", "/files/" + "a" * 64 + "/x.whl.metadata", {}, b""),
    ("POST", "/prod/api/projects/x/status", {"authorization": "Bearer junk"}, b"{not json"),
    ("POST", "/prod/api/projects/x/releases/1/yank", {"authorization": "Basic !!!"}, b""),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), GARBAGE)
def test_malformed_requests_get_a_4xx_with_a_message(
    server: LiveServer, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    token = server.token("garbage-owner", "prod")
    headers = {"authorization": f"Bearer {token}", **headers}
    with server.client() as client:
        answer = client.request(method, path, headers=headers, content=body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code != 404 or path.startswith("/prod/legacy"):
        assert len(answer.text.strip()) > 10


@pytest.mark.local_only  # the modes of the SQLite files and the blob folder
def test_a_new_servers_secrets_are_readable_by_its_user_only(tmp_path: Path) -> None:
    before = os.umask(0o022)  # what a service usually gets: files 0644 unless made private
    try:
        live = start_server(tmp_path)
    finally:
        os.umask(before)
    try:
        token = live.token("private-owner", "prod")
        with live.client() as client:
            assert (
                upload(client, "prod", token, *build_wheel("private-demo", "1.0")).status_code
                == 200
            )
        data = live.data_dir
        database_files = [
            data / name for name in ("keyless.db", "keyless.db-wal", "keyless.db-shm")
        ]
        blobs = [p for p in (data / "blobs" / "sha256").rglob("*") if p.is_file()]
        assert blobs
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [data, *database_files, *blobs]}
        assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}
    finally:
        stop_server(live)
