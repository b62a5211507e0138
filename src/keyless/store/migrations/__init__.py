"""Schema migrations: one Alembic history for SQLite and PostgreSQL.

Every database carries the revision it is at (Alembic's `alembic_version` table). At open,
`ensure_schema` decides what to do with it:

- no keyless table yet: the current schema (`store.db.metadata`) is created and stamped at
  the head revision, so a fresh data folder needs no command;
- keyless tables but no revision: a database made before keyless had migrations. It is brought
  to the baseline (`baseline.py`: the tables and the column its `create_all` may have lacked)
  and stamped at it; that changes no row;
- an older revision: upgraded when the caller allows it (`[database] auto-upgrade`, or
  `keyless db upgrade`), otherwise `SchemaOutOfDate`, whose message says what to run;
- a revision this code does not know (a newer keyless made it): `SchemaOutOfDate` too.

All of it runs in one write transaction (SQLite's BEGIN IMMEDIATE, a PostgreSQL advisory
lock), so servers starting together on one database create or upgrade it once.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, select, text, update

from keyless.dists.names import ultranormalize_name
from keyless.store.db import metadata, reading, writing
from keyless.store.migrations import baseline

HERE = Path(__file__).parent
# Where revisions are read from. A list so that a test can add a folder of made-up revisions.
VERSION_LOCATIONS: list[Path] = [HERE / "versions"]
# The revision that creates `baseline.schema`: a database from before migrations is at it.
BASELINE = "r0001"
# Any number, the same in every process: the PostgreSQL lock that serialises schema changes.
_POSTGRESQL_LOCK = 0x6B65796C

Kind = Literal["empty", "before-migrations", "current", "behind", "unknown"]


class SchemaOutOfDate(Exception):
    """The database's schema is not the one this code needs; the message says what to do."""

    def __init__(self, where: str, current: Sequence[str], heads: Sequence[str], known: bool):
        self.where, self.current, self.heads, self.known = where, tuple(current), heads, known
        super().__init__(self.explain("keyless db upgrade"))

    def explain(self, upgrade_command: str) -> str:
        """The one line to show, with the exact upgrade command for how it was started."""
        at = ", ".join(self.current) or f"{BASELINE} (made before keyless had migrations)"
        if not self.known:
            return (
                f"the database {self.where} is at schema revision {at}, which this keyless "
                f"(schema {', '.join(self.heads)}) does not know: it was upgraded by a newer "
                "keyless; run that version."
            )
        return (
            f"the database {self.where} is at schema revision {at}, older than this keyless "
            f"needs ({', '.join(self.heads)}): run `{upgrade_command}` (back it up first), or "
            "set `auto-upgrade = true` under [database] to upgrade at start."
        )


@dataclass(frozen=True)
class SchemaState:
    kind: Kind
    current: tuple[str, ...]  # the revisions the database is stamped at (none when unstamped)
    heads: tuple[str, ...]  # what this code needs


def alembic_config(url: str = "", connection: Connection | None = None) -> Config:
    """Alembic's configuration for keyless' migrations, without an alembic.ini.

    `connection` (an open transaction) is what the migrations run on; `url` is for offline
    SQL (`alembic upgrade --sql`), which needs only a dialect.
    """
    config = Config(output_buffer=io.StringIO())
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(map(str, VERSION_LOCATIONS)))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts(locations: tuple[Path, ...]) -> ScriptDirectory:
    """The revisions, read once per process (each open of a database asks for the heads)."""
    return ScriptDirectory(str(HERE), version_locations=[str(p) for p in locations])


def scripts() -> ScriptDirectory:
    return _scripts(tuple(VERSION_LOCATIONS))


def schema_state(conn: Connection) -> SchemaState:
    heads = tuple(scripts().get_heads())
    current = tuple(MigrationContext.configure(conn).get_current_heads())
    if not current:
        tables = set(inspect(conn).get_table_names())
        kind: Kind = "before-migrations" if tables & set(baseline.schema.tables) else "empty"
    elif set(current) == set(heads):
        kind = "current"
    elif set(current) <= {script.revision for script in scripts().walk_revisions()}:
        kind = "behind"
    else:
        kind = "unknown"
    return SchemaState(kind, current, heads)


def ensure_schema(engine: Engine, *, upgrade: bool) -> SchemaState:
    """Create, adopt or (when `upgrade`) upgrade the schema; raise SchemaOutOfDate otherwise.

    Returns the state found before anything was done.
    """
    with reading(engine) as conn:  # the usual case, without taking the write lock
        found = schema_state(conn)
    if found.kind == "current":
        return found
    with _schema_transaction(engine) as conn:
        found = schema_state(conn)  # again: another process may have just done it
        if found.kind == "empty":
            metadata.create_all(conn)
            MigrationContext.configure(conn).stamp(scripts(), "heads")
            return found
        state = found
        if state.kind == "before-migrations":
            _bring_to_baseline(conn)
            MigrationContext.configure(conn).stamp(scripts(), BASELINE)
            state = schema_state(conn)
        if state.kind == "behind" and upgrade:
            command.upgrade(alembic_config(connection=conn), "heads")
            state = schema_state(conn)
        if state.kind != "current":
            where = (
                engine.url.database
                if engine.dialect.name == "sqlite" and engine.url.database
                else engine.url.render_as_string(hide_password=True)  # never its password
            )
            # Raising rolls the stamp back: a database from before migrations stays unstamped.
            stamped = () if found.kind == "before-migrations" else state.current
            raise SchemaOutOfDate(where, stamped, state.heads, state.kind == "behind")
    return found


@contextmanager
def _schema_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction for a schema change, which one process at a time runs.

    SQLite's write transaction already excludes every other writer; PostgreSQL's does not (two
    CREATE TABLEs would race), so its schema changes take a lock held to the commit.

    On SQLite, foreign keys are not enforced during it, as SQLite's own procedure for schema
    changes says (https://www.sqlite.org/lang_altertable.html): batch mode copies a table and
    drops the old one, which rows of other tables still refer to. They are checked as a whole
    before the commit instead.
    """
    if engine.dialect.name != "sqlite":
        with writing(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRESQL_LOCK})
            yield conn
        return
    with engine.connect() as conn:
        # On the driver's connection, outside a transaction: inside one, the pragma does nothing.
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            conn.execution_options(writing=True)  # BEGIN IMMEDIATE (store.db._sqlite_begin)
            with conn.begin():
                yield conn
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(
                        f"the schema change leaves rows referring to missing ones: {broken[:5]}"
                    )
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def _bring_to_baseline(conn: Connection) -> None:
    """What a keyless from before migrations did at every start: create the tables and indexes
    it lacked (`create_all`) and add `projects.similar_key`, filled from the names.
    """
    baseline.schema.create_all(conn, checkfirst=True)
    projects = baseline.projects
    if "similar_key" not in {c["name"] for c in inspect(conn).get_columns("projects")}:
        conn.exec_driver_sql("ALTER TABLE projects ADD COLUMN similar_key VARCHAR(255)")
        for row in conn.execute(select(projects.c.id, projects.c.name)).all():
            conn.execute(
                update(projects)
                .where(projects.c.id == row.id)
                .values(similar_key=ultranormalize_name(row.name))
            )
    for table in baseline.schema.sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def upgrade(engine: Engine) -> tuple[SchemaState, SchemaState]:
    """`keyless db upgrade`: the state before and after."""
    before = ensure_schema(engine, upgrade=True)
    with reading(engine) as conn:
        return before, schema_state(conn)


def current(engine: Engine) -> SchemaState:
    """`keyless db current`: what the database is at, changing nothing."""
    with reading(engine) as conn:
        return schema_state(conn)
