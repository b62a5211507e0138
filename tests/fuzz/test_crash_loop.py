"""Crash loop: SIGKILL the server at random moments while it takes uploads, promotions and
token mints, restart it on the same data, and hold the store to what it acknowledged.

After every restart: each file the server acknowledged (200) is listed and downloads with its
sha256; each listed file's blob exists and hashes right; no `files` row lacks its blob or its
journal entry; each project's size is the sum of its files; the database passes SQLite's
integrity check; a token minted before the kill still works; and the client's retry of the
request the kill interrupted succeeds.

The kill moments come from a seeded generator, printed on failure: KEYLESS_CRASH_SEED=<seed>
replays a run. `make test` kills 20 times, `make fuzz` (KEYLESS_FUZZ_PROFILE=deep) 100 times;
KEYLESS_CRASH_KILLS sets the number.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from keyless.ci.emulator import Emulator
from tests.builders import build_sdist, build_wheel
from tests.conftest import SERVER_CONFIG, LiveServer, start_server, stop_server
from tests.index.test_trusted_publishing import add_github_publisher, job
from tests.index.uploading import upload

pytestmark = pytest.mark.fuzz

PROJECT = "crash-loop"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
KILLS = {"small": 20, "deep": 100}
# How long after a (re)start the kill comes: from "mid-first-request" to "a dozen requests in".
KILL_DELAY = (0.01, 0.4)
REQUEST_TIMEOUT = 30.0


def kill_count() -> int:
    if "KEYLESS_CRASH_KILLS" in os.environ:
        return int(os.environ["KEYLESS_CRASH_KILLS"])
    return KILLS[os.environ.get("KEYLESS_FUZZ_PROFILE", "small")]


class Interrupted(Exception):
    """The server went away in the middle of a request (as it was meant to)."""


@dataclass
class Operation:
    """One client request; `run` returns normally only on an acknowledgement (200)."""

    kind: str  # "upload", "promote" or "mint"
    run: Callable[[httpx.Client], None]
    what: str


@dataclass
class Ledger:
    """What the server acknowledged, and the tokens it minted."""

    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (index, filename) -> sha
    versions_on_test: list[str] = field(default_factory=list)
    minted: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def acknowledge(self, index: str, filename: str, sha256: str) -> None:
        known = self.files.setdefault((index, filename), sha256)
        assert known == sha256, f"{index}/{filename} acknowledged with two hashes"


@dataclass
class CrashLoop:
    folder: Path
    config: str
    emulator: Emulator
    rng: random.Random
    owner_test: str
    owner_prod: str
    ledger: Ledger = field(default_factory=Ledger)
    next_version: int = 1

    # ---------------------------------------------------------------- the client's requests

    def upload_op(self, *, minted: bool = False) -> Operation:
        """Upload a new version; with `minted`, with the last token minted (if any)."""
        version = f"1.{self.next_version}"
        self.next_version += 1
        use_minted = bool(self.ledger.minted) and (minted or self.rng.random() < 0.3)
        token = self.ledger.minted[-1] if use_minted else self.owner_test
        dists = [build_wheel(PROJECT, version), build_sdist(PROJECT, version)]

        def run(client: httpx.Client) -> None:
            for filename, data in dists:
                answer = call(functools.partial(upload, client, "test", token, filename, data))
                assert answer.status_code == 200, (
                    f"upload of {filename} ({'minted' if use_minted else 'owner'} token): "
                    f"{answer.status_code} {answer.text}"
                )
                self.ledger.acknowledge("test", filename, hashlib.sha256(data).hexdigest())
                if answer.json()["message"] != "OK":  # stored before the kill, answer lost
                    count(self.ledger, "upload answered 'already uploaded'")
            self.ledger.versions_on_test.append(version)

        return Operation("upload", run, f"upload {version}")

    def promote_op(self) -> Operation:
        version = self.rng.choice(self.ledger.versions_on_test)

        def run(client: httpx.Client) -> None:
            answer = call(
                lambda: client.post(
                    f"/test/api/projects/{PROJECT}/releases/{version}/promote",
                    content=json.dumps({"to": "prod"}),
                    headers={"Authorization": f"Bearer {self.owner_prod}"},
                )
            )
            assert answer.status_code == 200, f"promote {version}: {answer.text}"
            for promoted in answer.json()["files"]:
                self.ledger.acknowledge("prod", promoted["filename"], promoted["sha256"])

        return Operation("promote", run, f"promote {version}")

    def mint_op(self) -> Operation:
        def run(client: httpx.Client) -> None:
            # Each attempt is a fresh OIDC token, as a CI job asks its issuer again on retry
            # (an ID token is single-use: the first attempt may have been exchanged already).
            oidc = self.emulator.token("keyless", job())
            answer = call(
                lambda: client.post("/_/oidc/mint-token", content=json.dumps({"token": oidc}))
            )
            assert answer.status_code == 200, f"mint: {answer.text}"
            self.ledger.minted.append(answer.json()["token"])

        return Operation("mint", run, "mint")

    def next_op(self) -> Operation:
        roll = self.rng.random()
        if roll < 0.2 and self.ledger.versions_on_test:
            return self.promote_op()
        if roll < 0.4:
            return self.mint_op()
        return self.upload_op()

    # ---------------------------------------------------------------- one life of the server

    def start(self) -> LiveServer:
        return start_server(self.folder, config_text=self.config)

    def live_until_killed(self, server: LiveServer, pending: Operation | None) -> Operation:
        """Retry `pending`, then send requests until the kill; returns the interrupted one."""
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as client:
            if pending is not None:
                pending.run(client)  # the client's retry: must succeed on the restarted server
                count(self.ledger, f"retried {pending.kind}")
            if self.ledger.minted:  # a token minted before the kill still uploads
                self.upload_op(minted=True).run(client)
                count(self.ledger, "upload with a token minted before the kill")
            delay = self.rng.uniform(*KILL_DELAY)
            killer = threading.Timer(delay, os.kill, (server.process.pid, signal.SIGKILL))
            killer.start()
            deadline = time.monotonic() + delay + REQUEST_TIMEOUT
            try:
                while time.monotonic() < deadline:
                    operation = self.next_op()
                    try:
                        operation.run(client)
                    except Interrupted:
                        count(self.ledger, f"interrupted {operation.kind}")
                        return operation
                    count(self.ledger, operation.kind)
            finally:
                killer.join()
                server.process.wait(timeout=30)
        raise AssertionError("the server kept answering after SIGKILL")


def call(send: Callable[[], httpx.Response]) -> httpx.Response:
    try:
        return send()
    except httpx.TransportError as exc:
        raise Interrupted(str(exc)) from None


def count(ledger: Ledger, key: str) -> None:
    ledger.counts[key] = ledger.counts.get(key, 0) + 1


# -------------------------------------------------------------------- consistency checks


def check_store(server: LiveServer, ledger: Ledger) -> None:
    """After a restart: the database agrees with the blobs and with what was acknowledged."""
    listed = check_listings(server, ledger)
    conn = sqlite3.connect(f"file:{server.database}?mode=ro", uri=True, timeout=10)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute(
            "SELECT i.name, f.filename, f.sha256, f.size FROM files f "
            "JOIN indexes i ON i.id = f.index_id"
        ).fetchall()
        journaled = journaled_files(conn)
        sizes = conn.execute(
            "SELECT p.id, p.total_size, coalesce(sum(f.size), 0) FROM projects p "
            "LEFT JOIN releases r ON r.project_id = p.id "
            "LEFT JOIN files f ON f.release_id = r.id AND f.index_id = p.index_id "
            "GROUP BY p.id"
        ).fetchall()
        empty_releases = conn.execute(
            "SELECT r.version FROM releases r LEFT JOIN files f ON f.release_id = r.id "
            "WHERE f.id IS NULL"
        ).fetchall()
    finally:
        conn.close()
    assert {(index, name): sha for index, name, sha, _ in rows} == listed
    for index, filename, sha256, size in rows:
        blob = server.data_dir / "blobs" / "sha256" / sha256[:2] / sha256[2:4] / sha256
        assert blob.is_file(), f"{index}/{filename}: row without its blob {blob}"
        data = blob.read_bytes()
        assert len(data) == size, f"{index}/{filename}: the blob's size is not the row's"
        assert hashlib.sha256(data).hexdigest() == sha256, f"{index}/{filename}: blob changed"
        assert (index, filename) in journaled, f"{index}/{filename}: row without journal entry"
    # Left by kills between a blob's rename and its row's commit, or mid-write: allowed (the
    # periodic clean-up removes them), counted to show the kills hit those moments.
    referenced = {sha for _, _, sha, _ in rows}
    blobs = server.data_dir / "blobs"
    orphans = [p for p in (blobs / "sha256").glob("*/*/*") if p.name not in referenced]
    ledger.counts["orphan blobs"] = len(orphans)
    ledger.counts["temp files"] = len(list((blobs / "tmp").iterdir()))
    for project_id, total, summed in sizes:
        assert total == summed, f"project {project_id}: total_size {total}, files sum {summed}"
    assert empty_releases == [], f"releases without files: {empty_releases}"


def check_listings(server: LiveServer, ledger: Ledger) -> dict[tuple[str, str], str]:
    """Every acknowledged file is listed; every listed file downloads with its hash."""
    listed: dict[tuple[str, str], str] = {}
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as client:
        for index in ("test", "prod"):
            page = client.get(f"/{index}/simple/{PROJECT}/", headers={"Accept": SIMPLE_JSON})
            if page.status_code == 404:
                continue
            assert page.status_code == 200, page.text
            for entry in page.json()["files"]:
                sha256 = entry["hashes"]["sha256"]
                listed[(index, entry["filename"])] = sha256
                got = client.get(entry["url"])
                assert got.status_code == 200, f"{entry['url']}: {got.status_code}"
                assert hashlib.sha256(got.content).hexdigest() == sha256, entry["url"]
    lost = {key: sha for key, sha in ledger.files.items() if listed.get(key) != sha}
    assert not lost, f"acknowledged but not served after the restart: {sorted(lost)[:5]}"
    return listed


def journaled_files(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    """(index, filename) of every upload and promotion the journal records."""
    found: set[tuple[str, str]] = set()
    for index, action, details in conn.execute(
        "SELECT i.name, j.action, j.details FROM journal j JOIN indexes i ON i.id = j.index_id "
        "WHERE j.action IN ('file_upload', 'promote_release')"
    ):
        parsed = json.loads(details)
        if action == "file_upload":
            found.add((index, parsed["filename"]))
        elif "from" in parsed:  # the target's entry (the source's has "to")
            found.update((index, f["filename"]) for f in parsed["files"])
    return found


# -------------------------------------------------------------------- the test


@pytest.fixture
def crash_loop(tmp_path: Path, emulator: Emulator) -> CrashLoop:
    config = SERVER_CONFIG + '\n[trusted-publishing]\naudience = "keyless"\n'
    config += f'\n[trusted-publishing.issuers]\n"{emulator.issuer}" = "github"\n'
    folder = tmp_path / "crash"
    server = start_server(folder, config_text=config)
    try:
        owner_test = server.token(f"owner-{PROJECT}", "test")
        owner_prod = server.token(f"owner-{PROJECT}", "prod")
        with server.client() as client:
            for index, token in (("test", owner_test), ("prod", owner_prod)):
                answer = upload(client, index, token, *build_sdist(PROJECT, "0.0.1"))
                assert answer.status_code == 200, answer.text
        add_github_publisher(server, emulator, PROJECT, index="test")
    finally:
        stop_server(server)
    # Seeded and printed, so a failing run can be replayed (not for anything secret).
    seed = int(os.environ.get("KEYLESS_CRASH_SEED", random.randrange(2**32)))  # noqa: S311
    print(f"crash loop seed: KEYLESS_CRASH_SEED={seed}")
    return CrashLoop(folder, config, emulator, random.Random(seed), owner_test, owner_prod)  # noqa: S311


def test_sigkill_during_uploads_promotions_and_mints(crash_loop: CrashLoop) -> None:
    loop = crash_loop
    pending: Operation | None = None
    kills = kill_count()
    for kill in range(kills):
        server = loop.start()
        try:
            check_store(server, loop.ledger)
            pending = loop.live_until_killed(server, pending)
        except BaseException:
            print(f"after {kill} kills; last interrupted: {pending and pending.what}")
            print(f"server log tail:\n{server.log()[-3000:]}")
            raise
        finally:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()
    server = loop.start()
    try:
        check_store(server, loop.ledger)
        if pending is not None:
            with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as client:
                pending.run(client)
        check_store(server, loop.ledger)
    finally:
        stop_server(server)
    print(f"{kills} kills; requests: {loop.ledger.counts}")
    assert len(loop.ledger.files) > kills  # the loop did work between the kills
