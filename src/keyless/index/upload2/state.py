"""Upload sessions as read models, their tokens, and the refusal their use cases raise."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, select

from keyless.store import db

from ..accounts import as_utc, now
from ..errors import Refused
from ..projects import ProjectRow

# A session's statuses (PEP 694 "Session status"); `open`, `processing` and `error` are live:
# they hold their release (one live session per release) and keep their files' blobs.
OPEN, PROCESSING, PUBLISHED, ERROR, CANCELED = (
    "open",
    "processing",
    "published",
    "error",
    "canceled",
)
LIVE = db.LIVE_SESSION
# A file's statuses; a deleted file's row goes.
PENDING, COMPLETED = "pending", "completed"


class SessionRefused(Refused):
    """A session request refused; `.location` is the URL path's token of a conflicting session
    (a second create answers 409 with the live session's Location), `.source` what to fix."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        *,
        source: str | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(message, status)
        self.source = source
        self.location = location


def new_session_token() -> str:
    """32 random bytes, URL-safe base64 without padding (the session's URL and stage)."""
    return secrets.token_urlsafe(32)


def new_file_token() -> str:
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class FileState:
    """A file upload session as its status answer shows it."""

    token: str
    filename: str
    status: str
    notices: list[str]
    expires: datetime  # the session's

    @classmethod
    def of(cls, row: Any, expires: datetime) -> FileState:
        return cls(row.token, row.filename, row.status, list(row.notices or []), expires)


@dataclass(frozen=True)
class SessionState:
    """A publishing session as its status answer shows it."""

    index: str
    token: str
    name: str
    version: str
    status: str  # effective: an expired open or error session is `canceled`
    expires: datetime
    notices: list[str]
    files: list[FileState] = field(default_factory=list)


def effective_status(row: Any, moment: datetime | None = None) -> str:
    """The row's status, except that an expired open or error session answers as canceled
    (garbage collection writes it so later; processing ones are resolved, not expired)."""
    if row.status in (OPEN, ERROR) and as_utc(row.expires) <= (moment or now()):
        return CANCELED
    return str(row.status)


# A session's row with its project's columns (NULL while the project does not exist), in one
# statement: every request's authorization needs both (`access.authorize`), and asking for
# the project on its own was one statement more of each.
_projects = db.projects
_WITH_PROJECT = select(
    db.upload_sessions,
    _projects.c.id.label("project_id"),
    _projects.c.name.label("project_name"),
    _projects.c.normalized_name.label("project_normalized_name"),
    _projects.c.status.label("project_status"),
    _projects.c.status_reason.label("project_status_reason"),
    _projects.c.serial.label("project_serial"),
    _projects.c.total_size.label("project_total_size"),
).outerjoin(
    _projects,
    and_(
        _projects.c.index_id == db.upload_sessions.c.index_id,
        _projects.c.normalized_name == db.upload_sessions.c.normalized_name,
    ),
)
_SESSION = _WITH_PROJECT.where(
    db.upload_sessions.c.token == bindparam("token"),
    db.upload_sessions.c.index_id == bindparam("index_id"),
)
SESSION_BY_ID = _WITH_PROJECT.where(db.upload_sessions.c.id == bindparam("session_id"))
_FILES = (
    select(db.upload_session_files)
    .where(db.upload_session_files.c.session_id == bindparam("session_id"))
    .order_by(db.upload_session_files.c.id)
)


def find_session(conn: Connection, index_id: int, token: str) -> Row[Any]:
    """The session row of `token` on the index, with its project's columns
    (`session_project`); 404 when there is none."""
    row = conn.execute(_SESSION, {"token": token, "index_id": index_id}).first()
    if row is None:
        raise SessionRefused(
            "No upload session with this URL on this index: it never existed, or it ended "
            "long ago. Create a new session.",
            404,
        )
    return row


def session_project(row: Any) -> ProjectRow | None:
    """The project of a session row `find_session` (or `SESSION_BY_ID`) read, as it was read
    with it; None while it does not exist."""
    return None if row.project_id is None else ProjectRow.of(row, prefix="project_")


def session_files(conn: Connection, session_id: int) -> list[Row[Any]]:
    return list(conn.execute(_FILES, {"session_id": session_id}).all())


def session_state(conn: Connection, index_name: str, row: Any) -> SessionState:
    expires = as_utc(row.expires)
    return SessionState(
        index=index_name,
        token=row.token,
        name=row.name,
        version=row.version,
        status=effective_status(row),
        expires=expires,
        notices=list(row.notices or []),
        files=[FileState.of(f, expires) for f in session_files(conn, row.id)],
    )
