"""What a PEP 694 session costs the index, as the clients see it: a publish of many files
changes its project once (one serial, one change for the page caches), and every request is
still checked against the rights of the moment."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from keyless.store import db
from tests.builders import build_wheel
from tests.conftest import LiveServer

from .sessions_api import assert_problem, open_session, publish, upload_completed
from .uploading import upload

TAGS = ("cp311-cp311-manylinux_2_17_x86_64", "cp312-cp312-win_amd64", "py3-none-any")


def test_a_publish_changes_its_project_once(server: LiveServer, http: httpx.Client) -> None:
    token = server.token("cost-owner", "prod")
    session = open_session(http, token, "cost-once", "1.0")
    for tag in TAGS:
        filename, data = build_wheel("cost-once", "1.0", tag=tag)
        upload_completed(http, token, session, filename, data)
    engine = server.engine()
    with engine.connect() as conn:
        serial_before = conn.execute(select(func.max(db.changes.c.serial))).scalar_one()
    published = publish(http, token, session)
    assert published.status_code == 201, published.text

    with engine.connect() as conn:
        changes = conn.execute(
            select(db.changes.c.project).where(db.changes.c.serial > serial_before)
        ).all()
        journal = conn.execute(
            select(db.journal.c.id, db.journal.c.action)
            .where(db.journal.c.project == "cost-once")
            .order_by(db.journal.c.id)
        ).all()
    # One change for the release, not one per file (each would drop the project's pages).
    assert [c.project for c in changes] == ["cost-once"]
    # Every file still has its audit row; the publish's, the last, is the project's serial.
    actions = [row.action for row in journal]
    assert actions.count("file_upload") == len(TAGS)
    assert actions[-1] == "upload_session_publish"
    project = http.get("/prod/pypi/cost-once/json")
    assert project.status_code == 200, project.text
    assert project.json()["last_serial"] == journal[-1].id


def test_a_publish_asks_about_every_file_at_once_and_still_refuses_each_taken_one(
    server: LiveServer, http: httpx.Client
) -> None:
    """Wheels only (an sdist is always asked about alone): the batched question must find the
    one a legacy upload published meanwhile, among files that are new."""
    token = server.token("cost-owner", "prod")
    session = open_session(http, token, "cost-batch", "1.0")
    wheels = [build_wheel("cost-batch", "1.0", tag=tag) for tag in TAGS]
    for filename, data in wheels:
        upload_completed(http, token, session, filename, data)
    raced = wheels[1]
    assert upload(http, "prod", token, *raced).status_code == 200  # the legacy way, meanwhile
    assert_problem(publish(http, token, session), 409, f"File already exists ('{raced[0]}'")
    page = http.get(
        "/prod/simple/cost-batch/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert [f["filename"] for f in page.json()["files"]] == [raced[0]]
