"""The database's own upgrades for databases created by an earlier keyless."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select

from keyless.store import db


def _insert_index(conn: Connection) -> int:
    """An index 'prod' with tiny limits; its id."""
    inserted = conn.execute(
        db.indexes.insert().values(
            name="prod",
            profile="pypi",
            max_file_size=1,
            max_project_size=1,
            created=datetime.now(UTC),
        )
    )
    assert inserted.inserted_primary_key is not None
    index_id: int = inserted.inserted_primary_key[0]
    return index_id


def test_a_database_from_before_similar_key_gets_the_column_filled(tmp_path: Path) -> None:
    path = tmp_path / "keyless.db"
    engine = db.open_database(path)
    with db.writing(engine) as conn:
        index_id = _insert_index(conn)
        for name in ("Toast-ing", "other"):
            conn.execute(
                db.projects.insert().values(
                    index_id=index_id,
                    name=name,
                    normalized_name=name.lower(),
                    created=datetime.now(UTC),
                )
            )
    engine.dispose()
    # What an older keyless created: the table without the column (and its index), and no
    # migrations (so none of the tables later revisions add).
    with sqlite3.connect(path) as raw:
        raw.execute("DROP TABLE alembic_version")
        raw.execute("DROP TABLE changes")
        raw.execute("DROP TABLE change_serial")
        raw.execute("DROP TABLE mirrored_files")
        raw.execute("DROP TABLE upload_session_files")
        raw.execute("DROP TABLE upload_sessions")
        raw.execute("ALTER TABLE indexes DROP COLUMN close_releases_after")
        raw.execute("ALTER TABLE indexes DROP COLUMN close_session_releases")
        raw.execute("ALTER TABLE releases DROP COLUMN via_session")
        raw.execute("DROP INDEX ix_projects_similar_key")
        raw.execute("ALTER TABLE projects DROP COLUMN similar_key")

    engine = db.open_database(path, upgrade=True)  # to the baseline, then the later revisions
    with db.reading(engine) as conn:
        keys = dict(conn.execute(select(db.projects.c.name, db.projects.c.similar_key)).all())
    assert keys == {"Toast-ing": "t0ast1ng", "other": "0ther"}
    with sqlite3.connect(path) as raw:
        indexes = {row[1] for row in raw.execute("PRAGMA index_list(projects)")}
    assert "ix_projects_similar_key" in indexes
    engine.dispose()


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def _write_something(engine: Engine) -> None:
    with db.writing(engine) as conn:
        _insert_index(conn)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems give a service (files 0644), whatever the test runner's is."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.mark.usefixtures("usual_umask")
def test_a_new_database_and_its_log_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    # They hold password and token hashes and live sessions' CSRF tokens.
    path = tmp_path / "keyless.db"
    engine = db.open_database(path)
    _write_something(engine)
    files = [path, path.with_name("keyless.db-wal"), path.with_name("keyless.db-shm")]
    assert all(f.exists() for f in files)
    assert [f.name for f in files if not _private(f)] == []
    engine.dispose()


@pytest.mark.usefixtures("usual_umask")
def test_an_older_installations_database_files_are_made_private(tmp_path: Path) -> None:
    path = tmp_path / "keyless.db"
    older = sqlite3.connect(path, isolation_level=None)  # open: its -wal and -shm stay
    older.execute("PRAGMA journal_mode=WAL")
    older.execute("CREATE TABLE t (x)")
    files = [path, path.with_name("keyless.db-wal"), path.with_name("keyless.db-shm")]
    assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o644] * 3
    engine = db.open_database(path)
    assert [f.name for f in files if not _private(f)] == []
    assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o600] * 3
    older.close()
    engine.dispose()


def test_every_connection_commits_durably(tmp_path: Path) -> None:
    # WAL with synchronous=FULL fsyncs the log at each commit: an acknowledged upload survives
    # a power cut. (NORMAL, as before, only survives a crash of the process.)
    engine = db.open_database(tmp_path / "keyless.db")
    connections = [engine.connect() for _ in range(3)]  # distinct pooled connections
    try:
        for conn in connections:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        for conn in connections:
            conn.close()
        engine.dispose()


def test_after_commit_hooks_run_once_after_the_commit_and_never_on_a_rollback(
    tmp_path: Path,
) -> None:
    engine = db.open_database(tmp_path / "hooks.sqlite3")
    ran: list[str] = []

    def rolled_back() -> None:
        with db.writing(engine) as conn:
            db.after_commit(conn, lambda: ran.append("rolled back"))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        rolled_back()
    assert ran == []
    with db.writing(engine) as conn:
        db.after_commit(conn, lambda: ran.append(f"committed {len(ran)}"))
        _insert_index(conn)
        assert ran == []  # not before the commit
    assert ran == ["committed 0"]
    with db.writing(engine) as conn:  # the same pooled connection carries no hook over
        pass
    assert ran == ["committed 0"]
    engine.dispose()
