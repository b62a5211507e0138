"""Read models: a project with its releases and files, as the read APIs need it; and the
listings the web UI shows (search, history filters, trusted-publish links).

All reads; every change goes through the index's use cases (accounts, projects, publishers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version
from sqlalchemy import Engine, Row, func, select

from keyless.dists.versions import canonical_version, parse_version
from keyless.oidc.providers import PROVIDERS
from keyless.store import db

from .accounts import as_utc
from .projects import ProjectRow, find_project, role_of


def version_key(version: str) -> tuple[int, Version | str]:
    """Sort key for version strings: PEP 440 order, unparsable ones (older uploads) first."""
    try:
        return (1, parse_version(version))
    except InvalidVersion:
        return (0, version)


def latest_release(releases: Iterable[Any]) -> Any | None:
    """PyPI's choice: the newest non-yanked final release, else newest non-yanked, else newest."""
    ordered = sorted(releases, key=lambda r: version_key(r.version), reverse=True)
    finals = [r for r in ordered if not r.yanked and not _prerelease(r.version)]
    live = [r for r in ordered if not r.yanked]
    for candidates in (finals, live, ordered):
        if candidates:
            return candidates[0]
    return None


def release_for(releases: Iterable[Any], version: str) -> Any | None:
    """The release `version` names, compared as PEP 440 does (1.0 is 1.0.0), or None."""
    try:
        wanted = canonical_version(version)
    except InvalidVersion:
        wanted = version
    return next((r for r in releases if r.canonical_version == wanted), None)


def _prerelease(version: str) -> bool:
    try:
        return parse_version(version).is_prerelease
    except InvalidVersion:
        return True


@dataclass(frozen=True)
class ReleaseRow:
    """A release as the read APIs and the pages show it: its `releases` row."""

    id: int
    project_id: int
    version: str
    canonical_version: str
    created: datetime
    yanked: bool
    yanked_reason: str
    requires_python: str | None
    summary: str | None
    info: dict[str, Any]  # the metadata fields the JSON API serves


@dataclass(frozen=True)
class FileRow:
    """A distribution as the read APIs and the pages show it: its `files` row."""

    id: int
    release_id: int
    index_id: int
    filename: str
    packagetype: str
    python_version: str
    sha256: str
    md5: str
    blake2_256: str
    size: int
    metadata_sha256: str | None
    requires_python: str | None
    upload_time: datetime
    uploaded_by: str
    publisher: dict[str, Any] | None  # set when a trusted publisher uploaded it


def _columns(kind: type[ReleaseRow | FileRow], row: Row[Any]) -> dict[str, Any]:
    """The values of a read model's fields in a row that has them as columns."""
    return {f.name: row._mapping[f.name] for f in fields(kind)}


@dataclass(frozen=True)
class ProjectSnapshot:
    """One consistent read of a project (one transaction), for rendering pages and JSON."""

    project: ProjectRow
    releases: list[ReleaseRow]
    files: list[FileRow]  # ordered by filename

    def release_by_id(self) -> dict[int, ReleaseRow]:
        return {release.id: release for release in self.releases}


PAGE_SIZE = 50
# SQLite takes up to 32,766 bound parameters; far fewer per query keeps each one quick.
CHUNK = 500

FileKey = tuple[str, str]  # (sha256, filename): one URL under files/


@dataclass(frozen=True)
class ListedProject:
    """A project in a listing of the web UI: the project and its latest release's facts."""

    project: ProjectRow
    version: str | None
    summary: str | None
    updated: Any  # when its newest release was made; None without releases


def _like(text: str) -> str:
    # The search box is a substring match on the normalized name; escape LIKE's wildcards.
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class Lookup:
    known: bool  # some index holds these bytes under this name
    offered: bool  # ... in a project that is not quarantined
    metadata_sha256: str | None = None
    metadata: bytes | None = None  # the METADATA bytes, when asked for


@dataclass
class Catalog:
    """The read models of one database: a project whole, and the listings the pages show."""

    engine: Engine

    def probe(self) -> None:
        """Read one row, or raise: /_/health's check that the database answers.

        A table, not `SELECT 1`: SQLite answers that without reading the database at all.
        """
        with db.reading(self.engine) as conn:
            conn.execute(select(db.indexes.c.id).limit(1)).all()

    def load_project(self, index_id: int, name: NormalizedName) -> ProjectSnapshot | None:
        """The project `name` (normalized) on an index with all its releases and files, or None."""
        with db.reading(self.engine) as conn:
            project = find_project(conn, index_id, name)
            if project is None:
                return None
            releases = conn.execute(
                select(db.releases).where(db.releases.c.project_id == project.id)
            ).all()
            files = conn.execute(
                select(db.files)
                .join(db.releases, db.releases.c.id == db.files.c.release_id)
                .where(db.releases.c.project_id == project.id)
                .order_by(db.files.c.filename)
            ).all()
        return ProjectSnapshot(
            project=ProjectRow.of(project),
            releases=[ReleaseRow(**_columns(ReleaseRow, row)) for row in releases],
            files=[FileRow(**_columns(FileRow, row)) for row in files],
        )

    def search_projects(
        self, index_id: int, text: str, page: int = 1
    ) -> tuple[list[ListedProject], bool]:
        """One page of an index's projects whose normalized name contains `text`; and whether
        there are more."""
        query = select(db.projects).where(db.projects.c.index_id == index_id)
        if text:
            wanted = canonicalize_name(text) or text.lower()
            query = query.where(db.projects.c.normalized_name.like(_like(wanted), escape="\\"))
        query = query.order_by(db.projects.c.normalized_name)
        query = query.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)
        with db.reading(self.engine) as conn:
            projects = conn.execute(query).all()
            ids = [p.id for p in projects[:PAGE_SIZE]]
            releases = (
                conn.execute(select(db.releases).where(db.releases.c.project_id.in_(ids))).all()
                if ids
                else []
            )
        by_project: dict[int, list[Any]] = {}
        for release in releases:
            by_project.setdefault(release.project_id, []).append(release)
        rows = []
        for project in projects[:PAGE_SIZE]:
            newest = latest_release(by_project.get(project.id, []))
            rows.append(
                ListedProject(
                    project=ProjectRow.of(project),
                    version=newest.version if newest else None,
                    summary=newest.summary if newest else None,
                    updated=max((r.created for r in by_project.get(project.id, [])), default=None),
                )
            )
        return rows, len(projects) > PAGE_SIZE

    def project_names(self, index_id: int) -> list[tuple[str, NormalizedName]]:
        """(name, normalized name) of each project of an index, by normalized name: the
        simple API's root page."""
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(db.projects.c.name, db.projects.c.normalized_name)
                .where(db.projects.c.index_id == index_id)
                .order_by(db.projects.c.normalized_name)
            ).all()
        return [(row.name, NormalizedName(row.normalized_name)) for row in rows]

    def files_by_project(self, index_id: int) -> dict[NormalizedName, set[FileKey]]:
        """Every project of an index with the files it offers (none when quarantined): what
        the static tree holds for that index."""
        with db.reading(self.engine) as conn:
            names = conn.execute(
                select(db.projects.c.normalized_name).where(db.projects.c.index_id == index_id)
            ).scalars()
            found: dict[NormalizedName, set[FileKey]] = {NormalizedName(n): set() for n in names}
            rows = conn.execute(
                select(db.projects.c.normalized_name, db.files.c.sha256, db.files.c.filename)
                .join(db.releases, db.releases.c.id == db.files.c.release_id)
                .join(db.projects, db.projects.c.id == db.releases.c.project_id)
                .where(db.projects.c.index_id == index_id, db.projects.c.status != "quarantined")
            ).all()
        for row in rows:
            found.setdefault(NormalizedName(row.normalized_name), set()).add(
                (row.sha256, row.filename)
            )
        return found

    def offered_files(self, wanted: set[FileKey]) -> dict[FileKey, str | None]:
        """Those of `wanted` some project that is not quarantined offers, each with the hash
        of its metadata file (None: it has none of its own)."""
        offers: dict[FileKey, str | None] = {}
        digests = sorted({sha256 for sha256, _ in wanted})
        with db.reading(self.engine) as conn:
            for start in range(0, len(digests), CHUNK):
                rows = conn.execute(
                    select(db.files.c.sha256, db.files.c.filename, db.files.c.metadata_sha256)
                    .join(db.releases, db.releases.c.id == db.files.c.release_id)
                    .join(db.projects, db.projects.c.id == db.releases.c.project_id)
                    .where(
                        db.files.c.sha256.in_(digests[start : start + CHUNK]),
                        db.projects.c.status != "quarantined",
                    )
                ).all()
                for row in rows:
                    file_key = (row.sha256, row.filename)
                    if file_key in wanted and file_key not in offers:
                        offers[file_key] = row.metadata_sha256
        return offers

    def core_metadata(self, digests: Iterable[str]) -> dict[str, bytes]:
        """The METADATA bytes stored under each of these hashes (those found)."""
        ordered = sorted(set(digests))
        found: dict[str, bytes] = {}
        with db.reading(self.engine) as conn:
            for start in range(0, len(ordered), CHUNK):
                rows = conn.execute(
                    select(db.core_metadata.c.sha256, db.core_metadata.c.data).where(
                        db.core_metadata.c.sha256.in_(ordered[start : start + CHUNK])
                    )
                ).all()
                found.update((row.sha256, bytes(row.data)) for row in rows)
        return found

    def indexes_holding(self, normalized: str) -> set[int]:
        """The ids of the indexes that have a project of this normalized name."""
        query = select(db.projects.c.index_id).where(db.projects.c.normalized_name == normalized)
        with db.reading(self.engine) as conn:
            return set(conn.scalars(query))

    def index_counts(self) -> dict[int, int]:
        """Index id -> number of projects."""
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(db.projects.c.index_id, func.count()).group_by(db.projects.c.index_id)
            ).all()
        return {int(index_id): int(count) for index_id, count in rows}

    def project_and_role(
        self, index_id: int, normalized: NormalizedName, user_id: int | None
    ) -> tuple[ProjectRow | None, str | None]:
        """The project (None if absent) and the user's role on it."""
        with db.reading(self.engine) as conn:
            row = find_project(conn, index_id, normalized)
            if row is None:
                return None, None
            project = ProjectRow.of(row)
            if user_id is None:
                return project, None
            return project, role_of(conn, project.id, user_id)

    def role_on(self, project_id: int, user_id: int) -> str | None:
        """The user's role on a project already read (None: no role)."""
        with db.reading(self.engine) as conn:
            return role_of(conn, project_id, user_id)

    def trusted_runs(self, index_id: int, normalized: str) -> dict[str, dict[str, Any]]:
        """Filename -> the CI run that uploaded it (commit/run URLs, ref, sha, workflow).

        An upload's journal entry names the token it used; the mint entry of that token holds
        what the OIDC token said about the run.
        """
        with db.reading(self.engine) as conn:
            events = conn.execute(
                select(db.journal.c.action, db.journal.c.details).where(
                    db.journal.c.index_id == index_id,
                    db.journal.c.project == normalized,
                    db.journal.c.action.in_(("mint_token", "file_upload")),
                )
            ).all()
        mints = {
            e.details.get("token_id"): e.details
            for e in events
            if e.action == "mint_token" and isinstance(e.details, dict)
        }
        runs = {}
        for event in events:
            details = event.details if isinstance(event.details, dict) else {}
            if event.action == "file_upload" and details.get("trusted_publishers"):
                mint = mints.get(details.get("token_id"))
                if mint is not None:
                    runs[str(details.get("filename"))] = mint
        return runs

    def history(
        self,
        index_id: int,
        normalized: str,
        actions: Sequence[str] | None,
        before: int | None,
        limit: int = PAGE_SIZE,
    ) -> tuple[list[Any], int | None]:
        """Journal entries of one project, newest first, optionally only some actions; and the
        serial to continue from for older entries (None at the end)."""
        query = select(db.journal).where(
            db.journal.c.index_id == index_id, db.journal.c.project == normalized
        )
        if actions:
            query = query.where(db.journal.c.action.in_(list(actions)))
        if before:
            query = query.where(db.journal.c.id < before)
        query = query.order_by(db.journal.c.id.desc()).limit(limit + 1)
        with db.reading(self.engine) as conn:
            rows = conn.execute(query).all()
        more = rows[limit - 1].id if len(rows) > limit else None
        return list(rows[:limit]), more

    def projects_of_user(self, user_id: int) -> list[Any]:
        """(index name, project name, normalized name, role) of each project the user has a role
        on."""
        with db.reading(self.engine) as conn:
            return list(
                conn.execute(
                    select(
                        db.indexes.c.name.label("index"),
                        db.projects.c.name,
                        db.projects.c.normalized_name,
                        db.roles.c.role,
                    )
                    .join(db.projects, db.projects.c.id == db.roles.c.project_id)
                    .join(db.indexes, db.indexes.c.id == db.projects.c.index_id)
                    .where(db.roles.c.user_id == user_id)
                    .order_by(db.indexes.c.name, db.projects.c.normalized_name)
                ).all()
            )

    def pending_publishers_of(self, user_id: int) -> list[dict[str, Any]]:
        """The pending publishers a user registered, with their index, summary and expiry."""
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(db.publishers, db.indexes.c.name.label("index"))
                .join(db.indexes, db.indexes.c.id == db.publishers.c.index_id)
                .where(
                    db.publishers.c.created_by == user_id,
                    db.publishers.c.pending_project.is_not(None),
                )
                .order_by(db.publishers.c.id)
            ).all()
        return [
            {
                "id": row.id,
                "index": row.index,
                "project": row.pending_project,
                "kind": row.kind,
                "config": row.config,
                "summary": PROVIDERS[row.kind].summary(row.config),
                "expires": row.expires,
            }
            for row in rows
        ]

    def users(self) -> list[Any]:
        """Every user with the number of projects they have a role on."""
        with db.reading(self.engine) as conn:
            return list(
                conn.execute(
                    select(
                        db.users.c.username,
                        db.users.c.is_admin,
                        db.users.c.created,
                        func.count(db.roles.c.project_id).label("projects"),
                    )
                    .outerjoin(db.roles, db.roles.c.user_id == db.users.c.id)
                    .group_by(db.users.c.id)
                    .order_by(db.users.c.username)
                ).all()
            )

    def file(self, sha256: str, filename: str, want_metadata: bool) -> Lookup:
        """What is served for a file under this hash and name.

        The URL is shared by every index holding these bytes under this name; it is offered as
        long as one of them belongs to a project that is not quarantined (PEP 792: a quarantined
        project's files MUST NOT be offered for download, not only left off its page).
        """
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(db.files.c.metadata_sha256, db.projects.c.status)
                .join(db.releases, db.releases.c.id == db.files.c.release_id)
                .join(db.projects, db.projects.c.id == db.releases.c.project_id)
                .where(db.files.c.sha256 == sha256, db.files.c.filename == filename)
            ).all()
            offered = [row for row in rows if row.status != "quarantined"]
            if not offered:
                return Lookup(known=bool(rows), offered=False)
            found = Lookup(known=True, offered=True, metadata_sha256=offered[0].metadata_sha256)
            if want_metadata and found.metadata_sha256 is not None:
                found.metadata = conn.execute(
                    select(db.core_metadata.c.data).where(
                        db.core_metadata.c.sha256 == found.metadata_sha256
                    )
                ).scalar()
        return found

    def owns_name(self, index_id: int, name: NormalizedName) -> bool:
        """Whether an index keeps `name` for itself: it has the project, or a pending publisher
        (not expired) reserves it. Such a name is never served from an upstream (mirror.py):
        whoever publishes it there cannot reach this index's users (dependency confusion)."""
        with db.reading(self.engine) as conn:
            if find_project(conn, index_id, name) is not None:
                return True
            # Stored as typed: compared normalized (a handful of rows per index).
            pending = conn.execute(
                select(db.publishers.c.pending_project, db.publishers.c.expires).where(
                    db.publishers.c.index_id == index_id,
                    db.publishers.c.pending_project.is_not(None),
                )
            ).all()
        now = datetime.now(UTC)
        return any(
            canonicalize_name(row.pending_project) == name
            and (row.expires is None or as_utc(row.expires) > now)
            for row in pending
        )
