"""The database's own upgrades for databases created by an earlier keyless."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from keyless.store import db


def test_a_database_from_before_similar_key_gets_the_column_filled(tmp_path: Path) -> None:
    path = tmp_path / "keyless.db"
    engine = db.open_database(path)
    with db.writing(engine) as conn:
        index_id = conn.execute(
            db.indexes.insert().values(
                name="prod",
                profile="pypi",
                max_file_size=1,
                max_project_size=1,
                created=datetime.now(UTC),
            )
        ).inserted_primary_key[0]
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
    # What an older keyless created: the table without the column (and its index).
    with sqlite3.connect(path) as raw:
        raw.execute("DROP INDEX ix_projects_similar_key")
        raw.execute("ALTER TABLE projects DROP COLUMN similar_key")

    engine = db.open_database(path)
    with db.reading(engine) as conn:
        keys = dict(conn.execute(select(db.projects.c.name, db.projects.c.similar_key)).all())
    assert keys == {"Toast-ing": "t0ast1ng", "other": "0ther"}
    with sqlite3.connect(path) as raw:
        indexes = {row[1] for row in raw.execute("PRAGMA index_list(projects)")}
    assert "ix_projects_similar_key" in indexes
    engine.dispose()
