"""The store's errors the server answers as such: a full disk, and a backend not answering.

A full disk: the blob writer meets it as ENOSPC (or EDQUOT, a quota) from a write, an fsync or
a mkdir; SQLite as SQLITE_FULL ("database or disk is full") when its write-ahead log cannot
grow. Both become StorageFull, which the server answers with 507 Insufficient Storage and a
message — not a bare 500 — while reads, which need no space, go on being served.

A database or blob store that cannot be reached, times out or fails on its side is named by
`unavailable_backend`: the server answers 503 saying which, and recovers by itself when it is
back (each request opens what it needs anew; PostgreSQL's pool checks a connection first).
"""

from __future__ import annotations

import errno
import sqlite3
import sys

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


# S3 answers that mean "not now" rather than "not so": the request may succeed when sent again.
_BUSY_S3_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})


def unavailable_backend(exc: BaseException) -> str | None:
    """'database' or 'blob store' when `exc` says that backend is not answering now.

    Unreachable, timed out, busy or failing on its side: the request may succeed once it is
    back, so the server answers 503 naming it rather than a 500. A full disk is not this
    (StorageFull, 507); neither is a constraint or a programming error (a 500 it stays).
    """
    # Imported here: SQLAlchemy is loaded wherever a database is, botocore only with S3.
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return None if is_storage_full(exc) else "database"
    if "botocore" in sys.modules:
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as S3ConnectionError

        if isinstance(exc, S3ConnectionError | HTTPClientError):
            return "blob store"
        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = exc.response.get("Error", {}).get("Code", "")
            if status >= 500 or code in _BUSY_S3_CODES:
                return "blob store"
    return None


def unavailable_detail(exc: BaseException) -> str:
    """What went wrong, for the log: the driver's own words, never a statement or its values."""
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, BaseException):
        exc = exc.orig
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


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
