"""Read models: a project with its releases and files, as the read APIs need it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version
from sqlalchemy import Engine, Row, select

from keyless.dists.versions import canonical_version, parse_version
from keyless.store import db

from .projects import find_project


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
class ProjectSnapshot:
    """One consistent read of a project (one transaction), for rendering pages and JSON."""

    project: Row[Any]
    releases: list[Row[Any]]
    files: list[Row[Any]]  # ordered by filename

    def release_by_id(self) -> dict[int, Row[Any]]:
        return {release.id: release for release in self.releases}


def load_project(engine: Engine, index_id: int, name: NormalizedName) -> ProjectSnapshot | None:
    """The project `name` (normalized) on an index with all its releases and files, or None."""
    with db.reading(engine) as conn:
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
    return ProjectSnapshot(project=project, releases=list(releases), files=list(files))
