"""The change serial: how every server process learns, on its next request, what another one
changed (see `db.change_serial`).

Writers call `record_change` inside the transaction that makes the change. Each process keeps
a `ChangeFeed` and asks it, once per request, for what changed since it last asked. Almost
every request finds nothing, so that question must cost next to nothing: the serial row is
read only when a cheaper sign says something was committed — on SQLite, the WAL-index header
in shared memory; on PostgreSQL, a value in a file every process on the host maps (each
change writes a new one after its commit, see `_HostSignal`) and, from other hosts, a
notification on a connection that LISTENs (each change also NOTIFYs, delivered at its commit),
found by asking the socket whether bytes wait.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import mmap
import os
import select as select_module
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, bindparam, delete, make_url, select, text, update

from keyless.store import db

# `changes` rows kept behind the newest. A process that fell further behind than this (it
# slept, or a burst of changes) cannot tell exactly what changed and drops everything instead.
KEEP = 1000

_BUMP = (
    update(db.change_serial)
    .where(db.change_serial.c.id == 1)
    .values(serial=db.change_serial.c.serial + 1)
)
_READ = select(db.change_serial.c.serial).where(db.change_serial.c.id == 1)
_INSERT = db.changes.insert()
_PRUNE = delete(db.changes).where(db.changes.c.serial <= bindparam("oldest"))
# PostgreSQL: the channel every change is announced on (`record_change`), and how often a
# process whose listening connection broke tries to open it again (meanwhile it reads the
# serial on every request, so nothing is missed, only slower).
CHANNEL = "keyless_changes"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")
RELISTEN_SECONDS = 1.0

log = logging.getLogger("keyless.changes")

_SINCE = (
    select(db.changes.c.serial, db.changes.c.index_id, db.changes.c.project)
    .where(db.changes.c.serial > bindparam("seen"))
    .order_by(db.changes.c.serial)
)


def record_change(conn: Connection, index_id: int, project: str | None) -> int:
    """Note, in the caller's writing transaction, that what `index_id`/`project` serves changed
    (`project` None: the index itself). Returns the new serial."""
    conn.execute(_BUMP)  # first: its row lock orders concurrent writers until they commit
    serial = int(conn.execute(_READ).scalar_one())
    conn.execute(_INSERT, {"serial": serial, "index_id": index_id, "project": project})
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY)  # delivered to the listeners when this transaction commits
        signal = _HostSignal.of(conn.engine)
        if signal is not None:  # and the processes on this host know before the answer
            db.after_commit(conn, signal.touch)
    if serial % 100 == 0:  # bounded, and not a DELETE on every change
        conn.execute(_PRUNE, {"oldest": serial - KEEP})
    return serial


@dataclass(frozen=True)
class Change:
    index_id: int
    project: str | None


# What changed since the last check: None when it cannot be told (drop everything).
Changes = tuple[Change, ...] | None
NOTHING: tuple[Change, ...] = ()


class ChangeFeed:
    """This process's view of the change serial. `poll()` is on every request's path."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read_serial, self._wal_header = _serial_reader(engine)
        self._lock = threading.Lock()
        self._header = self._wal_header()
        self._quiet = RECHECK_EVERY
        self.seen = self._read_serial()

    def poll(self) -> Changes:
        """What changed since the last poll (nothing, almost always); remembers the new serial."""
        header = self._wal_header()
        if header == self._header:
            self._quiet -= 1
            if self._quiet:
                return NOTHING
            self._quiet = RECHECK_EVERY  # a read of the serial itself now and then, in any case
        self._header = header  # before the read: a commit after it changes the header again
        serial = self._read_serial()
        if serial == self.seen:
            return NOTHING
        with self._lock:  # one caller catches up; another at once finds nothing left
            if serial <= self.seen:
                return NOTHING
            with db.reading(self.engine) as conn:
                rows = conn.execute(_SINCE, {"seen": self.seen}).all()
            expected = self.seen + 1
            complete = bool(rows) and rows[0].serial == expected
            complete = complete and rows[-1].serial - expected + 1 == len(rows)
            if not complete:
                self.seen = max(serial, rows[-1].serial if rows else serial)
                return None
            self.seen = rows[-1].serial
            return tuple(Change(row.index_id, row.project) for row in rows)


# Every how many polls the serial is read even when the WAL header says nothing was committed:
# a bound on what any mistake in reading that header could cost, not something correctness
# relies on. (A count, not a clock: reading the clock cost a tenth of the whole check.)
RECHECK_EVERY = 1000
# The first copy of SQLite's WAL-index header, at the start of the -shm file
# (https://www.sqlite.org/walformat.html, "The WAL-Index Header"): its change counter, frame
# count, salts and checksums. Every commit rewrites it; SQLite's own readers compare it with
# memcmp to learn whether anything was committed since they last looked, and so does this.
_WAL_HEADER = 48


def _serial_reader(engine: Engine) -> tuple[Callable[[], int], Callable[[], bytes]]:
    """The cheapest reads this backend allows: of the serial, and of a value that changes
    whenever anything is committed (b"" when there is none: the serial is then read always).

    SQLite: the serial by one statement on a connection of its own, outside SQLAlchemy, in
    autocommit (each read sees the latest commit); the commit marker by reading the WAL-index
    header through a memory map of the -shm file. Measured on the cached simple-page path
    (bench/freshness_cost.py): the statement cost more than answering the page itself, the
    header read a few percent of it. The connection stays open for the life of the process,
    which keeps the -shm file (SQLite removes it when the last connection closes).
    PostgreSQL: the serial through the engine; the commit marker from `_Listener`. Measured
    here (a local server, load average 4 to 5): reading the serial through the pool costs 0.55
    to 0.96 ms, more than answering a cached page; the socket check 3 to 5 µs. The price is the
    notification's delivery: a poll right after the commit, in the same thread, missed it 12 to
    14 times in 200 (0.5 ms later none did, idle; a loaded CI machine took longer), hence the
    host's signal file beside it, written before the writer answers.
    """
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        # Read and write, though it only reads: a read-only connection cannot open a WAL
        # database whose -shm file is gone (removed when its last connection closed).
        raw = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        raw.execute("PRAGMA busy_timeout=10000")
        sql = "SELECT serial FROM change_serial WHERE id = 1"

        def read_sqlite() -> int:  # on the event loop's thread only (IndexApp)
            row = raw.execute(sql).fetchone()
            return int(row[0]) if row else 0

        read_sqlite()  # maps the -shm file, in WAL mode
        return read_sqlite, _wal_header_reader(Path(database + "-shm"))

    def read_engine() -> int:
        with db.reading(engine) as conn:
            return int(conn.execute(_READ).scalar() or 0)

    if engine.dialect.name == "postgresql":
        listener, signal = _Listener(engine), _HostSignal.of(engine)
        if signal is None:
            return read_engine, listener.marker
        return read_engine, lambda: listener.marker() + signal.read()
    return read_engine, _always_changed


class _HostSignal:
    """PostgreSQL: an 8-byte file per database, in the temporary directory, that every keyless
    process on this host maps. After each commit that recorded a change, and before answering,
    the writer puts a new random value in it; a reader that finds another value than last time
    reads the serial.

    Why, beside the notification: a notification reaches the other processes some time after
    the commit — under 2 ms when idle, but a CI run with four test processes on two cores saw
    a worker answer, then the other worker serve the page from before the upload. The file's
    value is there before the writer's answer leaves, so on one host a client that reads after
    a write always sees it; processes on other hosts still learn from the notification. A
    random value, not a counter: two writers cannot lose each other's update by racing.
    """

    def __init__(self, mapped: mmap.mmap) -> None:
        self._mapped = mapped

    @classmethod
    def of(cls, engine: Engine) -> _HostSignal | None:
        """The signal of `engine`'s database (None where the file cannot be made or opened:
        then only the notification tells, as on another host)."""
        path = host_signal_path(engine.url)
        if path not in _SIGNALS:
            _SIGNALS[path] = cls._map(path)
        return _SIGNALS[path]

    @classmethod
    def _map(cls, path: str) -> _HostSignal | None:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # another user's file, or no temporary directory
            log.info("no change signal on this host (%s); notifications only", exc)
            return None
        try:
            if os.fstat(descriptor).st_size < _SIGNAL_SIZE:
                os.ftruncate(descriptor, _SIGNAL_SIZE)  # zeros; a racing creator's is the same
            return cls(mmap.mmap(descriptor, _SIGNAL_SIZE))
        except (OSError, ValueError) as exc:
            log.info("no change signal on this host (%s); notifications only", exc)
            return None
        finally:
            os.close(descriptor)  # the mapping stays valid without it

    def touch(self) -> None:
        self._mapped[:_SIGNAL_SIZE] = os.urandom(_SIGNAL_SIZE)

    def read(self) -> bytes:
        return self._mapped[:_SIGNAL_SIZE]


def host_signal_path(url: str | URL) -> str:
    """The file of `_HostSignal` for the PostgreSQL database at `url`: one per server and
    database, whichever user or driver names it."""
    named = make_url(url).set(drivername="postgresql", username=None, password=None)
    name = hashlib.sha256(named.render_as_string().encode()).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"keyless-changes-{name}")


_SIGNAL_SIZE = 8
_SIGNALS: dict[str, _HostSignal | None] = {}  # by file; each mapped once, for the process


class _Listener:
    """A PostgreSQL connection of this feed's own that LISTENs on `CHANNEL`.

    `marker()` changes whenever a notification arrived since the last call: it asks the socket
    whether bytes wait (a `select` with no timeout, a few microseconds, no round trip) and only
    then lets psycopg read them. A notification is sent at the commit of the change, before the
    committing server answers its client, so a request that follows that answer finds it
    waiting. If the connection breaks (a restart of PostgreSQL), every call reports a change —
    the feed then reads the serial on each request, missing nothing — until a new connection
    listens again (tried at most once a second).
    """

    def __init__(self, engine: Engine) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._conn: Any = None
        self._count = 0
        self._retry_at = 0.0
        self._connect()

    def _connect(self) -> None:
        import psycopg  # the PostgreSQL driver: loaded only where a database URL names it

        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            log.warning("cannot listen for changes (%s); reading the serial per request", exc)
            self._retry_at = time.monotonic() + RELISTEN_SECONDS
            return
        self._conn = conn

    def marker(self) -> bytes:
        conn = self._conn
        if conn is None:
            if time.monotonic() >= self._retry_at:
                self._connect()
            self._count += 1  # not listening: always "changed"
        else:
            try:
                waiting, _, _ = select_module.select([conn.fileno()], [], [], 0)
                if waiting:
                    self._count += 1
                    for _ in conn.notifies(timeout=0):  # drain what arrived
                        pass
            except Exception as exc:  # the connection broke: PostgreSQL restarted, or a proxy
                log.warning("stopped listening for changes (%s); reading the serial", exc)
                self._drop()
                self._count += 1
        return self._count.to_bytes(8, "little")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._retry_at = time.monotonic() + RELISTEN_SECONDS
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: nothing to close cleanly
                log.debug("closing the broken listening connection failed", exc_info=True)


# The -shm files mapped by this process, by path. Never closed, nor their descriptors: closing
# any descriptor of a file drops every POSIX lock the process holds on it, SQLite's own
# included — among them the shared lock that tells other processes the database is in use,
# without which the next one to open it truncates and rebuilds the -shm file under us.
_MAPPED: dict[str, mmap.mmap] = {}


def _wal_header_reader(shm: Path) -> Callable[[], bytes]:
    key = str(shm.resolve())
    mapped = _MAPPED.get(key)
    if mapped is None:
        try:
            descriptor = os.open(key, os.O_RDONLY)
        except OSError:  # not in WAL mode: no shared memory file, no shortcut
            return _always_changed
        try:
            mapped = mmap.mmap(descriptor, _WAL_HEADER, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # too short to be a WAL index: no shortcut either
            return _always_changed  # (the descriptor stays open, for the reason above)
        _MAPPED[key] = mapped
    return lambda: mapped[:_WAL_HEADER]


_counter = itertools.count()


def _always_changed() -> bytes:
    return next(_counter).to_bytes(8, "little")
