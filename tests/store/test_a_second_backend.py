"""The index runs on any class with `BlobStore`'s methods: here a test-only one in memory.

A live server (uvicorn on 127.0.0.1) built with `create_app(settings, blobs=...)` takes an
upload, lists it, serves it whole, by range and its metadata, promotes it, and collects garbage,
while its data folder holds no blob at all: nothing above `store/` reads a blob's path.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
import uvicorn

from keyless.config import IndexSettings, Settings
from keyless.index.accounts import Accounts
from keyless.index.app import create_app
from keyless.index.maintenance import GarbageCollector
from keyless.store.blobs import BlobStore
from keyless.store.db import open_database
from tests.builders import build_wheel
from tests.conftest import free_port
from tests.index.uploading import core_metadata_of, upload

from .memory_blobs import MemoryBlobStore, RedirectingStore

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@contextmanager
def serving(data_dir: Path, blobs: BlobStore) -> Iterator[tuple[httpx.Client, Settings]]:
    # Different policies on the two indexes: promotion then reads the archive again (`open`).
    indexes = (IndexSettings("test"), IndexSettings("prod", profile="private"))
    settings = Settings(data_dir=data_dir, indexes=indexes)
    app = create_app(settings, blobs=blobs)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "the server stopped while starting"
            assert time.monotonic() < deadline, "the server did not start in 30 s"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, settings
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def token(settings: Settings, user: str, index: str) -> str:
    engine = open_database(settings.database)
    Accounts(engine).create_user(user, "correct horse battery")
    return Accounts(engine).create_token(user, index).token


def blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def memory() -> MemoryBlobStore:
    return MemoryBlobStore()


def test_upload_download_promote_and_gc_on_a_memory_backend(
    tmp_path: Path, memory: MemoryBlobStore
) -> None:
    filename, data = build_wheel("memory-backend-demo", "1.0", extra_files={"m/x.bin": b"x" * 5000})
    sha256 = hashlib.sha256(data).hexdigest()
    with serving(tmp_path / "data", memory) as (client, settings):
        owner = token(settings, "memory-owner", "test")
        answer = upload(client, "test", owner, filename, data)
        assert answer.status_code == 200, answer.text
        assert memory.blobs[sha256] == data
        assert memory.pending == set()  # the upload discarded its pending write

        page = client.get("/test/simple/memory-backend-demo/", headers={"Accept": JSON_TYPE})
        (entry,) = page.json()["files"]
        url = urljoin(str(page.url), entry["url"])
        whole = client.get(url)
        assert whole.status_code == 200
        assert whole.content == data
        part = client.get(url, headers={"Range": "bytes=10-29"})
        assert part.status_code == 206
        assert part.content == data[10:30]
        assert part.headers["content-range"] == f"bytes 10-29/{len(data)}"
        assert client.get(url + ".metadata").content == core_metadata_of(filename, data)
        assert memory.served == [sha256, sha256]

        # Promotion to an index with another policy reads the archive through `open`.
        prod_owner = (
            Accounts(open_database(settings.database)).create_token("memory-owner", "prod").token
        )
        promoted = client.post(
            "/test/api/projects/memory-backend-demo/releases/1.0/promote",
            json={"to": "prod"},
            headers={"Authorization": f"Bearer {prod_owner}", "Accept": "application/json"},
        )
        assert promoted.status_code == 200, promoted.text
        assert memory.opened == [sha256]
        prod_page = client.get("/prod/simple/memory-backend-demo/", headers={"Accept": JSON_TYPE})
        assert [f["hashes"]["sha256"] for f in prod_page.json()["files"]] == [sha256]

        orphan = memory.put_bytes(b"an interrupted upload's blob")
        assert GarbageCollector(open_database(settings.database), memory).collect_garbage() == 1
        assert orphan not in memory.blobs
        assert sha256 in memory.blobs

    assert blob_files(tmp_path / "data") == []  # the local folder was never used


def test_a_backend_may_answer_downloads_with_a_redirect(tmp_path: Path) -> None:
    store = RedirectingStore()
    filename, data = build_wheel("redirect-backend-demo", "1.0")
    sha256 = hashlib.sha256(data).hexdigest()
    with serving(tmp_path / "data", store) as (client, settings):
        answer = upload(client, "test", token(settings, "redirect-owner", "test"), filename, data)
        assert answer.status_code == 200, answer.text
        download = client.get(f"/files/{sha256}/{filename}")
        assert download.status_code == 307
        assert download.headers["location"] == f"https://files.example/{sha256}?signature=s"
        # The metadata file still comes from the database, never from the backend.
        assert client.get(f"/files/{sha256}/{filename}.metadata").status_code == 200
