"""The change serial: a process learns exactly what others changed, or that it cannot tell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from keyless.store import db
from keyless.store.changes import KEEP, Change, ChangeFeed, record_change


def test_a_feed_sees_what_another_engine_committed_in_order(tmp_path: Path) -> None:
    path = tmp_path / "keyless.db"
    reader = ChangeFeed(db.open_database(path))
    writer = db.open_database(path)  # another process's engine
    assert reader.poll() == ()
    with db.writing(writer) as conn:
        record_change(conn, 1, "alpha")
        record_change(conn, 2, None)
    with db.writing(writer) as conn:
        record_change(conn, 1, "beta")
    assert reader.poll() == (Change(1, "alpha"), Change(2, None), Change(1, "beta"))
    assert reader.poll() == ()


def test_a_rolled_back_change_is_not_seen(tmp_path: Path) -> None:
    path = tmp_path / "keyless.db"
    reader = ChangeFeed(db.open_database(path))
    writer = db.open_database(path)
    try:
        with db.writing(writer) as conn:
            record_change(conn, 1, "alpha")
            raise KeyError("the change fails after it was noted")
    except KeyError:
        pass
    assert reader.poll() == ()


def test_a_feed_too_far_behind_says_it_cannot_tell(tmp_path: Path) -> None:
    path = tmp_path / "keyless.db"
    reader = ChangeFeed(db.open_database(path))
    writer = db.open_database(path)
    with db.writing(writer) as conn:
        for number in range(KEEP + 200):  # older rows are pruned meanwhile
            record_change(conn, 1, f"project-{number}")
    assert reader.poll() is None  # the caller drops everything
    with db.writing(writer) as conn:
        record_change(conn, 1, "after")
    assert reader.poll() == (Change(1, "after"),)  # and is exact again from there


def test_the_feed_keeps_sqlite_s_locks_on_the_shared_memory_file(tmp_path: Path) -> None:
    """SQLite marks a database in use by a shared lock on byte 128 of its -shm file (os_unix.c,
    "dead-man switch"); a process that finds none there truncates the file and rebuilds it. POSIX
    drops every lock a process holds on a file when it closes any descriptor of it, so the
    feed's own look at the -shm file must never close one while the server runs."""
    path = tmp_path / "keyless.db"
    engine = db.open_database(path)
    feed = ChangeFeed(engine)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)\n",
            f"{path}-shm",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert probe.returncode != 0, "another process could take the lock: ours was dropped"
    assert "BlockingIOError" in probe.stderr or "PermissionError" in probe.stderr, probe.stderr
    assert feed.poll() == ()
