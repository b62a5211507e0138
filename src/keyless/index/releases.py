"""Adding files to a release: the rules and the one write every path that does it goes through.

Upload (`uploads.py`), promote (`promote.py`) and the benchmark's bulk seeding put files on an
index; an import from another server will too. Each decides in its own way *whether* the files
may go there (an upload reads an archive, a promotion copies rows of another index), but they
share:

- the rules on names and bytes (`taken`: "File already exists", the filename log, one sdist
  per release; `new_project_name_problem`: PyPI's rules for a project a write would create),
  the size texts, and closed releases (`closed_release`: the index's
  `close-releases-after` and `close-session-releases`);
- the write itself (`add_files`): the project and its owner's role when new, the release when
  new, the file rows, the core metadata, the filename log, the project's size, the token's
  last use and the journal, whose row becomes the project's serial.

`add_files` runs inside the caller's `db.writing` transaction, after the caller decided
everything there (decisions that guard a write are taken inside it, see ARCHITECTURE.md). The
blobs are the caller's: they are in the store before the rows that refer to them commit.
After the commit the caller invalidates the project's cached pages (`on_change`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name, canonicalize_version
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    update,
)

from keyless.dists import names
from keyless.dists.errors import DistError
from keyless.store import db

from .accounts import Identity, as_utc, now, touch_token
from .indexes import IndexInfo, duration_text
from .projects import create_project, record_audit_events, record_event

HELP = "https://pypi.org/help/"
GIB = 1024**3
MIB = 1024**2
_STDLIB_NAMES = frozenset(n.lower() for n in sys.stdlib_module_names)


def size_text(limit: int, unit: int, name: str) -> str:
    """A limit as PyPI's texts say it ("100 MB" / "10 GB"), or in bytes when not whole units:
    a small private limit would read as "0 GB"."""
    return f"{limit // unit} {name}" if limit >= unit and limit % unit == 0 else f"{limit} bytes"


def file_too_large(project: str, limit: int) -> str:
    return (
        f"File too large. Limit for project {project!r} is {size_text(limit, MIB, 'MB')}. "
        f"See {HELP}#file-size-limit for more information."
    )


def closed_project(name: str, normalized: str, status: str) -> str | None:
    """Why a project takes no new files (None: it does)."""
    if status in ("archived", "quarantined"):
        # PEP 792: neither an archived nor a quarantined project takes new files.
        return (
            f"Project '{name}' is {status} and accepts no new uploads. An owner can make it "
            f"active again with `keyless project status {normalized} active`."
        )
    return None


def project_too_large(project: str, limit: int) -> str:
    return (
        f"Project size too large. Limit for project {project!r} total size is "
        f"{size_text(limit, GIB, 'GB')}. See {HELP}#project-size-limit for more information."
    )


def already_exists(filename: str, blake2: str, why: str = "") -> str:
    # The text must start with "File already exists": twine's --skip-existing looks for it.
    return (
        f"File already exists ({filename!r}, with blake2_256 hash {blake2!r})"
        f"{': ' + why if why else ''}. See {HELP}#file-name-reuse for more information."
    )


# The statements every upload runs, built once: building one costs ~60 µs here, several times
# what SQLite takes to run it (an upload runs about fifteen).
_FILE_BY_NAME = select(db.files.c.blake2_256).where(
    db.files.c.index_id == bindparam("index_id"), db.files.c.filename == bindparam("filename")
)
_FILE_BY_BYTES = select(db.files.c.id).where(
    db.files.c.index_id == bindparam("index_id"),
    db.files.c.blake2_256 == bindparam("blake2"),
)
_FILENAME_USED = select(db.filename_log.c.index_id).where(
    db.filename_log.c.index_id == bindparam("index_id"),
    db.filename_log.c.filename == bindparam("filename"),
)
_RELEASE = select(db.releases.c.id).where(
    db.releases.c.project_id == bindparam("project_id"),
    db.releases.c.canonical_version == bindparam("version"),
)
_RELEASE_SDIST = select(db.files.c.id).where(
    db.files.c.release_id == bindparam("release_id"), db.files.c.packagetype == "sdist"
)
_RELEASE_OPENNESS = (
    select(db.releases.c.via_session, func.min(db.files.c.upload_time).label("first_file"))
    .select_from(db.releases.outerjoin(db.files, db.files.c.release_id == db.releases.c.id))
    .where(
        db.releases.c.project_id == bindparam("project_id"),
        db.releases.c.canonical_version == bindparam("version"),
    )
    .group_by(db.releases.c.id, db.releases.c.via_session)
)
_INSERT_RELEASE = db.releases.insert()
_MARK_VIA_SESSION = (
    update(db.releases).where(db.releases.c.id == bindparam("release_id")).values(via_session=True)
)
_INSERT_FILE = db.files.insert()
_LOG_FILENAME = db.filename_log.insert()
_GROW_PROJECT = (
    update(db.projects)
    .where(db.projects.c.id == bindparam("project_id"))
    .values(total_size=db.projects.c.total_size + bindparam("size"))
)


# ------------------------------------------------------------------------------- the rules


def new_project_name_problem(conn: Connection, index: IndexInfo, name: str) -> str | None:
    """What PyPI's name rules say against a project a write would create (None: nothing).

    A text, not an exception: upload and promote each refuse with their own error class.
    """
    try:
        names.validate_project_name(name)
    except DistError:
        return f"The name {name!r} is invalid."
    if index.profile == "pypi" and canonicalize_name(name).replace("-", "_") in _STDLIB_NAMES:
        return (
            f"The name {name!r} isn't allowed (conflict with Python Standard Library module "
            f"name). See {HELP}#project-name for more information."
        )
    similar = conn.execute(
        select(db.projects.c.id).where(
            db.projects.c.index_id == index.id,
            db.projects.c.similar_key == names.ultranormalize_name(name),
        )
    ).first()
    if similar is not None:
        return (
            f"The name {name!r} is too similar to an existing project. "
            f"See {HELP}#project-name for more information."
        )
    return None


def existing_file(conn: Connection, index_id: int, filename: str, blake2: str) -> bool | None:
    """True: this exact file is there; False: the name or the bytes are taken; None: new."""
    row = conn.execute(_FILE_BY_NAME, {"index_id": index_id, "filename": filename}).first()
    if row is not None:
        return bool(row.blake2_256 == blake2)
    same_bytes = conn.execute(_FILE_BY_BYTES, {"index_id": index_id, "blake2": blake2}).first()
    return False if same_bytes else None


@dataclass
class Taken:
    """What the database says about the name and bytes a new file would take."""

    existing: bool | None  # as `existing_file`
    filename_used_before: bool = False
    release_has_sdist: bool = False
    reserved: bool = False  # an upload session is publishing a file of this name
    # `closed_release`'s text, when the caller asked it too (`taken` does not: it knows no
    # index settings). Refused after the filename log and before one sdist per release, as PyPI.
    release_closed: str | None = None


def reserved_filename(filename: str) -> str:
    """Why a filename an upload session is publishing right now is refused (a 409)."""
    return (
        f"File {filename!r} is being published by an upload session (PEP 694) right now; "
        "it cannot be uploaded meanwhile. Check the project's files again in a moment."
    )


def reserved_name(name: str) -> str:
    """Why a new project's name another user's open upload session holds is refused (403)."""
    return (
        f"The name {name!r} is reserved by another user's open upload session (PEP 694) until "
        "it is published, canceled or expires."
    )


# The statuses as literals, compiled once: a list of values is an "expanding" parameter that
# SQLAlchemy rewrites into the SQL on every execution (~0.1 ms: this runs on every request of
# an upload session for a new project, and every upload's name check).
_LIVE_SESSION = db.upload_sessions.c.status.in_(
    [literal_column(f"'{status}'") for status in db.LIVE_SESSION]
)
_RESERVED_FILENAME = (
    select(db.upload_sessions.c.id)
    .join(db.upload_session_files, db.upload_session_files.c.session_id == db.upload_sessions.c.id)
    .where(
        db.upload_sessions.c.index_id == bindparam("index_id"),
        db.upload_sessions.c.status == "processing",
        db.upload_session_files.c.filename == bindparam("filename"),
        db.upload_sessions.c.id != bindparam("session_id"),
    )
    .limit(1)
)
# `taken`'s four questions about a name and bytes in one statement, where they were four
# (each statement costs ~60 µs of SQLAlchemy's CPU; the four lookups, SQLite's, a few).
_BY_NAME = _FILE_BY_NAME.limit(1).scalar_subquery().label("by_name")
_USED_BEFORE = _FILENAME_USED.exists().label("used_before")
_RESERVED = _RESERVED_FILENAME.exists().label("reserved")
_TAKEN = select(_BY_NAME, _FILE_BY_BYTES.exists().label("by_bytes"), _USED_BEFORE, _RESERVED)
_NAME_HOLDERS = select(db.upload_sessions.c.user_id).where(
    db.upload_sessions.c.index_id == bindparam("index_id"),
    db.upload_sessions.c.normalized_name == bindparam("name"),
    _LIVE_SESSION,
    db.upload_sessions.c.expires > bindparam("moment"),
)


def name_reserved_for_another(
    conn: Connection, index_id: int, name: NormalizedName, user_id: int | None
) -> bool:
    """Whether a live upload session of another user holds a project name not created yet.

    A session for a new project reserves its name (PEP 694): nobody else may create the
    project while it is open, neither by a legacy upload nor by a session of their own.
    """
    holders = conn.execute(
        _NAME_HOLDERS, {"index_id": index_id, "name": name, "moment": now()}
    ).scalars()
    return any(holder != user_id or holder is None for holder in holders)


def taken(
    conn: Connection,
    index_id: int,
    project_id: int | None,  # None: the project does not exist yet
    filename: str,
    blake2: str,
    sdist_of: str | None,  # the version, when the file is an sdist
    *,
    session_id: int = 0,  # the upload session asking, whose own reservation does not count
) -> Taken:
    """The name and bytes rules, asked in the order their refusals are given."""
    row = conn.execute(
        _TAKEN,
        {"index_id": index_id, "filename": filename, "blake2": blake2, "session_id": session_id},
    ).one()
    if row.by_name is not None:
        return Taken(bool(row.by_name == blake2))
    if row.by_bytes:
        return Taken(False)
    found = name_taken(row)
    if found.filename_used_before or found.reserved:
        return found
    return _sdist_taken(conn, project_id, sdist_of)


def name_rules(*more: ColumnElement[Any]) -> Select[Any]:
    """One statement asking `taken`'s questions about a name alone (bytes not known yet), and
    `more` of the caller's: `by_name`, the blake2 of the file that has the name (None: none);
    `used_before` and `reserved`, for `name_taken`. Parameters: index_id, filename, session_id
    (the upload session asking, whose own reservation does not count)."""
    return select(_BY_NAME, _USED_BEFORE, _RESERVED, *more)


def name_taken(row: Any) -> Taken:
    """`taken`'s answer for a name no file has, from a row of `name_rules` (or `_TAKEN`)."""
    if row.used_before:
        return Taken(None, filename_used_before=True)
    if row.reserved:
        return Taken(None, reserved=True)
    return Taken(None)


def _sdist_taken(conn: Connection, project_id: int | None, sdist_of: str | None) -> Taken:
    if project_id is None or sdist_of is None:
        return Taken(None)
    release = release_id(conn, project_id, sdist_of)
    has_sdist = (
        release is not None and conn.execute(_RELEASE_SDIST, {"release_id": release}).first()
    )
    return Taken(None, release_has_sdist=bool(has_sdist))


def maybe_taken(
    conn: Connection, index_id: int, files: Sequence[tuple[str, str]], *, session_id: int = 0
) -> set[str]:
    """Of `files` ((filename, blake2) pairs), the filenames `taken` might refuse: their name
    or bytes are on the index, their name was used before, or a publishing session holds it.

    Four queries for any number of files, where `taken` makes up to four per file: an upload
    session's publish asks `taken` only about these (and its sdist), all the others are new.
    """
    names = [name for name, _ in files]
    suspects: set[str] = set()
    for start in range(0, len(files), _BATCH):
        batch = names[start : start + _BATCH]
        by_bytes = {blake2: name for name, blake2 in files[start : start + _BATCH]}
        suspects.update(
            conn.execute(
                select(db.files.c.filename).where(
                    db.files.c.index_id == index_id, db.files.c.filename.in_(batch)
                )
            ).scalars()
        )
        suspects.update(
            by_bytes[blake2]
            for blake2 in conn.execute(
                select(db.files.c.blake2_256).where(
                    db.files.c.index_id == index_id, db.files.c.blake2_256.in_(list(by_bytes))
                )
            ).scalars()
        )
        suspects.update(
            conn.execute(
                select(db.filename_log.c.filename).where(
                    db.filename_log.c.index_id == index_id, db.filename_log.c.filename.in_(batch)
                )
            ).scalars()
        )
        suspects.update(
            conn.execute(
                select(db.upload_session_files.c.filename)
                .join(
                    db.upload_sessions,
                    db.upload_session_files.c.session_id == db.upload_sessions.c.id,
                )
                .where(
                    db.upload_sessions.c.index_id == index_id,
                    db.upload_sessions.c.status == "processing",
                    db.upload_session_files.c.filename.in_(batch),
                    db.upload_sessions.c.id != session_id,
                )
            ).scalars()
        )
    return suspects


_BATCH = 500  # names per IN (...): far below any database's limit on bound parameters


def closed_release(
    conn: Connection,
    index: IndexInfo,
    project_id: int | None,  # None: the project does not exist yet (nor, then, the release)
    project: str,  # its name, for the message
    version: str,
) -> str | None:
    """Why `version` of the project takes no new files on `index` now (None: it does).

    An index may close releases (config.IndexSettings): `close-releases-after` from a release's
    first file, as PyPI does after 14 days since July 2026 — a stolen token or a hijacked
    workflow cannot then add a poisoned file to an old release that people already trust —
    and, with `close-session-releases`, at once for a release published through an upload
    session (PEP 694), which was published whole. A new release is open. The first file's
    time, not the release row's: an import keeps each file's own (older) upload time.

    A text, not an exception, as `new_project_name_problem`: each caller refuses with its own
    error class. PyPI's text leads (people search for it); the rest says what to do.
    """
    closes_after = index.close_releases_after
    if project_id is None or (closes_after is None and not index.close_session_releases):
        return None  # the default: no query at all
    row = conn.execute(
        _RELEASE_OPENNESS, {"project_id": project_id, "version": canonicalize_version(version)}
    ).first()
    if row is None:
        return None
    if index.close_session_releases and row.via_session:
        return (
            f"Release {version} of {project!r} was published through an upload session, and "
            f"index {index.name!r} takes no new files for such a release. Publish the new "
            "files in a new version."
        )
    if closes_after is None or row.first_file is None:
        return None
    first = as_utc(row.first_file)
    if first + timedelta(seconds=closes_after) >= now():
        return None
    age = duration_text(closes_after)
    return (
        f"Uploading new files to releases older than {age} is not allowed. Release {version} "
        f"of {project!r} got its first file on {first:%Y-%m-%d %H:%M} UTC, and index "
        f"{index.name!r} closes releases {age} after their first file: publish the new files "
        "in a new version."
    )


def release_id(conn: Connection, project_id: int, version: str) -> int | None:
    """The id of a project's release of `version` (compared canonically), or None."""
    row = conn.execute(
        _RELEASE, {"project_id": project_id, "version": canonicalize_version(version)}
    ).first()
    return None if row is None else int(row.id)


# ------------------------------------------------------------------------------- the write


@dataclass(frozen=True)
class NewRelease:
    """The release row, used only when the project has no release of this version yet."""

    version: str
    requires_python: str | None
    summary: str | None
    info: dict[str, Any]  # what the JSON API serves

    @property
    def canonical_version(self) -> str:
        return canonicalize_version(self.version)


@dataclass(frozen=True)
class NewFile:
    """One file's row; its blob (`sha256`) is in the store already."""

    filename: str
    packagetype: str
    python_version: str
    sha256: str
    md5: str | None
    blake2_256: str
    size: int
    requires_python: str | None
    metadata_sha256: str | None = None  # PEP 658: the served `.metadata` file's digest
    metadata: bytes | None = None  # its bytes, when not stored already (a promote's are)


@dataclass(frozen=True)
class Event:
    """A journal row the write records on the project (audit trail and serial)."""

    action: str
    details: dict[str, Any]
    index_id: int | None = None  # None: the index the files go to
    changes_project: bool = True  # False: audit only, the project's serial stays


@dataclass(frozen=True)
class Added:
    project_id: int
    release_id: int
    created_project: bool


@dataclass
class Target:
    """Where the files go: an existing project (`id`) or one to create (its name checked)."""

    index_id: int
    name: str  # as shown; the project's name when it is created
    id: int | None = None
    normalized: NormalizedName = field(init=False)

    def __post_init__(self) -> None:
        self.normalized = canonicalize_name(self.name)


def add_files(
    conn: Connection,
    target: Target,
    release: NewRelease,
    files: Sequence[NewFile],
    actor: Identity,
    events: Sequence[Event],
    *,
    moment: datetime | None = None,
    via_session: bool = False,
) -> Added:
    """Write the rows that put `files` in `release` of the target project.

    Inside the caller's writing transaction, once it has decided the files may go there (with
    `closed_release` among the rules). A new project gets `actor` as its owner (when it is a
    user), and `moment` (default now) is the files' upload time and a new release's creation
    time. `via_session`: the files are published through an upload session (PEP 694); the
    release, new or not, is marked so, and an index with `close-session-releases` takes no
    more files for it.
    """
    moment = moment or now()
    created = target.id is None
    if target.id is None:
        project_id = create_project(conn, target.index_id, target.name, actor.user_id)
    else:
        project_id = target.id
    existing_release = release_id(conn, project_id, release.version)
    if existing_release is None:
        new_release = {
            "project_id": project_id,
            "version": release.version,
            "canonical_version": release.canonical_version,
            "created": moment,
            "yanked": False,
            "yanked_reason": "",
            "requires_python": release.requires_python,
            "summary": release.summary,
            "info": release.info,
            "via_session": via_session,
        }
        the_release = int(db.inserted_id(conn, _INSERT_RELEASE, new_release))
    else:
        the_release = existing_release
        if via_session:
            conn.execute(_MARK_VIA_SESSION, {"release_id": the_release})
    publisher = list(actor.publishers) or None
    conn.execute(
        _INSERT_FILE,
        [
            {
                "release_id": the_release,
                "index_id": target.index_id,
                "filename": f.filename,
                "packagetype": f.packagetype,
                "python_version": f.python_version,
                "sha256": f.sha256,
                "md5": f.md5,
                "blake2_256": f.blake2_256,
                "size": f.size,
                "metadata_sha256": f.metadata_sha256,
                "requires_python": f.requires_python,
                "upload_time": moment,
                "uploaded_by": actor.username,
                "publisher": publisher,
            }
            for f in files
        ],
    )
    db.store_core_metadata_of(
        conn,
        {
            f.metadata_sha256: f.metadata
            for f in files
            if f.metadata_sha256 is not None and f.metadata is not None
        },
    )
    conn.execute(
        _LOG_FILENAME, [{"index_id": target.index_id, "filename": f.filename} for f in files]
    )
    conn.execute(_GROW_PROJECT, {"project_id": project_id, "size": sum(f.size for f in files)})
    touch_token(conn, actor.token_id)
    audit_only = [e for e in events if not e.changes_project]
    if audit_only and events[: len(audit_only)] == audit_only:
        # A session's files (each audit only) come first: one statement, not one each.
        record_audit_events(
            conn,
            [
                (
                    target.index_id if e.index_id is None else e.index_id,
                    target.normalized,
                    e.action,
                    actor.username,
                    e.details,
                )
                for e in audit_only
            ],
        )
        events = events[len(audit_only) :]
    for event in events:
        record_event(
            conn,
            target.index_id if event.index_id is None else event.index_id,
            target.normalized,
            event.action,
            actor.username,
            event.details,
            changes_project=event.changes_project,
        )
    return Added(project_id, the_release, created)
