"""Schema migrations: the history builds today's schema, on SQLite and (as SQL) PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from keyless.store import db, migrations


def test_the_history_builds_exactly_the_schema_the_code_uses(tmp_path: Path) -> None:
    # A change to store/db.py without its revision fails here: fresh databases (create_all)
    # and upgraded ones (the revisions) would differ.
    engine = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(connection=conn), "heads")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
        assert set(context.get_current_heads()) == set(migrations.scripts().get_heads())
    assert differences == []
    assert inspect(engine).get_table_names() == sorted([*db.metadata.tables, "alembic_version"])


def test_a_new_database_is_created_at_the_head_revision(tmp_path: Path) -> None:
    engine = db.open_database(tmp_path / "keyless.db")
    state = migrations.current(engine)
    assert state.kind == "current"
    assert state.current == state.heads == ("r0006",)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []


def test_the_history_renders_as_postgresql_sql() -> None:
    # Offline mode: the SQL a PostgreSQL upgrade would run, from the dialect alone.
    config = migrations.alembic_config(url="postgresql+psycopg://keyless@localhost/keyless")
    command.upgrade(config, "heads", sql=True)
    sql = config.output_buffer.getvalue()  # type: ignore[union-attr]
    for table in db.metadata.tables:
        assert f"CREATE TABLE {table} (" in sql
    assert "CREATE TABLE alembic_version" in sql
    # PostgreSQL's own types, not SQLite's spelling of them.
    assert "created TIMESTAMP WITH TIME ZONE NOT NULL" in sql
    assert "data BYTEA NOT NULL" in sql
    assert "INSERT INTO alembic_version (version_num) VALUES ('r0001')" in sql


OPEN = """
import sys, time
from keyless.store import db
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
db.open_database(sys.argv[1]).dispose()
"""


def test_servers_starting_together_create_a_new_database_once(tmp_path: Path) -> None:
    # `keyless serve --workers N`, or several machines: each process opens the new database
    # at the same moment; one creates the schema, the others find it done.
    path = tmp_path / "keyless.db"
    start = time.time() + 2  # after every interpreter has started
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(path), str(start)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, "\n".join(errors)
    engine = db.open_database(path)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [("r0006",)]
    engine.dispose()
