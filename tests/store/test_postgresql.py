"""The store on PostgreSQL (a real server, tests/pg.py): the schema and its migrations, the
write lock that stands in for SQLite's BEGIN IMMEDIATE, read snapshots, and the one line
`keyless serve` prints when the database URL cannot be used."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, insert, select, text

from keyless.config import ConfigError, load_settings
from keyless.store import db, migrations
from keyless.store.errors import UnstorableText
from keyless.store.migrations import baseline
from tests.pg import PostgreSQL
from tests.store.test_migrations import OPEN
from tests.store.test_older_schema import MADE_UP_REVISION, code_one_revision_ahead


def add_user(conn: Connection, name: str) -> None:
    now = dt.datetime.now(dt.UTC)
    conn.execute(insert(db.users).values(username=name, password_hash="x", created=now))


def test_a_new_database_is_created_at_the_head_revision(postgresql: PostgreSQL) -> None:
    engine = db.open_database(postgresql.new_database())
    state = migrations.current(engine)
    assert state.kind == "current"
    assert state.current == state.heads
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
    engine.dispose()


def test_a_database_from_before_migrations_is_brought_to_the_baseline(
    postgresql: PostgreSQL,
) -> None:
    url = postgresql.new_database()
    engine = db.connect(url)
    with engine.begin() as conn:
        baseline.schema.create_all(conn)
        conn.execute(text("ALTER TABLE projects DROP COLUMN similar_key"))
    engine.dispose()
    with pytest.raises(migrations.SchemaOutOfDate) as refused:
        db.open_database(url)  # stamped at the baseline, which later revisions follow
    assert refused.value.current == ()  # left unstamped: "made before keyless had migrations"
    engine = db.open_database(url, upgrade=True)
    assert migrations.current(engine).current == tuple(migrations.scripts().get_heads())
    engine.dispose()


def test_an_older_schema_is_upgraded_on_postgresql(
    postgresql: PostgreSQL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgresql.new_database()
    engine = db.open_database(url)
    with db.writing(engine) as conn:
        add_user(conn, "alice")
    engine.dispose()
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "r0004_made_up.py").write_text(MADE_UP_REVISION, encoding="utf-8")
    code_one_revision_ahead(monkeypatch, versions)
    with pytest.raises(migrations.SchemaOutOfDate) as refused:
        db.open_database(url)
    assert postgresql.password not in str(refused.value)
    engine = db.open_database(url, upgrade=True)
    assert migrations.current(engine).current == ("r0004",)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT username, made_up_note FROM users")).all()
    assert [tuple(row) for row in rows] == [("alice", None)]
    engine.dispose()


def test_servers_starting_together_create_a_new_database_once(postgresql: PostgreSQL) -> None:
    url = postgresql.new_database()
    start = time.time() + 2
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, url, str(start)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, "\n".join(errors)
    engine = db.open_database(url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    assert [tuple(row) for row in versions] == [(h,) for h in migrations.scripts().get_heads()]
    engine.dispose()


def test_writers_run_one_at_a_time_and_readers_do_not_wait(postgresql: PostgreSQL) -> None:
    # What SQLite's BEGIN IMMEDIATE gives the use cases: a writer that has read "no such row"
    # is still right when it inserts, because no other writer ran in between.
    engine = db.open_database(postgresql.new_database())
    first_inside, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def first() -> None:
        with db.writing(engine) as conn:
            conn.execute(text("SELECT 1"))
            first_inside.set()
            release.wait(10)
            add_user(conn, "first")

    def second() -> None:
        with db.writing(engine) as conn:
            seen.append(conn.execute(select(func.count()).select_from(db.users)).scalar_one())
            add_user(conn, "second")

    one = threading.Thread(target=first)
    one.start()
    assert first_inside.wait(10)
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.5)
    assert seen == [], "a second writer ran while the first was open"
    with db.reading(engine) as conn:  # a reader is not held up by the open writer
        assert conn.execute(select(func.count()).select_from(db.users)).scalar_one() == 0
    release.set()
    one.join(10)
    two.join(10)
    assert seen == [1]  # it saw the first writer's row: it ran after its commit
    engine.dispose()


def test_reads_in_one_transaction_agree(postgresql: PostgreSQL) -> None:
    engine = db.open_database(postgresql.new_database())
    with db.reading(engine) as conn:
        before = conn.execute(select(func.count()).select_from(db.users)).scalar_one()
        with db.writing(engine) as other:
            add_user(other, "meanwhile")
        after = conn.execute(select(func.count()).select_from(db.users)).scalar_one()
    assert before == after == 0
    engine.dispose()


def test_the_url_is_a_setting_of_file_environment_and_command_line(tmp_path: Path) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text('[database]\nurl = "postgresql+psycopg://a@h/file"\n', encoding="utf-8")
    assert load_settings(config, environ={}).database == "postgresql+psycopg://a@h/file"
    env = {"KEYLESS_DATABASE_URL": "postgresql+psycopg://a@h/env"}
    assert load_settings(config, environ=env).database.endswith("/env")
    flag = {"database-url": "postgresql+psycopg://a@h/flag"}
    assert load_settings(config, environ=env, overrides=flag).database.endswith("/flag")


def test_a_url_keyless_cannot_use_is_named() -> None:
    with pytest.raises(ConfigError, match="is not one keyless can use"):
        db.connect("mysql://root:hunter2@db/keyless")
    assert db.database_url("postgresql://u@h/d").drivername == "postgresql+psycopg"


def serve_with(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyless", "serve", "--data", str(tmp_path / "data")],
        env={**os.environ, "KEYLESS_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("password", "refused the password of user 'keyless'; fix the password in the URL"),
        ("database", "has no database 'nowhere'; create it (createdb nowhere)"),
        ("port", "cannot reach PostgreSQL at 127.0.0.1:"),
        ("scheme", "is not one keyless can use: write postgresql+psycopg://"),
    ],
)
def test_a_database_that_cannot_be_used_stops_the_server_with_one_line(
    postgresql: PostgreSQL, tmp_path: Path, case: str, expected: str
) -> None:
    from tests.conftest import free_port

    secret = "s3cr3t-never-shown"
    url = {
        "password": postgresql.url(password=secret),
        "database": postgresql.url("nowhere"),
        "port": postgresql.url().replace(f":{postgresql.port}/", f":{free_port()}/"),
        "scheme": f"mysql://keyless:{secret}@127.0.0.1/keyless",
    }[case]
    done = serve_with(url, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert secret not in output
    assert postgresql.password not in output


def test_a_nul_character_is_the_clients_mistake(postgresql: PostgreSQL) -> None:
    # PostgreSQL's text holds no NUL; a request carrying one gets a 400 (index/app.py), not a 500.
    engine = db.open_database(postgresql.new_database())
    with pytest.raises(UnstorableText), db.reading(engine) as conn:
        conn.execute(select(db.users).where(db.users.c.username == "a\x00b")).all()
    with pytest.raises(UnstorableText), db.writing(engine) as conn:
        add_user(conn, "a\x00b")
    engine.dispose()
