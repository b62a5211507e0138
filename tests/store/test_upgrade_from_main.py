"""A data folder made by keyless before it had migrations (commit 4585358) upgrades without loss.

The folder (`data/main-4585358/`: the database as SQL, the blobs) was made by that commit's
`keyless serve`, `user add`, `token create|revoke`, twine and `publisher add`; see
`data/make-main-4585358.sh`.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from keyless.store import db, migrations
from tests.builders import build_wheel, write_dist
from tests.conftest import client_env, run_keyless, start_server
from tests.index.test_clients import twine_upload
from tests.store.test_older_schema import MADE_UP_REVISION

FIXTURE = Path(__file__).parent / "data" / "main-4585358"


def restore(data: Path) -> Path:
    data.mkdir(parents=True)
    database = data / "keyless.db"
    with sqlite3.connect(database) as conn:
        conn.executescript((FIXTURE / "keyless.sql").read_text(encoding="utf-8"))
    shutil.copytree(FIXTURE / "blobs", data / "blobs")
    return database


def all_rows(
    database: Path, columns: dict[str, list[str]] | None = None
) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of every keyless table (of `columns`' columns only, when given)."""
    with sqlite3.connect(database) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name != "alembic_version"
        ]
        return {
            table: set(
                conn.execute(f"SELECT {', '.join((columns or {}).get(table, ['*']))} FROM {table}")  # noqa: S608
            )
            for table in tables
        }


def column_names(database: Path) -> dict[str, list[str]]:
    with sqlite3.connect(database) as conn:
        tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [c[1] for c in conn.execute(f"PRAGMA table_info({t})")] for t in tables}


def test_a_database_made_before_migrations_is_served_and_written_after_the_upgrade(
    tmp_path: Path,
) -> None:
    database = restore(tmp_path / "server" / "data")
    before = all_rows(database)
    assert len(before["files"]) == 2
    assert len(before["api_tokens"]) == 2

    # The code is a revision ahead of the baseline the old database is stamped at (r0002, the
    # change serial): upgraded as the message a server started on it prints says.
    upgraded = run_keyless("db", "upgrade", "--data", str(database.parent))
    assert upgraded.returncode == 0, upgraded.stderr
    server = start_server(tmp_path / "server")
    try:
        # Every row is still there, unchanged, once the new code has opened the database.
        after = all_rows(database)
        lost = {table: rows - after[table] for table, rows in before.items() if rows - after[table]}
        assert lost == {}
        with server.client() as client:
            page = client.get(
                "/prod/simple/demo-migrated/",
                headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            ).json()
            assert sorted(f["filename"] for f in page["files"]) == [
                "demo_migrated-1.0-py3-none-any.whl",
                "demo_migrated-1.0.tar.gz",
            ]
            for listed in page["files"]:  # the blobs are served, byte for byte
                body = client.get(listed["url"]).content
                assert hashlib.sha256(body).hexdigest() == listed["hashes"]["sha256"]
        # The account made by the old code uploads through the new one (real twine).
        server._users.add("alice")
        token = server.token("alice", "prod")
        wheel = write_dist(tmp_path, *build_wheel("demo-migrated", "1.1"))
        uploaded = twine_upload(server, "prod", token, [wheel], client_env(tmp_path))
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)

    assert len(all_rows(database)["files"]) == 3
    current = run_keyless("db", "current", "--data", str(database.parent))
    assert (current.returncode, current.stdout) == (0, "r0003 (the revision this keyless needs)\n")


def test_a_database_made_before_migrations_upgrades_through_a_later_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The day keyless has a second revision: the released database is stamped at the baseline,
    # then upgraded, when asked to, without losing a row.
    database = restore(tmp_path / "data")
    columns = column_names(database)
    before = all_rows(database)
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "r0004_made_up.py").write_text(MADE_UP_REVISION, encoding="utf-8")
    monkeypatch.setattr(migrations, "VERSION_LOCATIONS", [*migrations.VERSION_LOCATIONS, versions])

    with pytest.raises(migrations.SchemaOutOfDate) as refused:
        db.open_database(database)
    assert "is at schema revision r0001 (made before keyless had migrations), older" in str(
        refused.value
    )
    assert all_rows(database) == before  # refusing changed nothing

    db.open_database(database, upgrade=True).dispose()
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("r0004",)]
    after = all_rows(database, columns)
    assert {table: after[table] for table in before} == before  # later revisions add tables
