"""Read models: a project with its releases and files, as the read APIs need it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName
from sqlalchemy import Engine, Row, select

from keyless.store import db

from .projects import find_project


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
