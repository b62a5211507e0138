"""Garbage collection (`keyless gc`, the same use case the server runs) next to live uploads.

An accepted file's blob must never go: not when gc runs while someone uploads bytes whose
blob was left behind without a row (a crash, a full database, a lost filename race), and an
identical re-upload puts back a blob that is missing.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyless.index.maintenance import GarbageCollector
from keyless.store.blobs import LocalBlobStore
from keyless.store.db import open_database
from tests.builders import build_wheel
from tests.conftest import SERVER_CONFIG, LiveServer, start_server, stop_server

from .uploading import upload

# Blobs damaged and orphaned in the folder, by path; gc on a bucket: tests/store/test_s3_blobs.py.
pytestmark = pytest.mark.local_only

TRIALS = 24
HOUR = 3600


def blob_store(server: LiveServer) -> LocalBlobStore:
    return LocalBlobStore(server.data_dir / "blobs")


class LargeStore(LocalBlobStore):
    """The server's blob store, walked as slowly as a large one (thousands of blobs): the
    time between gc's look at the database and its deletions is that walk."""

    def iter_keys(self) -> Iterator[str]:
        time.sleep(0.05)
        yield from super().iter_keys()


def leave_orphan(blobs: LocalBlobStore, data: bytes, age: float) -> str:
    """A blob no row refers to, as an interrupted upload leaves it, last written `age` ago."""
    sha256 = blobs.put_bytes(data)
    then = time.time() - age
    os.utime(blobs.path_for(sha256), (then, then))
    return sha256


def broken_downloads(http: httpx.Client, project: str) -> list[str]:
    """The files the JSON API lists for `project` that do not download with their sha256."""
    listed = http.get(f"/prod/pypi/{project}/json")
    assert listed.status_code == 200, listed.text
    broken = []
    for file in listed.json()["urls"]:
        answer = http.get(file["url"])
        if (
            answer.status_code != 200
            or hashlib.sha256(answer.content).hexdigest() != file["digests"]["sha256"]
        ):
            broken.append(f"{file['filename']}: {answer.status_code}")
    return broken


def upload_during_gc(
    server: LiveServer, blobs: LocalBlobStore, token: str, filename: str, data: bytes
) -> httpx.Response:
    """Upload over HTTP while gc passes run one after another, started together."""
    engine = open_database(server.database)
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []
    uploaded = threading.Event()

    def send() -> None:
        with server.client() as client:
            client.get("/_/health")
            barrier.wait()
            answers.append(upload(client, "prod", token, filename, data))
            uploaded.set()

    def collect() -> None:
        barrier.wait()
        # As `keyless gc` from cron, or the server's own collector, may run at any moment.
        GarbageCollector(engine, blobs).collect_garbage()
        while not uploaded.is_set():
            GarbageCollector(engine, blobs).collect_garbage()

    threads = [threading.Thread(target=send), threading.Thread(target=collect)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers[0]


def test_gc_racing_an_upload_of_orphaned_bytes_never_loses_the_accepted_file(
    server: LiveServer, http: httpx.Client
) -> None:
    """An upload reuses a stored orphan blob of its bytes while gc runs: after every trial
    the accepted file downloads, with its sha256."""
    token = server.token("gc-racer", "prod")
    blobs = blob_store(server)
    failures = []
    for trial in range(TRIALS):
        project = f"gc-race-{trial}"
        filename, data = build_wheel(project, "1.0")
        leave_orphan(blobs, data, age=2 * HOUR)  # older than any grace period
        answer = upload_during_gc(server, LargeStore(blobs.root), token, filename, data)
        assert answer.status_code == 200, answer.text
        broken = broken_downloads(http, project)
        if broken:
            failures.append((trial, broken))
    assert not failures, f"{len(failures)} of {TRIALS} trials lost a file: {failures[:3]}"


def test_an_identical_reupload_puts_back_a_missing_or_truncated_blob(
    server: LiveServer, http: httpx.Client
) -> None:
    token = server.token("gc-restorer", "prod")
    filename, data = build_wheel("blob-restored", "1.0")
    assert upload(http, "prod", token, filename, data).status_code == 200
    stored = blob_store(server).path_for(hashlib.sha256(data).hexdigest())
    for damage in (stored.unlink, lambda: stored.write_bytes(data[:100])):
        damage()  # lost, or cut short, by whatever means
        assert broken_downloads(http, "blob-restored") != []

        again = upload(http, "prod", token, filename, data)
        assert again.status_code == 200, again.text
        assert "already uploaded" in again.json()["message"]
        assert broken_downloads(http, "blob-restored") == []


def test_gc_removes_unreferenced_blobs_at_once_and_temp_files_when_stale(
    server: LiveServer, http: httpx.Client
) -> None:
    """No grace for blobs: a server restarting in a loop (each start within the hour) must
    still collect them. A young temp file may be an upload streaming in: it stays."""
    token = server.token("gc-sweeper", "prod")
    kept_name, kept = build_wheel("gc-kept", "1.0")
    assert upload(http, "prod", token, kept_name, kept).status_code == 200
    blobs = blob_store(server)
    orphan = leave_orphan(blobs, b"left by an upload that never committed", age=1)
    young_temp = blobs.tmp / "upload-streaming.part"
    young_temp.write_bytes(b"half an upload")
    stale_temp = blobs.tmp / "upload-from-a-crash.part"
    stale_temp.write_bytes(b"half an upload")
    os.utime(stale_temp, (time.time() - 2 * HOUR,) * 2)

    removed = GarbageCollector(open_database(server.database), blobs).collect_garbage()

    assert removed >= 2
    assert not blobs.exists(orphan)
    assert not stale_temp.exists()
    assert young_temp.exists()
    assert broken_downloads(http, "gc-kept") == []
    young_temp.unlink()


def test_the_server_collects_garbage_every_gc_interval(tmp_path: Path) -> None:
    """Orphans and stale temp files that appear while the server runs go without a restart."""
    live = start_server(tmp_path, config_text=SERVER_CONFIG + '\n[server]\ngc-interval = "1s"\n')
    try:
        blobs = blob_store(live)
        orphan = leave_orphan(blobs, b"orphaned while the server runs", age=1)
        stale_temp = blobs.tmp / "upload-from-a-crash.part"
        stale_temp.write_bytes(b"half an upload")
        os.utime(stale_temp, (time.time() - 2 * HOUR,) * 2)
        deadline = time.monotonic() + 20
        while (blobs.exists(orphan) or stale_temp.exists()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not blobs.exists(orphan)
        assert not stale_temp.exists()
        with live.client() as client:
            assert client.get("/_/health").status_code == 200
    finally:
        stop_server(live)
