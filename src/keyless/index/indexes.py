"""The named indexes on one server (e.g. `test` and `prod`) and their policies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from keyless.config import IndexSettings, index_settings, validate_index_name
from keyless.dists.policy import Policy
from keyless.store import db
from keyless.store.changes import record_change

from .accounts import AccountError, now


@dataclass(frozen=True)
class IndexInfo:
    id: int
    name: str
    profile: str
    max_file_size: int
    max_project_size: int
    # Closed releases (config.IndexSettings): seconds from a release's first file after which
    # it takes no new files (None: never), and whether a release published through an upload
    # session takes none at all. The rule is `releases.closed_release`.
    close_releases_after: int | None = None
    close_session_releases: bool = False

    @property
    def policy(self) -> Policy:
        return Policy.for_profile(self.profile)

    @property
    def release_closing(self) -> str:
        """When its releases stop taking files, as the admin page says it."""
        after = self.close_releases_after
        if after is None:
            return "when published through a session" if self.close_session_releases else "never"
        text = f"{duration_text(after)} after their first file"
        return (
            f"{text}, or when published through a session" if self.close_session_releases else text
        )


def duration_text(seconds: int) -> str:
    """A closing delay as people say it: "14 days", "1 day", "36 hours", "90 seconds"."""
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= unit and seconds % unit == 0:
            count = seconds // unit
            return f"{count} {name}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


@dataclass
class IndexAdmin:
    """The indexes of one database: made from the settings, added by an administrator, listed."""

    engine: Engine

    def ensure_indexes(
        self, wanted: Iterable[IndexSettings], *, update_existing: bool = False
    ) -> None:
        """Create the indexes named in the settings; with `update_existing`, also bring existing
        ones to their settings.

        The server passes `update_existing`: the settings file is the source of truth for the
        indexes it names, so a changed profile or limit takes effect at the next start. Admin
        commands, which may run without the server's config file, only create what is missing.
        """
        with db.writing(self.engine) as conn:
            existing = {row.name: row for row in conn.execute(select(db.indexes))}
            for index in wanted:
                values = {
                    "profile": index.profile,
                    "max_file_size": index.max_file_size,
                    "max_project_size": index.max_project_size,
                    "close_releases_after": index.close_releases_after,
                    "close_session_releases": index.close_session_releases,
                }
                row = existing.get(index.name)
                if row is not None:
                    if not update_existing or all(getattr(row, k) == v for k, v in values.items()):
                        continue
                    conn.execute(
                        update(db.indexes).where(db.indexes.c.id == row.id).values(**values)
                    )
                    record_change(conn, row.id, None)  # other server processes reload the list
                else:
                    statement = db.indexes.insert().values(name=index.name, created=now(), **values)
                    record_change(conn, db.inserted_id(conn, statement), None)

    def create_index(self, name: str, profile: str = "pypi") -> IndexInfo:
        """Add an index; raises ConfigError for a bad name/profile, AccountError if it exists."""
        validate_index_name(name)
        settings = index_settings(name, {"profile": profile})
        with db.reading(self.engine) as conn:
            if conn.execute(select(db.indexes.c.id).where(db.indexes.c.name == name)).first():
                raise AccountError(f"index {name!r} already exists.")
        self.ensure_indexes([settings])
        return self.load_indexes()[name]

    def load_indexes(self) -> dict[str, IndexInfo]:
        with db.reading(self.engine) as conn:
            rows = conn.execute(select(db.indexes).order_by(db.indexes.c.name)).all()
        return {
            row.name: IndexInfo(
                id=row.id,
                name=row.name,
                profile=row.profile,
                max_file_size=row.max_file_size,
                max_project_size=row.max_project_size,
                close_releases_after=row.close_releases_after,
                close_session_releases=bool(row.close_session_releases),
            )
            for row in rows
        }
