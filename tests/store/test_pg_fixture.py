"""The PostgreSQL the tests start (tests/pg.py): a real server, unprivileged, private, its own
database per test, and gone when the session ends."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from tests.pg import SUPERUSER, PostgreSQL, start_postgresql


def test_a_server_per_session_with_a_database_per_test(postgresql: PostgreSQL) -> None:
    first, second = postgresql.new_database("one"), postgresql.new_database("two")
    assert first != second
    one, two = first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]
    with postgresql.connect(one) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with postgresql.connect(two) as conn:  # the other database does not see it
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    with postgresql.connect() as conn:
        version = conn.execute("SHOW server_version").fetchone()
        listening = conn.execute("SELECT current_setting('listen_addresses')").fetchone()
    assert version is not None
    assert int(str(version[0]).split(".")[0]) >= 13
    assert listening == ("127.0.0.1",)


def test_it_refuses_a_wrong_password(postgresql: PostgreSQL) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=postgresql.host,
            port=postgresql.port,
            user=SUPERUSER,
            password="not-it",
            dbname="postgres",
        )


def test_it_runs_unprivileged_and_stops_by_its_pid() -> None:
    with start_postgresql() as server:
        pid = server.process.pid
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            uid = next(line for line in status if line.startswith("Uid:")).split()[1]
        assert os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "postgres"
        if os.geteuid() == 0:
            assert uid != "0"
        port = server.port
    assert server.process.poll() is not None
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
    assert not server.folder.exists()
