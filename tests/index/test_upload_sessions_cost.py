"""What a PEP 694 session costs the index, as the clients see it: a publish of many files
changes its project once (one serial, one change for the page caches), and every request is
still checked against the rights of the moment."""

from __future__ import annotations

import hashlib
import re

import httpx
from sqlalchemy import Engine, event, func, select, update

from keyless.index.accounts import Accounts, Identity
from keyless.index.releases import Event, NewFile, NewRelease, Target, add_files, taken
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


def transactions(http: httpx.Client) -> tuple[int, int]:
    """The server's database transactions so far, (reading, writing), from its /_/metrics."""
    text = http.get("/_/metrics").text
    found = dict(re.findall(r'^keyless_db_transactions_total\{mode="(\w+)"\} (\d+)$', text, re.M))
    return int(found["read"]), int(found["write"])


def test_a_file_costs_one_transaction_per_step(server: LiveServer, http: httpx.Client) -> None:
    """A file's three requests (create, bytes, complete) run five transactions: create one
    (writing); bytes one before the body (may it come?) and one to record it; complete one
    for its checks, outside the write lock, and one to record them. Each authenticates its
    token inside the first of them: none is spent on authenticating alone (there were 8)."""
    token = server.token("cost-owner", "prod")
    session = open_session(http, token, "cost-steps", "1.0")
    filename, data = build_wheel("cost-steps", "1.0")
    before = transactions(http)
    assert transactions(http) == before  # reading the counters costs none
    upload_completed(http, token, session, filename, data)
    after = transactions(http)
    assert (after[0] - before[0], after[1] - before[1]) == (2, 3)  # (reading, writing)


def test_the_name_and_bytes_rules_are_one_statement(server: LiveServer, http: httpx.Client) -> None:
    """`taken` (asked by a session file's completion, and by the legacy upload, a promote, an
    import) answers its four questions in one statement (there were four, ~60 µs of CPU each
    through SQLAlchemy), with the answers the four gave: the same file, its name or its bytes
    taken, or new."""
    token = server.token("cost-owner", "prod")
    filename, data = build_wheel("cost-rules", "1.0")
    assert upload(http, "prod", token, filename, data).status_code == 200
    other_name, other_data = build_wheel("cost-rules", "1.0", tag="cp312-cp312-win_amd64")
    blake2 = hashlib.blake2b(data, digest_size=32).hexdigest()
    other_blake2 = hashlib.blake2b(other_data, digest_size=32).hexdigest()
    engine = server.engine()
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    with engine.connect() as conn:
        index_id = conn.execute(
            select(db.indexes.c.id).where(db.indexes.c.name == "prod")
        ).scalar_one()
        event.listen(engine, "before_cursor_execute", count)
        try:
            answers = [
                taken(conn, index_id, None, name, digest, None).existing
                for name, digest in [
                    (filename, blake2),  # the same file: may be sent again
                    (filename, other_blake2),  # its name with other bytes
                    (other_name, blake2),  # its bytes under another name
                    (other_name, other_blake2),  # new
                ]
            ]
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert answers == [True, False, False, None]
    assert len(statements) == 4, statements


def _release_of(engine: Engine, identity: Identity, name: str, count: int) -> int:
    """Statements `add_files` runs for a new project's release of `count` files, each with
    its own METADATA and its own audit-only event, the release's event last."""
    files = [
        NewFile(
            filename=f"{name}-1.0-py3{i}-none-any.whl",
            packagetype="bdist_wheel",
            python_version=f"py3{i}",
            sha256=f"{i:064x}",
            md5=f"{i:032x}",
            blake2_256=f"{i:064x}",
            size=10,
            requires_python=None,
            metadata_sha256=hashlib.sha256(f"{name} {i}".encode()).hexdigest(),
            metadata=f"{name} {i}".encode(),
        )
        for i in range(count)
    ]
    events = [Event("file_upload", {"filename": f.filename}, changes_project=False) for f in files]
    statements: list[str] = []

    def count_one(conn: object, cursor: object, statement: str, *args: object) -> None:
        # Not the journal's pruning: it runs at every hundredth change, whichever write that is.
        if not statement.startswith("DELETE FROM changes"):
            statements.append(statement)

    with db.writing(engine) as conn:
        index_id = conn.execute(
            select(db.indexes.c.id).where(db.indexes.c.name == "prod")
        ).scalar_one()
        event.listen(engine, "before_cursor_execute", count_one)
        try:
            add_files(
                conn,
                Target(index_id, name),
                NewRelease("1.0", None, None, {}),
                files,
                identity,
                [*events, Event("release", {})],
            )
        finally:
            event.remove(engine, "before_cursor_execute", count_one)
    return len(statements)


def test_a_release_of_many_files_is_written_in_as_many_statements_as_one(
    server: LiveServer,
) -> None:
    """A session's publish writes its files' rows, METADATA and audit events in one write
    transaction, holding the write lock: a statement per kind, not one or two per file (a
    50-file publish ran 98 more), and the journal as before (the last event the serial)."""
    engine = server.engine()
    identity = Accounts(engine).authenticate(server.token("cost-owner", "prod"))
    many = _release_of(engine, identity, "cost-many", 20)
    with db.writing(engine) as conn:  # the next change is a hundredth: the journal is pruned
        conn.execute(
            update(db.change_serial).values(serial=db.change_serial.c.serial // 100 * 100 + 99)
        )
    assert many == _release_of(engine, identity, "cost-two", 2)
    with engine.connect() as conn:
        journal = conn.execute(
            select(db.journal.c.id, db.journal.c.action)
            .where(db.journal.c.project == "cost-many")
            .order_by(db.journal.c.id)
        ).all()
        serial = conn.execute(
            select(db.projects.c.serial).where(db.projects.c.normalized_name == "cost-many")
        ).scalar_one()
        stored = conn.execute(
            select(func.count()).where(
                db.core_metadata.c.sha256.in_(
                    [hashlib.sha256(f"cost-many {i}".encode()).hexdigest() for i in range(20)]
                )
            )
        ).scalar_one()
    assert [row.action for row in journal] == ["file_upload"] * 20 + ["release"]
    assert serial == journal[-1].id
    assert stored == 20
