"""The stage of a session (PEP 694 "Stage previews"): what its preview index shows.

No credentials: the session's token in the URL is the capability. A stage lives as long as
its session is open (or processing, or in error and not expired); after publish or cancel it
is gone (404), since the published files are then on the index itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from packaging.utils import NormalizedName
from sqlalchemy import Engine, select

from keyless.store import db

from ..accounts import as_utc
from .state import COMPLETED, LIVE, effective_status


@dataclass(frozen=True)
class StagedFile:
    """A completed file of a session, as a simple page lists it."""

    filename: str
    sha256: str
    size: int
    requires_python: str | None
    metadata_sha256: str | None
    upload_time: datetime


@dataclass(frozen=True)
class Stage:
    token: str
    name: str
    normalized_name: NormalizedName
    version: str
    files: list[StagedFile]

    def staged(self, sha256: str, filename: str) -> StagedFile | None:
        return next((f for f in self.files if (f.sha256, f.filename) == (sha256, filename)), None)


def find_stage(engine: Engine, index_id: int, token: str) -> Stage | None:
    """The stage of the live session `token` on the index, or None."""
    sessions, files = db.upload_sessions, db.upload_session_files
    with db.reading(engine) as conn:
        row = conn.execute(
            select(sessions).where(sessions.c.token == token, sessions.c.index_id == index_id)
        ).first()
        if row is None or effective_status(row) not in LIVE:
            return None
        completed = conn.execute(
            select(files)
            .where(files.c.session_id == row.id, files.c.status == COMPLETED)
            .order_by(files.c.filename)
        ).all()
    return Stage(
        token=row.token,
        name=row.name,
        normalized_name=NormalizedName(row.normalized_name),
        version=row.version,
        files=[
            StagedFile(
                filename=f.filename,
                sha256=f.sha256,
                size=f.size,
                requires_python=f.requires_python,
                metadata_sha256=f.metadata_sha256,
                upload_time=as_utc(f.created),
            )
            for f in completed
        ],
    )


def staged_metadata(engine: Engine, sha256: str) -> bytes | None:
    """A staged wheel's METADATA (PEP 658), kept on its session file's row."""
    files = db.upload_session_files
    with db.reading(engine) as conn:
        return conn.execute(
            select(files.c.metadata).where(files.c.metadata_sha256 == sha256).limit(1)
        ).scalar()


@dataclass(frozen=True)
class OpenSession:
    """A live session of a project, as its owners' page lists it."""

    version: str
    status: str
    created_by: str
    expires: datetime
    files: int
    stage_token: str


def open_sessions(engine: Engine, index_id: int, name: str) -> list[OpenSession]:
    """The live sessions of a project (open, processing, error; not expired), oldest first."""
    sessions, files = db.upload_sessions, db.upload_session_files
    with db.reading(engine) as conn:
        rows = conn.execute(
            select(sessions)
            .where(
                sessions.c.index_id == index_id,
                sessions.c.normalized_name == name,
                sessions.c.status.in_(LIVE),
            )
            .order_by(sessions.c.id)
        ).all()
        counts = {
            row.id: len(conn.execute(select(files.c.id).where(files.c.session_id == row.id)).all())
            for row in rows
        }
    return [
        OpenSession(
            version=row.version,
            status=effective_status(row),
            created_by=row.created_by,
            expires=as_utc(row.expires),
            files=counts[row.id],
            stage_token=row.token,
        )
        for row in rows
        if effective_status(row) in LIVE
    ]
