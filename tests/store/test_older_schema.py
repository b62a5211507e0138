"""A database at an older revision: refused with what to run, or upgraded when asked.

"This code is newer than the database" is made by adding a
made-up revision (r0004, in a temporary folder) to the history the code reads.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from keyless.store import db, migrations
from tests.conftest import start_server

MADE_UP_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("made_up_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("made_up_note")
"""

# Runs the `keyless` command with the made-up revision in its history: the code is then one
# revision ahead of any database made without it. Called as `python run.py VERSIONS keyless-argv`
# or, as start_server's prefix, `python run.py VERSIONS python -m keyless argv`.
RUNNER = """
import sys
from pathlib import Path
from keyless.store import migrations
migrations.VERSION_LOCATIONS.append(Path(sys.argv[1]))
from keyless.cli.main import main
argv = sys.argv[2:]
if argv[1:3] == ["-m", "keyless"]:
    argv = argv[3:]
sys.exit(main(argv))
"""


@pytest.fixture
def made_up_versions(tmp_path: Path) -> Path:
    versions = tmp_path / "made-up-versions"
    versions.mkdir()
    (versions / "r0004_made_up.py").write_text(MADE_UP_REVISION, encoding="utf-8")
    return versions


def code_one_revision_ahead(monkeypatch: pytest.MonkeyPatch, versions: Path) -> None:
    monkeypatch.setattr(migrations, "VERSION_LOCATIONS", [*migrations.VERSION_LOCATIONS, versions])


def database_at_r0003(path: Path) -> Path:
    """A database the released code made, with a user in it."""
    engine = db.open_database(path)
    with db.writing(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO users (username, password_hash, is_admin, created) "
                "VALUES ('alice', 'x', 0, '2026-12-07 00:00:00')"
            )
        )
    engine.dispose()
    return path


def test_an_older_schema_is_refused_until_upgraded(
    tmp_path: Path, made_up_versions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = database_at_r0003(tmp_path / "keyless.db")
    code_one_revision_ahead(monkeypatch, made_up_versions)
    with pytest.raises(migrations.SchemaOutOfDate) as refused:
        db.open_database(path)
    assert refused.value.current == ("r0003",)
    assert "older than this keyless needs (r0004): run `keyless db upgrade`" in str(refused.value)
    assert migrations.current(db.connect(path)).kind == "behind"

    engine = db.open_database(path, upgrade=True)
    assert migrations.current(engine).current == ("r0004",)
    engine.dispose()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT username, made_up_note FROM users").fetchall()
    assert rows == [("alice", None)]


def test_a_revision_this_code_does_not_know_is_refused(tmp_path: Path) -> None:
    # What an older keyless finds after a newer one upgraded the database.
    path = database_at_r0003(tmp_path / "keyless.db")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'r0099'")
    with pytest.raises(
        migrations.SchemaOutOfDate, match="does not know: it was upgraded by a newer"
    ):
        db.open_database(path, upgrade=True)
    assert migrations.current(db.connect(path)).kind == "unknown"


def run_keyless(runner: Path, versions: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(runner), str(versions), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_server_on_an_older_schema_says_what_to_run_and_exits(
    tmp_path: Path, made_up_versions: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    database_at_r0003(data / "keyless.db")
    runner = tmp_path / "run.py"
    runner.write_text(RUNNER, encoding="utf-8")

    refused = run_keyless(runner, made_up_versions, "serve", "--data", str(data), "--port", "1")
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: the database {data / 'keyless.db'} is at schema revision r0003, "
        "older than this keyless needs (r0004): run `keyless db upgrade --data "
        f"{data}` (back it up first), or set `auto-upgrade = true` under [database] to "
        "upgrade at start.\n"
    )
    current = run_keyless(runner, made_up_versions, "db", "current", "--data", str(data))
    assert current.returncode == 1
    assert "r0003 (older than this keyless' r0004" in current.stdout

    upgraded = run_keyless(runner, made_up_versions, "db", "upgrade", "--data", str(data))
    assert (upgraded.returncode, upgraded.stdout) == (0, "schema upgraded: r0003 -> r0004\n")
    again = run_keyless(runner, made_up_versions, "db", "current", "--data", str(data))
    assert (again.returncode, again.stdout) == (0, "r0004 (the revision this keyless needs)\n")


def test_a_server_set_to_auto_upgrade_upgrades_at_start(
    tmp_path: Path, made_up_versions: Path
) -> None:
    folder = tmp_path / "server"
    (folder / "data").mkdir(parents=True)
    database = database_at_r0003(folder / "data" / "keyless.db")
    runner = tmp_path / "run.py"
    runner.write_text(RUNNER, encoding="utf-8")
    server = start_server(
        folder,
        config_text="[database]\nauto-upgrade = true\n",
        prefix=(sys.executable, str(runner), str(made_up_versions)),
    )
    try:
        with server.client() as client:
            assert client.get("/prod/simple/").status_code == 200
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("r0004",)]
        assert conn.execute("SELECT username, made_up_note FROM users").fetchall() == [
            ("alice", None)
        ]


RECREATES_A_REFERENCED_TABLE = """
import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # What SQLite cannot ALTER (here: a column's type) is done by copying the table into a new
    # one and dropping the old, which other tables' rows refer to.
    with op.batch_alter_table("users", recreate="always") as batch:
        batch.alter_column("username", type_=sa.String(128))


def downgrade() -> None:
    pass
"""


def test_a_revision_may_copy_a_table_other_rows_refer_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite enforces foreign keys in keyless' connections; dropping `users` while API tokens
    # refer to it is refused unless the upgrade runs with the checks off (and checks after).
    path = database_at_r0003(tmp_path / "keyless.db")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO api_tokens (token_hash, kind, user_id, description, created) "
            "VALUES ('h', 'user', 1, '', '2026-12-07 00:00:00')"
        )
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "r0004_recreate.py").write_text(RECREATES_A_REFERENCED_TABLE, encoding="utf-8")
    code_one_revision_ahead(monkeypatch, versions)

    engine = db.open_database(path, upgrade=True)
    assert migrations.current(engine).current == ("r0004",)
    with db.reading(engine) as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again
        tokens = conn.execute(
            text(
                "SELECT users.username FROM api_tokens JOIN users ON users.id = api_tokens.user_id"
            )
        ).all()
    assert [tuple(row) for row in tokens] == [("alice",)]
    engine.dispose()
