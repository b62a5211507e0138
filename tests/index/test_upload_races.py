"""Uploads racing each other over HTTP: every permission holds at the moment the file is stored.

Races are tested by repetition: each trial starts its requests together behind a barrier, and
the assertion is on every trial, not on one lucky interleaving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from keyless.index.accounts import Accounts
from keyless.index.indexes import IndexAdmin
from keyless.index.multipart import StagedFile, UploadForm
from keyless.index.uploads import Uploads
from keyless.store import db
from keyless.store.blobs import write_all
from keyless.store.db import open_database
from tests.builders import build_wheel, form_mapping
from tests.conftest import LiveServer

from .uploading import form_fields, upload

TRIALS = 24


Request = Callable[[threading.Barrier], httpx.Response]


def together(*work: Request) -> list[httpx.Response]:
    """Run each request on its own thread; each waits on the barrier just before sending."""
    barrier = threading.Barrier(len(work))
    answers: list[httpx.Response | None] = [None] * len(work)

    def run(slot: int, request: Request) -> None:
        answers[slot] = request(barrier)

    threads = [threading.Thread(target=run, args=(n, w)) for n, w in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def uploader(server: LiveServer, token: str, filename: str, data: bytes) -> Request:
    def send(barrier: threading.Barrier) -> httpx.Response:
        with server.client() as client:
            client.get("/_/health")  # connected before the start
            barrier.wait()
            return upload(client, "prod", token, filename, data)

    return send


def test_two_users_creating_one_project_at_once_leave_one_owner_and_one_refusal(
    server: LiveServer,
) -> None:
    """Only one of them becomes the owner; the other's file is refused (403), not stored in
    the project the winner just created."""
    tokens = {user: server.token(user, "prod") for user in ("racer-ann", "racer-bob")}
    engine = open_database(server.database)
    failures = []
    for trial in range(TRIALS):
        name = f"owner-race-{trial}"
        files = {
            "racer-ann": build_wheel(name, "1.0"),
            "racer-bob": build_wheel(name, "2.0"),
        }

        ann, bob = together(
            uploader(server, tokens["racer-ann"], *files["racer-ann"]),
            uploader(server, tokens["racer-bob"], *files["racer-bob"]),
        )
        answers = {"racer-ann": ann, "racer-bob": bob}
        with db.reading(engine) as conn:
            owners = set(
                conn.execute(
                    select(db.users.c.username)
                    .join(db.roles, db.roles.c.user_id == db.users.c.id)
                    .join(db.projects, db.projects.c.id == db.roles.c.project_id)
                    .where(db.projects.c.normalized_name == name)
                ).scalars()
            )
            stored = set(
                conn.execute(
                    select(db.files.c.filename)
                    .join(db.releases, db.releases.c.id == db.files.c.release_id)
                    .join(db.projects, db.projects.c.id == db.releases.c.project_id)
                    .where(db.projects.c.normalized_name == name)
                ).scalars()
            )
        codes = sorted(a.status_code for a in answers.values())
        winner = next((u for u, a in answers.items() if a.status_code == 200), None)
        loser = next((u for u, a in answers.items() if a.status_code != 200), None)
        if (
            codes != [200, 403]
            or owners != {winner}
            or stored != {files[str(winner)][0]}
            or "isn't allowed to upload to project" not in answers[str(loser)].text
        ):
            failures.append((trial, codes, owners, stored))
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures[:3]}"


def test_a_unique_index_refusing_another_row_is_a_fault_not_file_already_exists(
    server: LiveServer,
) -> None:
    """Only a file stored under the same name or bytes may be answered "File already exists";
    a unique index refusing anything else (here: the project's row) is raised as the fault."""
    token = server.token("faulty-owner", "prod")
    engine = server.engine()
    index = IndexAdmin(engine).load_indexes()["prod"]
    identity = Accounts(engine).authenticate(token)

    class RefusedRow(Uploads):
        def _insert(self, *args: object) -> None:
            raise IntegrityError("INSERT INTO projects", {}, Exception("UNIQUE: projects.name"))

    filename, data = build_wheel("faulty-row", "1.0")
    blobs = server.blobs()
    writer = blobs.new_writer()
    write_all(writer, [data])
    form = UploadForm(
        form_mapping(form_fields(filename, data)), StagedFile(filename, writer, writer.finish())
    )
    uploads = RefusedRow(
        engine,
        blobs,
        lambda index_id, project: None,
        descriptions=None,  # type: ignore[arg-type]  # the wheel has no description to render
    )
    with pytest.raises(IntegrityError):
        uploads.upload(index, identity, form)
    with server.client() as client:  # and the file was not stored
        assert client.get("/prod/simple/faulty-row/").status_code == 404
