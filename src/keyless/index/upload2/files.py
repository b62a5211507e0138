"""File upload sessions: create, bytes (`http-post-bytes`), complete, status, delete.

A file's bytes stream into a pending write of the blob store (bounded memory, as the legacy
upload's form parser) and are placed as a blob at once; the row then records their digests.
Garbage collection keeps the blobs of live sessions' files (`maintenance.py`). `complete`
runs the legacy upload's checks on the file (`uploads.check_file`, `inspect_artifact`, the
name and sdist rules), the archive's metadata playing the form's part; a failed check leaves
the file in `error` with the legacy text, to be deleted and sent again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from packaging.metadata import Metadata
from packaging.version import Version
from sqlalchemy import Connection, Engine, bindparam, delete, exists, literal_column, select, update

from keyless.dists import filenames
from keyless.dists.errors import DistError
from keyless.store import db
from keyless.store.blobs import BlobStore, Digests, PendingBlob

from ..accounts import now
from ..indexes import IndexInfo
from ..releases import already_exists, file_too_large, name_rules, name_taken, taken
from ..rendering import Descriptions
from ..uploads import (
    DIGEST_MISMATCH,
    Artifact,
    UploadRejected,
    check_file,
    inspect_artifact,
    new_rows,
    refuse_taken,
)
from .access import Credentials, authorize, caller_now, refused
from .state import (
    COMPLETED,
    ERROR,
    OPEN,
    PENDING,
    FileState,
    SessionRefused,
    effective_status,
    find_session,
    new_file_token,
)

MECHANISM = "http-post-bytes"  # the one mechanism PEP 694 requires, and the one served
_HEX = re.compile(r"^[0-9a-fA-F]+\Z")
_ALGORITHMS = ", ".join(sorted(a for a in hashlib.algorithms_guaranteed if "shake" not in a))
_files = db.upload_session_files
# The statements of a file's requests, built once: building one with its values each time
# (`insert().values(...)`, `update().values(...)`) cost SQLAlchemy ~0.5-1 ms of CPU a
# statement, more than running it; these take their values as parameters (`update` SETs the
# columns named in them).
_FILE = select(_files).where(
    _files.c.session_id == bindparam("session_id"), _files.c.token == bindparam("token")
)
_INSERT_FILE = _files.insert()
_UPDATE_FILE = update(_files).where(_files.c.id == bindparam("file_id"))
_FAIL_PENDING = update(_files).where(
    _files.c.id == bindparam("file_id"), _files.c.status == PENDING
)
_DELETE_FILE = delete(_files).where(_files.c.id == bindparam("file_id"))
_NAME_IN_SESSION = select(_files.c.id).where(
    _files.c.session_id == bindparam("session_id"), _files.c.filename == bindparam("filename")
)
# A new file's name rules (the legacy upload's, and: not twice in one session) in one
# statement, where they were four.
_NAME_RULES = name_rules(_NAME_IN_SESSION.exists().label("in_session"))
_SESSION_SDIST = select(_files.c.id).where(
    _files.c.session_id == bindparam("session_id"),
    _files.c.status == COMPLETED,
    _files.c.packagetype == "sdist",
    _files.c.id != bindparam("other_than"),
)
# The second step of a file's request (its bytes recorded, its completion) writes only if
# what its first step decided still holds: the session open (not expired) and the file
# pending, with the bytes the first step checked. One statement, inside the write lock, in
# place of reading the session and the file again there; when it changes no row, the
# reason is read (`_why_not_recorded`). The bind names are not column names: an UPDATE's
# column-named parameters are its SET clause.
_sessions = db.upload_sessions
_STILL_OPEN = exists().where(
    _sessions.c.id == bindparam("sid"),
    _sessions.c.status.in_([literal_column(f"'{status}'") for status in (OPEN, ERROR)]),
    _sessions.c.expires > bindparam("moment"),
)
_RECORD_BYTES = update(_files).where(
    _files.c.id == bindparam("fid"),
    _files.c.session_id == bindparam("sid"),
    _files.c.status == PENDING,
    _STILL_OPEN,
)
_RECORD_COMPLETED = _RECORD_BYTES.where(_files.c.sha256 == bindparam("checked_sha256"))


@dataclass(frozen=True)
class Expected:
    """What a file's bytes must be, as its creation declared them, and which file it is."""

    size: int
    sha256: str
    session_id: int
    file_id: int


def check_hashes(hashes: Any) -> dict[str, str]:
    """The declared hashes: `sha256` required, other names from hashlib's guaranteed set."""
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        raise SessionRefused(
            "'hashes' must be an object holding at least 'sha256', the file's hex digest.",
            source="hashes",
        )
    checked: dict[str, str] = {}
    for name, value in hashes.items():
        algorithm = str(name).lower()
        if algorithm not in hashlib.algorithms_guaranteed or algorithm.startswith("shake_"):
            raise SessionRefused(
                f"Unknown hash algorithm {str(name)[:40]!r} in 'hashes'; use names from "
                f"{_ALGORITHMS}.",
                source="hashes",
            )
        length = hashlib.new(algorithm).digest_size * 2
        if not isinstance(value, str) or len(value) != length or not _HEX.match(value):
            raise SessionRefused(
                f"'hashes.{algorithm}' must be {length} hex digits.", source="hashes"
            )
        checked[algorithm] = value.lower()
    return checked


def _session_meta(session: Any) -> Metadata:
    """The session's name and version, which the archive's metadata must agree with."""
    return Metadata.from_raw(
        {"metadata_version": "2.1", "name": session.name, "version": session.version},
        validate=False,
    )


@dataclass
class SessionFiles:
    """The file upload sessions of one database (see the module's docstring)."""

    engine: Engine
    blobs: BlobStore
    descriptions: Descriptions

    def _open_session(
        self, conn: Connection, index: IndexInfo, caller: Credentials, token: str
    ) -> tuple[Any, Any]:
        """The session and its project, if the caller may change its files now."""
        current = caller_now(conn, caller)  # first: credentials are judged before anything
        session = find_session(conn, index.id, token)
        project = authorize(conn, current, index, session)
        status = effective_status(session)
        if status not in (OPEN, ERROR):
            raise SessionRefused(f"The session is {status}: its files cannot change.", 409)
        return session, project

    def _still_open(self, conn: Connection, index: IndexInfo, token: str) -> Any:
        """The session, refused (409) unless its files may still change: the second step of a
        request whose first step (`_open_session`) authorized it.

        Rights are checked once per request, at its start; what the second step writes (a
        pending file's digests, a file's `completed`) is seen by nobody and decides nothing
        that must hold later: the publish decides everything again, rights included, in its
        own write transaction. Checking them twice cost a quarter of a file's requests.
        """
        session = find_session(conn, index.id, token)
        status = effective_status(session)
        if status not in (OPEN, ERROR):
            raise SessionRefused(f"The session is {status}: its files cannot change.", 409)
        return session

    def _file(self, conn: Connection, session: Any, file_token: str) -> Any:
        row = conn.execute(_FILE, {"session_id": session.id, "token": file_token}).first()
        if row is None:
            raise SessionRefused("No such file in this upload session (deleted?).", 404)
        return row

    # ----------------------------------------------------------------------- create

    def create(
        self,
        index: IndexInfo,
        caller: Credentials,
        token: str,
        filename: Any,
        size: Any,
        hashes: Any,
        mechanism: Any,
    ) -> FileState:
        with db.writing(self.engine) as conn:
            session, project = self._open_session(conn, index, caller, token)
            if not isinstance(filename, str) or not filename:
                raise SessionRefused("'filename' must be the file's name.", source="filename")
            try:
                dist = filenames.parse_dist_filename(filename, index.policy)
                filenames.check_filename_matches_project(
                    dist, session.name, Version(session.version)
                )
            except DistError as exc:
                raise SessionRefused(exc.message, source="filename") from None
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise SessionRefused("'size' must be the file's size in bytes.", source="size")
            if size > index.max_file_size:
                shown = project.name if project else session.name
                raise SessionRefused(file_too_large(shown, index.max_file_size), source="size")
            declared = check_hashes(hashes)
            if mechanism != MECHANISM:
                raise SessionRefused(
                    f"Upload mechanism {str(mechanism)[:40]!r} is not offered here; use "
                    f"{MECHANISM!r}.",
                    422,
                    source="mechanism",
                )
            self._refuse_known_filename(conn, index, session, filename)
            file_token = new_file_token()
            conn.execute(
                _INSERT_FILE,
                {
                    "session_id": session.id,
                    "token": file_token,
                    "filename": filename,
                    "declared_size": size,
                    "declared_hashes": declared,
                    "status": PENDING,
                    "created": now(),
                    "notices": [],
                },
            )
            return FileState(file_token, filename, PENDING, [], session.expires)

    def _refuse_known_filename(
        self, conn: Connection, index: IndexInfo, session: Any, filename: str
    ) -> None:
        rules = conn.execute(
            _NAME_RULES, {"index_id": index.id, "filename": filename, "session_id": session.id}
        ).one()
        if rules.by_name is not None:
            raise SessionRefused(already_exists(filename, rules.by_name), 409)
        try:
            refuse_taken(name_taken(rules), filename, "")
        except UploadRejected as exc:
            raise SessionRefused(exc.message, 409, source="filename") from None
        if rules.in_session:
            raise SessionRefused(
                f"{filename!r} is already in this session; delete it there first to send it again.",
                409,
                source="filename",
            )

    # ----------------------------------------------------------------------- bytes

    def expect_bytes(
        self, index: IndexInfo, caller: Credentials, token: str, file_token: str
    ) -> Expected:
        """May bytes be sent to this file now? What they must be (read before the body)."""
        with db.reading(self.engine) as conn:
            session, _ = self._open_session(conn, index, caller, token)
            row = self._pending(conn, session, file_token)
            return Expected(row.declared_size, row.declared_hashes["sha256"], session.id, row.id)

    def _pending(self, conn: Connection, session: Any, file_token: str) -> Any:
        row = self._file(conn, session, file_token)
        if row.status != PENDING:
            raise SessionRefused(
                f"The file is {row.status}: its bytes cannot change (delete it and create it "
                "again).",
                409,
            )
        return row

    def receive(
        self,
        index: IndexInfo,
        token: str,
        file_token: str,
        expected: Expected,
        pending: PendingBlob,
        digests: Digests,
    ) -> None:
        """Keep the bytes as the file's (replacing earlier ones); the pending write stays the
        caller's to discard. The request was authorized by `expect_bytes`, before its body."""
        # As the legacy upload: placed before the write lock, placed again under it, where
        # garbage collection cannot run (see `uploads.Uploads._store`).
        self.blobs.place(pending, digests.sha256, digests.size)
        with db.writing(self.engine) as conn:
            recorded = conn.execute(
                _RECORD_BYTES,
                {
                    "fid": expected.file_id,
                    "sid": expected.session_id,
                    "moment": now(),
                    "sha256": digests.sha256,
                    "md5": digests.md5,
                    "blake2_256": digests.blake2_256,
                    "size": digests.size,
                },
            )
            if recorded.rowcount != 1:
                self._why_not_recorded(conn, index, token, file_token, "The file changed")
            self.blobs.place(pending, digests.sha256, digests.size)

    def _why_not_recorded(
        self, conn: Connection, index: IndexInfo, token: str, file_token: str, otherwise: str
    ) -> None:
        """Raise why the second step of a request wrote nothing (see `_RECORD_BYTES`): the
        session or the file changed since its first step, which authorized it."""
        session = self._still_open(conn, index, token)
        self._pending(conn, session, file_token)
        raise SessionRefused(f"{otherwise} while it was checked.", 409)

    # ----------------------------------------------------------------------- complete

    def complete(
        self, index: IndexInfo, caller: Credentials, token: str, file_token: str
    ) -> FileState:
        with db.reading(self.engine) as conn:
            session, project = self._open_session(conn, index, caller, token)
            row = self._file(conn, session, file_token)
            if row.status == COMPLETED:
                return FileState.of(row, session.expires)
            if row.status == ERROR:
                raise SessionRefused(
                    "The file failed its checks: "
                    + "; ".join(row.notices or [])
                    + " Delete it and upload it again.",
                    409,
                )
            if row.sha256 is None:
                raise SessionRefused(
                    "No bytes were received for this file yet: send them to its "
                    "mechanism's file_url first.",
                    409,
                )
            failure: UploadRejected | None = None
            try:
                artifact = self._check(conn, index, session, project, row)
            except UploadRejected as exc:
                failure = exc
        if failure is not None:
            with db.writing(self.engine) as conn:
                conn.execute(
                    _FAIL_PENDING,
                    {"file_id": row.id, "status": ERROR, "notices": [failure.message]},
                )
            raise refused(failure)
        return self._mark_completed(index, token, file_token, session, row, artifact)

    def _check(
        self, conn: Connection, index: IndexInfo, session: Any, project: Any, row: Any
    ) -> Artifact:
        """Every check of the legacy upload, in its order where the order can be the same."""
        digests = Digests(row.sha256, row.md5, row.blake2_256, row.size)
        declared: dict[str, str] = row.declared_hashes
        if row.size != row.declared_size:
            raise UploadRejected(
                f"The file has {row.size} bytes, but its upload declared {row.declared_size}."
                " Send the whole file again."
            )
        artifact = inspect_artifact(
            row.filename, lambda: self.blobs.open(row.sha256), _session_meta(session), index
        )
        sent = {"sha256_digest": declared["sha256"], "md5_digest": declared.get("md5", "")}
        check_file(
            self.descriptions,
            index,
            project,
            artifact.metadata,
            row.filename,
            artifact.dist.packagetype,
            digests,
            sent,
        )
        self._check_other_hashes(row.sha256, declared)
        sdist_of = session.version if artifact.dist.packagetype == "sdist" else None
        found = taken(
            conn,
            index.id,
            project.id if project else None,
            row.filename,
            digests.blake2_256,
            sdist_of,
            session_id=session.id,
        )
        if found.existing:
            raise UploadRejected(already_exists(row.filename, digests.blake2_256), 409)
        refuse_taken(found, row.filename, digests.blake2_256)
        if sdist_of is not None and self._session_has_sdist(conn, session.id):
            raise UploadRejected("Only one sdist may be uploaded per release.")
        return artifact

    def _check_other_hashes(self, sha256: str, declared: dict[str, str]) -> None:
        """Declared digests beyond sha256 and md5 (computed as they were not while streaming)."""
        others = {k: v for k, v in declared.items() if k not in ("sha256", "md5")}
        if not others:
            return
        hashers = {name: hashlib.new(name) for name in others}
        with self.blobs.open(sha256) as stream:
            while chunk := stream.read(1024 * 1024):
                for hasher in hashers.values():
                    hasher.update(chunk)
        if any(hashers[name].hexdigest() != value for name, value in others.items()):
            raise UploadRejected(DIGEST_MISMATCH)

    def _session_has_sdist(self, conn: Connection, session_id: int, other_than: int = 0) -> bool:
        row = conn.execute(_SESSION_SDIST, {"session_id": session_id, "other_than": other_than})
        return row.first() is not None

    def _mark_completed(
        self,
        index: IndexInfo,
        token: str,
        file_token: str,
        session: Any,
        checked: Any,
        artifact: Artifact,
    ) -> FileState:
        """Record the checked file as completed, if it is still what was checked."""
        digests = Digests(checked.sha256, checked.md5, checked.blake2_256, checked.size)
        new_file, release = new_rows(
            checked.filename,
            artifact,
            digests,
            version=session.version,
            python_version=_python_version(artifact),
        )
        with db.writing(self.engine) as conn:
            recorded = conn.execute(
                _RECORD_COMPLETED,
                {
                    "fid": checked.id,
                    "sid": session.id,
                    "moment": now(),
                    "checked_sha256": checked.sha256,
                    "status": COMPLETED,
                    "packagetype": new_file.packagetype,
                    "python_version": new_file.python_version,
                    "requires_python": new_file.requires_python,
                    "metadata_sha256": new_file.metadata_sha256,
                    "metadata": new_file.metadata,
                    "summary": release.summary,
                    "release_info": release.info,
                },
            )
            if recorded.rowcount != 1:
                self._why_not_recorded(conn, index, token, file_token, "The file's bytes changed")
            if artifact.dist.packagetype == "sdist" and self._session_has_sdist(
                conn, session.id, other_than=checked.id
            ):  # another sdist completed meanwhile: this one is not (rolled back)
                raise SessionRefused("Only one sdist may be uploaded per release.")
            return FileState(
                checked.token,
                checked.filename,
                COMPLETED,
                list(checked.notices or []),
                session.expires,
            )

    # ----------------------------------------------------------------------- status, delete

    def status(
        self, index: IndexInfo, caller: Credentials, token: str, file_token: str
    ) -> FileState:
        with db.reading(self.engine) as conn:
            current = caller_now(conn, caller)
            session = find_session(conn, index.id, token)
            authorize(conn, current, index, session)
            return FileState.of(self._file(conn, session, file_token), session.expires)

    def delete(self, index: IndexInfo, caller: Credentials, token: str, file_token: str) -> None:
        with db.writing(self.engine) as conn:
            session, _ = self._open_session(conn, index, caller, token)
            row = self._file(conn, session, file_token)
            conn.execute(_DELETE_FILE, {"file_id": row.id})


def _python_version(artifact: Artifact) -> str:
    """What the legacy form's `pyversion` says: "source" for an sdist, a wheel's Python tag."""
    if artifact.dist.packagetype == "sdist":
        return "source"
    return artifact.dist.filename.split("-")[-3]
