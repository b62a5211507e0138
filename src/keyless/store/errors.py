"""A full disk, as one error of the store: whatever could not be written was undone.

The blob writer meets it as ENOSPC (or EDQUOT, a quota) from a write, an fsync or a mkdir;
SQLite as SQLITE_FULL ("database or disk is full") when its write-ahead log cannot grow. Both
become StorageFull, which the server answers with 507 Insufficient Storage and a message —
not a bare 500 — while reads, which need no space, go on being served.
"""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy.exc import DBAPIError

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class StorageFull(Exception):
    """The server's disk has no room left for a write; the write was undone."""

    message = (
        "The server's storage is full: nothing was stored. The index's administrator must "
        "free disk space; then send the same request again."
    )

    def __init__(self, cause: BaseException) -> None:
        # The driver's own error: SQLAlchemy's wrapper would add the statement and its values.
        if isinstance(cause, DBAPIError) and isinstance(cause.orig, BaseException):
            cause = cause.orig
        super().__init__(f"{self.message} ({cause})")
        self.cause = cause


def is_storage_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the database on it) is out of space."""
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE
    if isinstance(exc, DBAPIError):
        return is_storage_full(exc.orig) if isinstance(exc.orig, BaseException) else False
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return False


class UnstorableText(Exception):
    """A value held a NUL character (0x00), which PostgreSQL's text cannot store.

    SQLite stores one; on PostgreSQL, a name or field that carries one (`/prod/pypi/%00/json`)
    fails before any row is read or written. `store.db.reading`/`writing` raise this instead of
    the driver's error, and the server answers 400: the request is the client's mistake.
    """

    message = "The request holds a NUL character (0x00), which no name or text may contain."


def is_nul_in_text(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL's driver refusing a NUL character in a text value."""
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, BaseException):
        return "NUL (0x00)" in str(exc.orig)
    return False
