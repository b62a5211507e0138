"""A trusted publisher's upload racing the removal of that publisher (`keyless publisher remove`).

Removing a publisher takes effect on tokens already minted — also on an upload already under
way: either its file was committed before the removal, or it is refused with the text an
upload after the removal gets.
"""

from __future__ import annotations

import threading
import time

import httpx
from sqlalchemy import select

from keyless.ci.emulator import Emulator, JobClaims
from keyless.config import load_settings
from keyless.index.indexes import IndexAdmin
from keyless.index.publishers import Actor, Publishers
from keyless.store import db
from keyless.store.db import open_database
from tests.builders import build_wheel
from tests.conftest import AUDIENCE, LiveServer, make_project

from .uploading import upload

TRIALS = 24
REMOVED = "Invalid API Token: the trusted publisher it was minted for has been removed."


def journal_serial(server: LiveServer, project: str, action: str, filename: str = "") -> int | None:
    """The serial of the project's journal entry for `action` (on `filename`), if any."""
    with db.reading(open_database(server.database)) as conn:
        rows = conn.execute(
            select(db.journal.c.id, db.journal.c.details).where(
                db.journal.c.project == project, db.journal.c.action == action
            )
        ).all()
    return next((row.id for row in rows if row.details.get("filename", "") == filename), None)


def test_an_upload_racing_the_removal_of_its_publisher_is_stored_before_or_refused(
    tp_server: LiveServer, emulator: Emulator
) -> None:
    engine = open_database(tp_server.database)
    settings = load_settings(tp_server.data_dir.parent / "keyless.toml", environ={})
    prod = IndexAdmin(engine).load_indexes()["prod"]
    publishers = Publishers(engine, settings.trusted_publishing)
    admin = Actor(username="admin", user_id=None)
    failures = []
    with tp_server.client() as http:
        owner = make_project(tp_server, http, "tp-race-warmup")
        started = time.monotonic()
        upload(http, "prod", owner, *build_wheel("tp-race-warmup", "1.0"))
        span = time.monotonic() - started  # about how long one upload takes here
        for trial in range(TRIALS):
            project = f"tp-race-{trial}"
            make_project(tp_server, http, project)
            config = {
                "owner": "octo-org",
                "repository": f"race-{trial}",
                "workflow": "r.yml",
                "issuer": emulator.issuer,
            }
            publisher = publishers.add_publisher(prod.id, [project], "github", config, admin)["id"]
            claims = JobClaims(repo=f"octo-org/race-{trial}", workflow="r.yml")
            minted = http.post(
                "/_/oidc/mint-token", json={"token": emulator.token(AUDIENCE, claims)}
            )
            assert minted.status_code == 200, minted.text
            token = minted.json()["token"]
            filename, data = build_wheel(project, "1.0")
            barrier = threading.Barrier(2)
            answers: list[httpx.Response] = []

            def send(token: str = token, filename: str = filename, data: bytes = data) -> None:
                with tp_server.client() as client:
                    client.get("/_/health")
                    barrier.wait()  # noqa: B023 - joined below, before the next trial
                    answers.append(upload(client, "prod", token, filename, data))  # noqa: B023

            def remove(
                publisher: int = publisher, delay: float = span * trial / (2 * TRIALS)
            ) -> None:
                barrier.wait()  # noqa: B023 - as above
                time.sleep(delay)  # the removal lands at a different point of each upload
                publishers.remove_publisher(prod.id, publisher, admin)

            threads = [threading.Thread(target=send), threading.Thread(target=remove)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            answer = answers[0]
            uploaded = journal_serial(tp_server, project, "file_upload", filename)
            removed = journal_serial(tp_server, project, "remove_publisher")
            assert removed is not None
            if answer.status_code == 200:
                ok = uploaded is not None and uploaded < removed
            else:
                ok = answer.status_code == 403 and REMOVED in answer.text and uploaded is None
            if not ok:
                failures.append((trial, answer.status_code, uploaded, removed))
    assert not failures, f"{len(failures)} of {TRIALS} trials went wrong: {failures[:3]}"
