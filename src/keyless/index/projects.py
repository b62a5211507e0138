"""Project-level use cases: roles, the journal, yanking and project status."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion
from sqlalchemy import Connection, Engine, Row, bindparam, select, update

from keyless.dists.names import ultranormalize_name
from keyless.dists.versions import canonical_version, not_a_version
from keyless.store import db
from keyless.store.changes import record_change

from .accounts import Identity, InvalidCredentials, current_identity, now
from .errors import Refused

STATUSES = ("active", "archived", "quarantined")
ROLES = ("owner", "maintainer")


class ProjectError(Refused):
    """A project action that cannot be done."""


# Statements used on every upload are built once: building one costs ~60 µs here, several
# times what SQLite takes to run it.
_PROJECT = select(db.projects).where(
    db.projects.c.index_id == bindparam("index_id"),
    db.projects.c.normalized_name == bindparam("name"),
)
_ROLE = select(db.roles.c.role).where(
    db.roles.c.project_id == bindparam("project_id"), db.roles.c.user_id == bindparam("user_id")
)
_JOURNAL_INSERT = db.journal.insert()
_SET_SERIAL = (
    update(db.projects)
    .where(
        db.projects.c.index_id == bindparam("in_index"),
        db.projects.c.normalized_name == bindparam("project"),
    )
    .values(serial=bindparam("new_serial"))
)


@dataclass(frozen=True)
class ProjectRow:
    """A project as the use cases decide on it and the pages show it: its `projects` row's
    columns that matter outside this module. One type for all (uploads, the simple and JSON
    APIs, the web UI's pages and listings), so a project is read the same way everywhere and no
    raw database row leaves the use cases."""

    id: int
    name: str
    normalized_name: NormalizedName
    status: str
    status_reason: str
    serial: int  # the project's last change (PEP 691's `_last-serial`)
    total_size: int

    @classmethod
    def of(cls, row: Any, prefix: str = "") -> ProjectRow:
        """From a row that has the `projects` columns (`find_project`'s, a select's), each
        labelled `prefix` + its name in a row that joins them to another table's."""
        return cls(
            id=getattr(row, prefix + "id"),
            name=getattr(row, prefix + "name"),
            normalized_name=NormalizedName(getattr(row, prefix + "normalized_name")),
            status=getattr(row, prefix + "status"),
            status_reason=getattr(row, prefix + "status_reason"),
            serial=getattr(row, prefix + "serial"),
            total_size=getattr(row, prefix + "total_size"),
        )


def find_project(conn: Connection, index_id: int, name: NormalizedName) -> Row[Any] | None:
    """The `projects` row of the (normalized) `name` on an index, or None."""
    return conn.execute(_PROJECT, {"index_id": index_id, "name": name}).first()


def role_of(conn: Connection, project_id: int, user_id: int) -> str | None:
    return conn.execute(_ROLE, {"project_id": project_id, "user_id": user_id}).scalar()


def record_event(
    conn: Connection,
    index_id: int,
    project: str | None,
    action: str,
    actor: str,
    details: dict[str, Any],
    *,
    changes_project: bool = True,
) -> int:
    """Append to the journal; the row's id becomes the project's serial if it changed it.

    Audit-only events (a token minted) leave the serial alone: nothing served changed.
    """
    entry = {
        "time": now(),
        "index_id": index_id,
        "project": project,
        "action": action,
        "actor": actor,
        "details": details,
    }
    serial = db.inserted_id(conn, _JOURNAL_INSERT, entry)
    if project is not None and changes_project:
        conn.execute(_SET_SERIAL, {"in_index": index_id, "project": project, "new_serial": serial})
        record_change(conn, index_id, project)  # other server processes drop its pages
    return serial


def record_audit_events(
    conn: Connection, events: Sequence[tuple[int, str | None, str, str, dict[str, Any]]]
) -> None:
    """Append audit-only events ((index_id, project, action, actor, details), in order) to the
    journal in one statement; the projects' serials stay (see `record_event`)."""
    moment = now()
    conn.execute(
        _JOURNAL_INSERT,
        [
            {
                "time": moment,
                "index_id": index_id,
                "project": project,
                "action": action,
                "actor": actor,
                "details": details,
            }
            for index_id, project, action, actor, details in events
        ],
    )


def create_project(conn: Connection, index_id: int, name: str, owner_id: int | None) -> int:
    """A new, empty, active project (its name already checked); `owner_id` becomes its owner."""
    project_id = int(
        db.inserted_id(
            conn,
            db.projects.insert().values(
                index_id=index_id,
                name=name,
                normalized_name=canonicalize_name(name),
                similar_key=ultranormalize_name(name),
                status="active",
                status_reason="",
                serial=0,
                total_size=0,
                created=now(),
            ),
        )
    )
    if owner_id is not None:
        conn.execute(
            db.roles.insert().values(project_id=project_id, user_id=owner_id, role="owner")
        )
    return project_id


def no_cached_pages(index_id: int, project: str) -> None:
    """`on_change` of a process that keeps no pages (the CLI's): the servers learn of the
    change from the change serial the journal bumps."""


@dataclass
class ProjectAdmin:
    """Owner actions on a project. `on_change` invalidates cached pages."""

    engine: Engine
    on_change: Callable[[int, str], None]

    def _owned_project(self, conn: Connection, identity: Identity, name: str) -> Any:
        """The project, once `identity` as it is now (inside the caller's write transaction)
        proves to be an owner's; raises ProjectError."""
        try:
            identity = current_identity(conn, identity)
        except InvalidCredentials as exc:
            raise ProjectError(exc.reason, status=403) from None
        if identity.user_id is None or identity.index_id is None:
            raise ProjectError(
                "Tokens minted for trusted publishers can only upload; use an owner's API "
                "token for this.",
                status=403,
            )
        normalized = canonicalize_name(name)
        project = find_project(conn, identity.index_id, normalized)
        if project is None:
            raise ProjectError(f"No project named {name!r} on this index.", status=404)
        if (
            not identity.may_touch(identity.index_id, normalized)
            or role_of(conn, project.id, identity.user_id) != "owner"
        ):
            raise ProjectError(
                f"The user '{identity.username}' is not an owner of project '{project.name}'; "
                "only owners may do this.",
                status=403,
            )
        return project

    def set_yanked(
        self, identity: Identity, name: str, version: str, *, yanked: bool, reason: str = ""
    ) -> dict[str, Any]:
        """Yank (or unyank) a whole release, as PyPI does; raises ProjectError."""
        try:
            canonical = canonical_version(version)
        except InvalidVersion:
            raise ProjectError(not_a_version(version)) from None
        if len(reason) > 2000:
            raise ProjectError("The yank reason is too long (at most 2000 characters).")
        with db.writing(self.engine) as conn:
            project = self._owned_project(conn, identity, name)
            release = conn.execute(
                select(db.releases).where(
                    db.releases.c.project_id == project.id,
                    db.releases.c.canonical_version == canonical,
                )
            ).first()
            if release is None:
                raise ProjectError(
                    f"Project '{project.name}' has no release {version!r}.", status=404
                )
            conn.execute(
                update(db.releases)
                .where(db.releases.c.id == release.id)
                .values(yanked=yanked, yanked_reason=reason if yanked else "")
            )
            record_event(
                conn,
                project.index_id,
                project.normalized_name,
                "yank_release" if yanked else "unyank_release",
                identity.username,
                {"version": release.version, "reason": reason},
            )
        self.on_change(project.index_id, project.normalized_name)
        return {
            "project": project.name,
            "version": release.version,
            "yanked": yanked,
            "reason": reason if yanked else "",
        }

    def set_status(
        self, identity: Identity, name: str, status: str, reason: str = ""
    ) -> dict[str, Any]:
        """Mark a project active, archived (no uploads) or quarantined (no files listed)."""
        if status not in STATUSES:
            raise ProjectError(f"Status must be one of {', '.join(STATUSES)}, not {status!r}.")
        with db.writing(self.engine) as conn:
            project = self._owned_project(conn, identity, name)
            conn.execute(
                update(db.projects)
                .where(db.projects.c.id == project.id)
                .values(status=status, status_reason=reason)
            )
            record_event(
                conn,
                project.index_id,
                project.normalized_name,
                "set_status",
                identity.username,
                {"status": status, "reason": reason},
            )
        self.on_change(project.index_id, project.normalized_name)
        return {"project": project.name, "status": status, "reason": reason}

    def add_role(self, index_id: int, project: str, username: str, role: str) -> None:
        """Give a user a role on a project (admin CLI, moving in from devpi); the pages do not
        show roles, so nothing is invalidated."""
        if role not in ROLES:
            raise ProjectError(f"Role must be one of {', '.join(ROLES)}, not {role!r}.")
        normalized: NormalizedName = canonicalize_name(project)
        with db.writing(self.engine) as conn:
            row = find_project(conn, index_id, normalized)
            if row is None:
                raise ProjectError(f"No project named {project!r} on this index.", status=404)
            project_id = row.id
            user_id = conn.execute(
                select(db.users.c.id).where(db.users.c.username == username)
            ).scalar()
            if user_id is None:
                raise ProjectError(f"No user named {username!r}.", status=404)
            conn.execute(
                db.roles.delete().where(
                    db.roles.c.project_id == project_id, db.roles.c.user_id == user_id
                )
            )
            conn.execute(
                db.roles.insert().values(project_id=project_id, user_id=user_id, role=role)
            )
            record_event(
                conn, index_id, normalized, "add_role", "admin", {"user": username, "role": role}
            )
