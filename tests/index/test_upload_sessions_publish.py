"""A PEP 694 publish in progress: its filenames are reserved, and a stopped server finishes it.

A live server and an in-process use case on the same data: the use case's publish is held
between its first step (the session is `processing`) and its last, as a slow or dying server
would be, while real clients act on the live server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.index.accounts import Accounts
from keyless.index.indexes import IndexAdmin
from keyless.index.upload2 import UploadSessions
from keyless.store.blobs import BlobStore
from tests.conftest import LiveServer, start_server, stop_server

from .sessions_api import get, open_session, upload_completed
from .test_clients import twine_upload, write_dists


class HeldStore:
    """The server's blob store, whose `exists` (publish's step 2) calls `hold` first."""

    def __init__(self, blobs: BlobStore, hold: Callable[[], None]) -> None:
        self._blobs = blobs
        self._hold = hold

    def exists(self, sha256: str, size: int | None = None) -> bool:
        self._hold()
        return self._blobs.exists(sha256, size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)


def use_case(server: LiveServer, hold: Callable[[], None]) -> UploadSessions:
    return UploadSessions(
        engine=server.engine(),
        blobs=HeldStore(server.blobs(), hold),
        on_change=lambda _index, _project: None,
        lifetime=3600,
    )


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path / "server")
    yield live
    stop_server(live)


def simple_files(http: httpx.Client, name: str) -> list[str]:
    page = http.get(
        f"/prod/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    return [] if page.status_code == 404 else sorted(f["filename"] for f in page.json()["files"])


@pytest.mark.clients
def test_a_legacy_upload_of_a_filename_being_published_gets_409(
    own_server: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    server = own_server
    token = server.token("publishing-owner", "prod")
    wheel, sdist = write_dists(tmp_path / "dist", "held-publish", "1.0")
    with server.client() as http:
        session = open_session(http, token, "held-publish", "1.0")
        for path in (wheel, sdist):
            upload_completed(http, token, session, path.name, path.read_bytes())
        processing, go_on = threading.Event(), threading.Event()

        def hold() -> None:
            processing.set()
            assert go_on.wait(60)

        sessions = use_case(server, hold)
        index = IndexAdmin(server.engine()).load_indexes()["prod"]
        identity = Accounts(server.engine()).authenticate(token)
        outcome: list[Any] = []
        publisher = threading.Thread(
            target=lambda: outcome.append(
                sessions.publish(index, identity, session["session-token"])
            )
        )
        publisher.start()
        try:
            assert processing.wait(60)
            assert get(http, session["links"]["session"], token).json()["status"] == "processing"
            refused = twine_upload(server, "prod", token, [wheel], env)
            assert refused.returncode != 0
            said = " ".join((refused.stdout + refused.stderr).split())
            assert "409" in said
            assert "is being published by an upload session (PEP 694) right now" in said
            assert simple_files(http, "held-publish") == []
        finally:
            go_on.set()
            publisher.join(60)
        assert outcome[0].status == "published"
        assert simple_files(http, "held-publish") == sorted([wheel.name, sdist.name])


def test_a_publish_a_stopped_server_left_half_way_is_finished_at_start(
    own_server: LiveServer,
) -> None:
    server = own_server
    token = server.token("crashing-owner", "prod")
    wheel, sdist = write_dists(server.data_dir.parent / "dist", "crashed-publish", "1.0")
    with server.client() as http:
        session = open_session(http, token, "crashed-publish", "1.0")
        for path in (wheel, sdist):
            upload_completed(http, token, session, path.name, path.read_bytes())

    def die() -> None:
        raise SystemExit("the server stops here")

    index = IndexAdmin(server.engine()).load_indexes()["prod"]
    identity = Accounts(server.engine()).authenticate(token)
    with pytest.raises(SystemExit):
        use_case(server, die).publish(index, identity, session["session-token"])
    with server.client() as http:
        assert get(http, session["links"]["session"], token).json()["status"] == "processing"
        assert simple_files(http, "crashed-publish") == []
    stop_server(server)
    restarted = start_server(server.data_dir.parent, data_dir=server.data_dir)
    try:
        with restarted.client() as http:
            state = get(http, session["links"]["session"].replace(server.url, restarted.url), token)
            assert state.json()["status"] == "published", state.text
            assert simple_files(http, "crashed-publish") == sorted([wheel.name, sdist.name])
    finally:
        stop_server(restarted)
