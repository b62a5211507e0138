"""The change feed on PostgreSQL: a change is announced at its commit (NOTIFY) and found by
asking the listening connection's socket, not by reading the serial on every poll; when that
connection breaks, the feed reads the serial instead and misses nothing, then listens again.
On one host, the signal file tells before the notification arrives."""

from __future__ import annotations

import os
import signal
import time

import pytest

from keyless.store import changes, db
from keyless.store.changes import RECHECK_EVERY, RELISTEN_SECONDS, ChangeFeed, record_change
from tests.pg import PostgreSQL

# Well past a notification's delivery on a loaded machine (measured: under 2 ms).
SETTLE = 0.05


def change(engine: object, project: str) -> None:
    with db.writing(engine) as conn:  # type: ignore[arg-type]
        record_change(conn, 1, project)


@pytest.fixture
def on_another_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writes of this test signal nothing through the host's file, as on another host:
    only the notification tells the feed."""
    monkeypatch.setattr(changes._HostSignal, "touch", lambda self: None)


@pytest.mark.usefixtures("on_another_host")
def test_a_change_by_another_host_is_found_without_reading_the_serial(
    postgresql: PostgreSQL,
) -> None:
    url = postgresql.new_database("feed")
    here, there = db.open_database(url), db.open_database(url)
    feed = ChangeFeed(here)
    reads = 0
    read_serial = feed._read_serial

    def counted() -> int:
        nonlocal reads
        reads += 1
        return read_serial()

    feed._read_serial = counted
    for _ in range(RECHECK_EVERY - 10):  # nothing changed: no read at all
        assert feed.poll() == ()
    assert reads == 0
    change(there, "announced")
    time.sleep(SETTLE)
    assert [c.project for c in feed.poll() or ()] == ["announced"]
    assert reads == 1
    here.dispose()
    there.dispose()


@pytest.mark.usefixtures("on_another_host")
def test_a_broken_listening_connection_costs_speed_not_changes(postgresql: PostgreSQL) -> None:
    url = postgresql.new_database("broken")
    here, there = db.open_database(url), db.open_database(url)
    feed = ChangeFeed(here)
    with postgresql.connect() as admin:  # what a restart of PostgreSQL does to it
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
        )
    time.sleep(SETTLE)
    assert feed.poll() == ()  # finds the broken connection; nothing changed
    change(there, "while deaf")
    assert [c.project for c in feed.poll() or ()] == ["while deaf"]  # read, not announced
    time.sleep(RELISTEN_SECONDS + SETTLE)
    feed.poll()  # listens again
    change(there, "heard again")
    time.sleep(SETTLE)
    assert [c.project for c in feed.poll() or ()] == ["heard again"]
    here.dispose()
    there.dispose()


def test_a_change_on_this_host_is_seen_before_its_notification(postgresql: PostgreSQL) -> None:
    """The listening connection's server process is stopped, so the notification cannot arrive
    at all: a poll right after the commit still finds the change, from the host's file."""
    url = postgresql.new_database("host")
    here, there = db.open_database(url), db.open_database(url)
    feed = ChangeFeed(here)
    with postgresql.connect() as admin:
        listener = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %%' AND datname = %s",
            (url.rsplit("/", 1)[-1],),
        ).fetchone()
    assert listener is not None
    os.kill(listener[0], signal.SIGSTOP)
    try:
        assert feed.poll() == ()
        change(there, "before the notification")
        assert [c.project for c in feed.poll() or ()] == ["before the notification"]
    finally:
        os.kill(listener[0], signal.SIGCONT)
    here.dispose()
    there.dispose()
