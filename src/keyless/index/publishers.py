"""Registering trusted publishers: per (index, project), or pending for a project to come."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from packaging.utils import canonicalize_name
from sqlalchemy import Connection, Engine, delete, select

from keyless.config import TrustedPublishingSettings
from keyless.dists.errors import DistError
from keyless.dists.names import validate_project_name
from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import PROVIDERS
from keyless.store import db
from keyless.store.changes import record_change

from .accounts import Identity, InvalidCredentials, as_utc, current_identity, now
from .projects import ProjectError, find_project, record_event, role_of

PENDING_LIFETIME = timedelta(days=30)
MAX_PENDING_PER_USER = 5


@dataclass(frozen=True)
class Actor:
    """Who is changing publishers: a user (owner checks apply) or the admin CLI (no checks)."""

    username: str
    user_id: int | None  # None: the local admin CLI
    # The API token the user acts with; None for a browser session or the CLI. Checked again
    # inside each write transaction (`_check_token`): it may be revoked after the request
    # was authenticated.
    token: Identity | None = None


def _provider(kind: str) -> Any:
    provider = PROVIDERS.get(kind)
    if provider is None:
        raise ProjectError(
            f"Unknown publisher kind {kind!r}; use one of {', '.join(sorted(PROVIDERS))}."
        )
    return provider


def _check_issuer(provider: Any, config: Mapping[str, Any], tp: TrustedPublishingSettings) -> None:
    issuer = provider.issuer(config).rstrip("/")
    trusted = tp.trusted_issuers()
    if trusted.get(issuer) != provider.kind:
        raise PublisherConfigError(
            {
                "issuer": f"this server does not trust {issuer!r} as a {provider.title} issuer; "
                "an admin adds it under [trusted-publishing.issuers] in the server settings"
            }
        )


def _projects(conn: Connection, index_id: int, names: Sequence[str]) -> list[Any]:
    rows = []
    for name in names:
        row = find_project(conn, index_id, canonicalize_name(name))
        if row is None:
            raise ProjectError(
                f"No project named {name!r} on this index. For a project that does not exist "
                "yet, register a pending publisher (--pending).",
                status=404,
            )
        rows.append(row)
    return rows


def _require_owner(
    conn: Connection, actor: Actor, project: Any, doing: str = "change its publishers"
) -> None:
    if actor.user_id is not None and role_of(conn, project.id, actor.user_id) != "owner":
        raise ProjectError(
            f"The user '{actor.username}' is not an owner of project '{project.name}'; only "
            f"owners may {doing}.",
            status=403,
        )


def _check_token(conn: Connection, actor: Actor, index_id: int, projects: Iterable[str]) -> None:
    """The actor's token, as it is now, must be valid and may touch each of `projects`."""
    if actor.token is None:
        return
    try:
        token = current_identity(conn, actor.token)
    except InvalidCredentials as exc:
        raise ProjectError(exc.reason, status=403) from None
    for name in projects:
        if not token.may_touch(index_id, canonicalize_name(name)):
            scope = ", ".join(sorted(token.projects or ()))
            raise ProjectError(
                f"This API token is limited to: {scope}; it may not change the publishers of "
                f"{name!r}.",
                status=403,
            )


def _insert(
    conn: Connection,
    index_id: int,
    provider: Any,
    config: Mapping[str, Any],
    actor: Actor,
    pending: str | None,
) -> int:
    moment = now()
    return int(
        db.inserted_id(
            conn,
            db.publishers.insert().values(
                index_id=index_id,
                kind=provider.kind,
                lookup_key=provider.lookup_key(config),
                config=dict(config),
                pinned={},
                created=moment,
                created_by=actor.user_id,
                pending_project=pending,
                expires=moment + PENDING_LIFETIME if pending else None,
            ),
        )
    )


def _registered(
    publisher_id: int, kind: str, summary: str, projects: list[str], *, pending: bool = False
) -> dict[str, Any]:
    """What adding a publisher answers (the JSON API, the CLI and the web form show it)."""
    return {
        "id": publisher_id,
        "kind": kind,
        "summary": summary,
        "projects": projects,
        "pending": pending,
    }


@dataclass
class Publishers:
    """Trusted publishers of one database's projects: register, list, remove, audit.

    `tp` is the server's `[trusted-publishing]` settings: which issuers it trusts.
    """

    engine: Engine
    tp: TrustedPublishingSettings

    def check_owner(self, index_id: int, project: str, actor: Actor) -> None:
        """Before showing a project's publishers or audit trail: raises ProjectError (404 for an
        unknown project, 403 unless `actor` owns it)."""
        with db.reading(self.engine) as conn:
            row = find_project(conn, index_id, canonicalize_name(project))
            if row is None:
                raise ProjectError(f"No project named {project!r} on this index.", status=404)
            _require_owner(conn, actor, row, doing="see its publishers and audit trail")

    def add_publisher(
        self,
        index_id: int,
        projects: Sequence[str],
        kind: str,
        raw_config: Mapping[str, str],
        actor: Actor,
    ) -> dict[str, Any]:
        """Register a publisher linked to existing projects (one publisher, several projects).

        Raises PublisherConfigError (per-field problems) or ProjectError.
        """
        if not projects:
            raise ProjectError("Name at least one project for the publisher.")
        provider = _provider(kind)
        config = provider.validate_config(raw_config)
        _check_issuer(provider, config, self.tp)
        with db.writing(self.engine) as conn:
            rows = _projects(conn, index_id, projects)
            _check_token(conn, actor, index_id, (row.normalized_name for row in rows))
            for row in rows:
                _require_owner(conn, actor, row)
            publisher_id = _insert(conn, index_id, provider, config, actor, pending=None)
            for row in rows:
                conn.execute(
                    db.publisher_projects.insert().values(
                        publisher_id=publisher_id, project_id=row.id
                    )
                )
                record_event(
                    conn,
                    index_id,
                    row.normalized_name,
                    "add_publisher",
                    actor.username,
                    {"publisher_id": publisher_id, "publisher": provider.summary(config)},
                    changes_project=False,
                )
        return _registered(publisher_id, kind, provider.summary(config), [r.name for r in rows])

    def add_pending_publisher(
        self,
        index_id: int,
        project: str,
        kind: str,
        raw_config: Mapping[str, str],
        actor: Actor,
    ) -> dict[str, Any]:
        """A publisher for a project that does not exist yet; its first trusted publish creates it.

        The name is not reserved: whoever creates the project first owns it. Expires in 30 days.
        """
        try:
            validate_project_name(project)
        except DistError as exc:
            raise ProjectError(exc.message) from None
        provider = _provider(kind)
        config = provider.validate_config(raw_config)
        _check_issuer(provider, config, self.tp)
        with db.writing(self.engine) as conn:
            _check_token(conn, actor, index_id, [project])
            if find_project(conn, index_id, canonicalize_name(project)):
                raise ProjectError(
                    f"Project {project!r} already exists; "
                    "its owners add publishers to it directly.",
                    status=409,
                )
            if actor.user_id is not None:
                count = len(
                    conn.execute(
                        select(db.publishers.c.id).where(
                            db.publishers.c.created_by == actor.user_id,
                            db.publishers.c.pending_project.is_not(None),
                        )
                    ).all()
                )
                if count >= MAX_PENDING_PER_USER:
                    raise ProjectError(
                        f"A user may have at most {MAX_PENDING_PER_USER} pending publishers; "
                        "remove one first.",
                        status=429,
                    )
            publisher_id = _insert(conn, index_id, provider, config, actor, pending=project)
            record_event(
                conn,
                index_id,
                canonicalize_name(project),
                "add_pending_publisher",
                actor.username,
                {"publisher_id": publisher_id, "publisher": provider.summary(config)},
                changes_project=False,
            )
            # The name is now the index's own: every server process drops an upstream page
            # it keeps for it (index/mirror/), at once.
            record_change(conn, index_id, canonicalize_name(project))
        return _registered(publisher_id, kind, provider.summary(config), [project], pending=True)

    def list_publishers(self, index_id: int, project: str | None = None) -> list[dict[str, Any]]:
        """Publishers of an index (or of one project), with what they are linked to."""
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(db.publishers)
                .where(db.publishers.c.index_id == index_id)
                .order_by(db.publishers.c.id)
            ).all()
            # Every link of the index's publishers in one query, not one query per publisher.
            links = conn.execute(
                select(db.publisher_projects.c.publisher_id, db.projects.c.name)
                .join(db.projects, db.publisher_projects.c.project_id == db.projects.c.id)
                .where(db.projects.c.index_id == index_id)
                .order_by(db.projects.c.name)
            ).all()
            linked: dict[int, list[str]] = defaultdict(list)
            for publisher_id, name in links:
                linked[publisher_id].append(name)
            result = []
            for row in rows:
                names = [row.pending_project] if row.pending_project else linked[row.id]
                if project and canonicalize_name(project) not in {
                    canonicalize_name(n) for n in names
                }:
                    continue
                provider = PROVIDERS[row.kind]
                result.append(
                    {
                        "id": row.id,
                        "kind": row.kind,
                        "summary": provider.summary(row.config),
                        "config": row.config,
                        "pinned": row.pinned,
                        "projects": names,
                        "pending": bool(row.pending_project),
                        "expires": as_utc(row.expires).isoformat() if row.expires else None,
                    }
                )
        return result

    def remove_publisher(self, index_id: int, publisher_id: int, actor: Actor) -> None:
        """Remove a publisher; tokens minted from it stop working at once."""
        with db.writing(self.engine) as conn:
            row = None
            if abs(publisher_id) < 2**63:  # a larger id names no row, and overflows the driver
                row = conn.execute(
                    select(db.publishers).where(
                        db.publishers.c.id == publisher_id, db.publishers.c.index_id == index_id
                    )
                ).first()
            if row is None:
                raise ProjectError(
                    f"No publisher with id {publisher_id} on this index.", status=404
                )
            linked = conn.execute(
                select(db.projects)
                .join(db.publisher_projects, db.publisher_projects.c.project_id == db.projects.c.id)
                .where(db.publisher_projects.c.publisher_id == publisher_id)
            ).all()
            _check_token(
                conn,
                actor,
                index_id,
                [row.pending_project]
                if row.pending_project
                else [p.normalized_name for p in linked],
            )
            if row.pending_project and actor.user_id not in (None, row.created_by):
                raise ProjectError(
                    "Only whoever registered a pending publisher may remove it.", 403
                )
            for project in linked:
                _require_owner(conn, actor, project)
            conn.execute(
                delete(db.token_publishers).where(
                    db.token_publishers.c.publisher_id == publisher_id
                )
            )
            conn.execute(
                delete(db.publisher_projects).where(
                    db.publisher_projects.c.publisher_id == publisher_id
                )
            )
            conn.execute(delete(db.publishers).where(db.publishers.c.id == publisher_id))
            summary = PROVIDERS[row.kind].summary(row.config)
            for project in linked:
                record_event(
                    conn,
                    index_id,
                    project.normalized_name,
                    "remove_publisher",
                    actor.username,
                    {"publisher_id": publisher_id, "publisher": summary},
                    changes_project=False,
                )

    def audit_trail(
        self, index_id: int, project: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The journal of an index (or one project), newest first. Never holds a JWT or token."""
        query = select(db.journal).where(db.journal.c.index_id == index_id)
        if project:
            query = query.where(db.journal.c.project == canonicalize_name(project))
        query = query.order_by(db.journal.c.id.desc()).limit(limit)
        with db.reading(self.engine) as conn:
            return [
                {
                    "serial": row.id,
                    # With its zone on every backend (SQLite hands the UTC moment back without).
                    "time": as_utc(row.time).isoformat(),
                    "project": row.project,
                    "action": row.action,
                    "actor": row.actor,
                    "details": row.details,
                }
                for row in conn.execute(query)
            ]
