"""Publishing sessions: create, status, extend, cancel, publish (PEP 694 "Publishing session").

Publishing is atomic and survives a crash at any point:

1. a short write transaction checks that every file is completed and sets `processing`; from
   then on the session's filenames are reserved (`releases.taken` refuses them to a legacy
   upload with 409) and its files cannot change;
2. outside the write lock, every file's blob is checked to be in the store;
3. one write transaction decides again (current rights, names, sizes) and adds every file
   through `releases.add_files`, setting `published` — or, refused, sets the session back
   to `open` with a notice (a failed publish leaves the session editable).

A server killed between 1 and 3 leaves `processing`, which `resolve_processing` finishes or
moves to `error` at start and at every garbage collection: the release is never half visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version
from sqlalchemy import Connection, Engine, Row, select, update
from sqlalchemy.exc import IntegrityError

from keyless.config import UPLOAD_SESSION_EXTENSIONS
from keyless.dists.names import is_project_name
from keyless.store import db
from keyless.store.blobs import BlobStore

from ..accounts import Identity, InvalidCredentials, as_utc, now
from ..indexes import IndexInfo
from ..projects import create_project, record_event
from ..releases import (
    Event,
    NewFile,
    NewRelease,
    Target,
    add_files,
    already_exists,
    closed_release,
    maybe_taken,
    new_project_name_problem,
    taken,
)
from ..uploads import (
    UploadRejected,
    check_permission,
    check_project_size,
    refuse_taken,
)
from .access import Credentials, authorize, caller_now, current_project, for_index, refused
from .stage import OpenSession, Stage, find_stage, open_sessions, staged_metadata
from .state import (
    CANCELED,
    COMPLETED,
    ERROR,
    LIVE,
    OPEN,
    PROCESSING,
    PUBLISHED,
    SESSION_BY_ID,
    SessionRefused,
    SessionState,
    effective_status,
    find_session,
    new_session_token,
    session_files,
    session_state,
)


def audit_details(identity: Identity, **details: Any) -> dict[str, Any]:
    """What a session's journal rows record of who acted, as an upload's do."""
    return {
        **details,
        "token_id": identity.token_id,
        "trusted_publishers": list(identity.publishers) or None,
    }


def _creator(row: Any) -> Identity:
    """The identity that opened a session, to re-check by its token (`current_uploader`)."""
    return Identity(
        user_id=row.user_id,
        username=row.created_by,
        token_id=row.token_id,
        index_id=None,
        projects=None,
    )


@dataclass
class UploadSessions:
    """The publishing sessions of one database (see the module's docstring)."""

    engine: Engine
    blobs: BlobStore
    on_change: Callable[[int, str], None]
    lifetime: int  # seconds (`upload-session-lifetime`)

    # ----------------------------------------------------------------------- create

    def create(
        self, index: IndexInfo, caller: Credentials, name: object, version: object
    ) -> SessionState:
        """Open a session for `name` `version`; 409 (with its location) when one is live."""
        name, version = _check_name_and_version(name, version)
        normalized = canonicalize_name(name)
        canonical = canonicalize_version(version)
        try:
            with db.writing(self.engine) as conn:
                current = self._may_create(conn, caller, index, name, normalized)
                self._cancel_expired(conn, index.id, normalized)
                _refuse_live(conn, index.id, normalized, canonical)
                moment = now()
                token = new_session_token()
                conn.execute(
                    db.upload_sessions.insert().values(
                        token=token,
                        index_id=index.id,
                        name=name,
                        normalized_name=normalized,
                        version=version,
                        canonical_version=canonical,
                        status=OPEN,
                        created=moment,
                        updated=moment,
                        expires=moment + timedelta(seconds=self.lifetime),
                        created_by=current.username,
                        user_id=current.user_id,
                        token_id=current.token_id,
                        notices=[],
                    )
                )
                record_event(
                    conn,
                    index.id,
                    normalized,
                    "upload_session_create",
                    current.username,
                    audit_details(current, version=version),
                    changes_project=False,
                )
                return session_state(conn, index.name, find_session(conn, index.id, token))
        except IntegrityError:
            # Another create won the race between our check and our insert (PostgreSQL's
            # writers may overlap there): the unique index let exactly one in.
            with db.reading(self.engine) as conn:
                _refuse_live(conn, index.id, normalized, canonical)
            raise

    def _may_create(
        self,
        conn: Connection,
        caller: Credentials,
        index: IndexInfo,
        name: str,
        normalized: NormalizedName,
    ) -> Identity:
        current = caller_now(conn, caller)
        try:
            for_index(current, index)
            project = current_project(conn, index, normalized)
            check_permission(conn, current, index, project, normalized)
        except UploadRejected as exc:
            raise refused(exc) from None
        if project is None:
            problem = new_project_name_problem(conn, index, name)
            if problem is not None:
                raise SessionRefused(problem, source="name")
        return current

    def _cancel_expired(self, conn: Connection, index_id: int, name: str) -> None:
        """Expired sessions of the project end now: they hold no release any more."""
        conn.execute(
            update(db.upload_sessions)
            .where(
                db.upload_sessions.c.index_id == index_id,
                db.upload_sessions.c.normalized_name == name,
                db.upload_sessions.c.status.in_((OPEN, ERROR)),
                db.upload_sessions.c.expires <= now(),
            )
            .values(status=CANCELED, updated=now())
        )

    # ----------------------------------------------------------------------- read, extend, cancel

    def status(self, index: IndexInfo, caller: Credentials, token: str) -> SessionState:
        with db.reading(self.engine) as conn:
            current = caller_now(conn, caller)
            row = find_session(conn, index.id, token)
            authorize(conn, current, index, row)
            return session_state(conn, index.name, row)

    def extend(
        self, index: IndexInfo, caller: Credentials, token: str, seconds: int
    ) -> SessionState:
        """Expire `seconds` from now, within the total lifetime a session may have."""
        with db.writing(self.engine) as conn:
            current = caller_now(conn, caller)
            row = find_session(conn, index.id, token)
            authorize(conn, current, index, row)
            status = effective_status(row)
            if status not in (OPEN, ERROR):
                raise SessionRefused(f"The session is {status}: it cannot be extended.", 409)
            latest = as_utc(row.created) + timedelta(
                seconds=self.lifetime * UPLOAD_SESSION_EXTENSIONS
            )
            wanted = min(now() + timedelta(seconds=seconds), latest)
            if wanted > as_utc(row.expires):
                conn.execute(
                    update(db.upload_sessions)
                    .where(db.upload_sessions.c.id == row.id)
                    .values(expires=wanted)
                )
            return session_state(conn, index.name, find_session(conn, index.id, token))

    def cancel(self, index: IndexInfo, caller: Credentials, token: str) -> None:
        with db.writing(self.engine) as conn:
            current = caller_now(conn, caller)
            row = find_session(conn, index.id, token)
            authorize(conn, current, index, row)
            status = effective_status(row)
            if status == CANCELED:
                return
            if status not in (OPEN, ERROR):
                raise SessionRefused(f"The session is {status}: it cannot be canceled.", 409)
            _set_status(conn, row.id, CANCELED)
            record_event(
                conn,
                index.id,
                row.normalized_name,
                "upload_session_cancel",
                current.username,
                audit_details(current, version=row.version),
                changes_project=False,
            )

    # ----------------------------------------------------------------------- publish

    def publish(self, index: IndexInfo, caller: Credentials, token: str) -> SessionState:
        """Publish every file of the session at once (see the module's docstring)."""
        with db.writing(self.engine) as conn:  # 1: processing; the filenames are reserved
            current = caller_now(conn, caller)
            row = find_session(conn, index.id, token)
            authorize(conn, current, index, row)
            status = effective_status(row)
            if status == PUBLISHED:
                return session_state(conn, index.name, row)
            if status not in (OPEN, ERROR):
                raise SessionRefused(f"The session is {status}: it cannot be published.", 409)
            files = session_files(conn, row.id)
            unfinished = [f for f in files if f.status != COMPLETED]
            if unfinished:
                raise SessionRefused(
                    "Every file must be completed before the session is published; not yet: "
                    + ", ".join(f"{f.filename} ({f.status})" for f in unfinished)
                    + ". Complete them, or delete them from the session.",
                    409,
                )
            _set_status(conn, row.id, PROCESSING)
        missing = [f.filename for f in files if not self.blobs.exists(f.sha256, f.size)]  # 2
        if missing:
            self._back_to_open(row.id, f"The bytes of {', '.join(missing)} are missing.")
            raise SessionRefused(
                f"The bytes of {', '.join(missing)} are missing from the store; delete these "
                "files from the session and upload them again.",
                409,
            )
        try:
            self._finish(index, row.id, caller)  # 3
        except SessionRefused as exc:
            self._back_to_open(row.id, exc.message)
            raise
        with db.reading(self.engine) as conn:
            return session_state(conn, index.name, find_session(conn, index.id, token))

    def _finish(self, index: IndexInfo, session_id: int, caller: Credentials) -> bool:
        """Step 3 of a publish: every file in one transaction; False if no longer processing.

        Raises SessionRefused (nothing was written) when the files may not go there now.
        """
        with db.writing(self.engine) as conn:
            row = conn.execute(SESSION_BY_ID, {"session_id": session_id}).first()
            if row is None or row.status != PROCESSING:
                return False  # another process finished it (a request, or garbage collection)
            try:  # rights again, as they are at the commit
                current = caller_now(conn, caller)
            except InvalidCredentials as exc:  # lost since step 1: back to open, as any refusal
                raise SessionRefused(exc.reason, 403) from None
            project = authorize(conn, current, index, row)
            files = _publish_order(session_files(conn, session_id))
            try:
                _may_add(conn, index, project, row, files)
            except UploadRejected as exc:
                raise refused(exc) from None
            if project is None:
                problem = new_project_name_problem(conn, index, row.name)
                if problem is not None:
                    raise SessionRefused(problem, 409)
            # The project changes once, by the publish: each file's row is audit only, and the
            # publish's (the last, so the highest id) becomes the project's serial — one bump
            # of the change feed and one page invalidation for the whole release, not one per
            # file (with 50 files, 200 statements fewer in the write transaction).
            events = [
                Event(
                    "file_upload",
                    audit_details(
                        current,
                        filename=f.filename,
                        sha256=f.sha256,
                        version=row.version,
                        upload_session=row.token[:8],
                    ),
                    changes_project=False,
                )
                for f in files
            ]
            events.append(
                Event(
                    "upload_session_publish",
                    audit_details(
                        current,
                        version=row.version,
                        files=[f.filename for f in files],
                        upload_session=row.token[:8],
                    ),
                )
            )
            target = Target(index.id, row.name, project.id if project else None)
            if files:
                add_files(
                    conn,
                    target,
                    _release(row, files),
                    _new_files(files),
                    current,
                    events,
                    via_session=True,
                )
            else:  # PEP 694: an empty session creates the project (if new) and nothing else
                if project is None:
                    create_project(conn, index.id, row.name, current.user_id)
                for event in events:
                    record_event(
                        conn,
                        index.id,
                        row.normalized_name,
                        event.action,
                        current.username,
                        event.details,
                    )
            _set_status(conn, session_id, PUBLISHED)
        self.on_change(index.id, row.normalized_name)
        return True

    def _back_to_open(self, session_id: int, notice: str) -> None:
        with db.writing(self.engine) as conn:
            _set_status(conn, session_id, OPEN, notice=notice, only_from=PROCESSING)

    def resolve_processing(self, older_than: float = 0.0) -> int:
        """Finish the publishes a stopped server left half-way (`processing` for more than
        `older_than` seconds), or move them to `error` with a notice when they can no longer
        be; returns how many were resolved. A publish still running elsewhere does no harm:
        its last step and this one each finish it only if it is still processing."""
        since = now() - timedelta(seconds=older_than)
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(
                    db.upload_sessions,
                    db.indexes.c.name.label("index_name"),
                    db.indexes.c.profile,
                    db.indexes.c.max_file_size,
                    db.indexes.c.max_project_size,
                )
                .join(db.indexes, db.indexes.c.id == db.upload_sessions.c.index_id)
                .where(
                    db.upload_sessions.c.status == PROCESSING,
                    db.upload_sessions.c.updated <= since,
                )
            ).all()
        for row in rows:
            index = IndexInfo(
                id=row.index_id,
                name=row.index_name,
                profile=row.profile,
                max_file_size=row.max_file_size,
                max_project_size=row.max_project_size,
            )
            missing = [
                f.filename for f in self._files(row.id) if not self.blobs.exists(f.sha256, f.size)
            ]
            try:
                if missing:
                    raise SessionRefused(f"The bytes of {', '.join(missing)} are missing.")
                self._finish(index, row.id, _creator(row))
            except SessionRefused as exc:
                with db.writing(self.engine) as conn:
                    _set_status(
                        conn,
                        row.id,
                        ERROR,
                        notice=f"The publish was interrupted and could not be finished: "
                        f"{exc.message}",
                        only_from=PROCESSING,
                    )
        return len(rows)

    def _files(self, session_id: int) -> list[Any]:
        with db.reading(self.engine) as conn:
            return session_files(conn, session_id)

    def stage(self, index: IndexInfo, token: str) -> Stage | None:
        """The stage of a live session (no credentials: the token is the capability)."""
        return find_stage(self.engine, index.id, token)

    def open_sessions(self, index_id: int, name: str) -> list[OpenSession]:
        """A project's live sessions, for its owners' page."""
        return open_sessions(self.engine, index_id, name)

    def staged_metadata(self, sha256: str) -> bytes | None:
        return staged_metadata(self.engine, sha256)

    def cancel_expired(self) -> int:
        """Write `canceled` on every expired open or error session (garbage collection)."""
        with db.writing(self.engine) as conn:
            result = conn.execute(
                update(db.upload_sessions)
                .where(
                    db.upload_sessions.c.status.in_((OPEN, ERROR)),
                    db.upload_sessions.c.expires <= now(),
                )
                .values(status=CANCELED, updated=now())
            )
        return int(result.rowcount or 0)


def _check_name_and_version(name: object, version: object) -> tuple[str, str]:
    if not isinstance(name, str) or not is_project_name(name):
        raise SessionRefused(
            f"{str(name)[:60]!r} is not a valid project name: start and end with a letter or "
            "numeral, containing only ASCII numeric and '.', '_' and '-'.",
            source="name",
        )
    try:
        Version(str(version))
        if not isinstance(version, str):
            raise TypeError
    except (InvalidVersion, TypeError):
        raise SessionRefused(
            f"{str(version)[:60]!r} is not a valid version: see "
            "https://packaging.python.org/specifications/version-specifiers/.",
            source="version",
        ) from None
    return name, version


_LIVE_SESSION = select(db.upload_sessions.c.token).where(
    db.upload_sessions.c.status.in_(LIVE),
)


def _refuse_live(conn: Connection, index_id: int, name: str, canonical: str) -> None:
    live = conn.execute(
        _LIVE_SESSION.where(
            db.upload_sessions.c.index_id == index_id,
            db.upload_sessions.c.normalized_name == name,
            db.upload_sessions.c.canonical_version == canonical,
        )
    ).scalar()
    if live is not None:
        raise SessionRefused(
            "An upload session for this release is already open; use it (its URL is in the "
            "Location header) or cancel it.",
            409,
            location=live,
        )


def _set_status(
    conn: Connection,
    session_id: int,
    status: str,
    *,
    notice: str | None = None,
    only_from: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "updated": now()}
    if notice is not None:
        values["notices"] = [notice]
    statement = update(db.upload_sessions).where(db.upload_sessions.c.id == session_id)
    if only_from is not None:
        statement = statement.where(db.upload_sessions.c.status == only_from)
    conn.execute(statement.values(**values))


def _may_add(
    conn: Connection, index: IndexInfo, project: Any, session: Any, files: list[Any]
) -> None:
    """The legacy upload's rules on names and sizes, for all the files together."""
    check_project_size(index, project, sum(f.size for f in files))
    sdists = [f for f in files if f.packagetype == "sdist"]
    if len(sdists) > 1:
        raise UploadRejected("Only one sdist may be uploaded per release.")
    # The four queries of `taken` per file, asked for all files at once first: only a file
    # that one of them names (or an sdist, whose release may have one) is asked about alone.
    suspects = maybe_taken(
        conn, index.id, [(f.filename, f.blake2_256) for f in files], session_id=session.id
    )
    for f in files:
        if f.filename not in suspects and f.packagetype != "sdist":
            continue
        found = taken(
            conn,
            index.id,
            project.id if project else None,
            f.filename,
            f.blake2_256,
            sdist_of=session.version if f.packagetype == "sdist" else None,
            session_id=session.id,
        )
        if found.existing:  # this very file is already published: a filename is used once
            raise UploadRejected(already_exists(f.filename, f.blake2_256), 409)
        try:
            refuse_taken(found, f.filename, f.blake2_256)
        except UploadRejected as exc:  # taken meanwhile: the session conflicts with the index
            raise UploadRejected(exc.message, 409) from None
    # Decided here, at publish, as the PEP has every precondition decided: the release may
    # have closed (its age, or another session's publish) since the session was opened.
    closed = closed_release(
        conn, index, project.id if project else None, session.name, session.version
    )
    if closed:
        raise UploadRejected(closed, 409)


def _release(session: Any, files: list[Any]) -> NewRelease:
    """The release row from the files' metadata: the sdist's, else the first wheel's."""
    first = next((f for f in files if f.packagetype == "sdist"), files[0])
    return NewRelease(
        version=session.version,
        requires_python=first.requires_python,
        summary=first.summary,
        info=dict(first.release_info or {}),
    )


def _new_files(files: list[Any]) -> list[NewFile]:
    return [
        NewFile(
            filename=f.filename,
            packagetype=f.packagetype,
            python_version=f.python_version,
            sha256=f.sha256,
            md5=f.md5,
            blake2_256=f.blake2_256,
            size=f.size,
            requires_python=f.requires_python,
            metadata_sha256=f.metadata_sha256,
            metadata=f.metadata,
        )
        for f in files
    ]


def _publish_order(files: list[Row[Any]]) -> list[Row[Any]]:
    """The wheels, then the sdist, each by name: the order a legacy client uploads in, so the
    audit trail and the files' rows do not depend on which of a client's parallel requests
    created its file first."""
    return sorted(files, key=lambda f: (f.packagetype == "sdist", f.filename))
