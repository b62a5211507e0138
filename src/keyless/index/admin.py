"""The admin commands' use cases (`keyless user|token|index|role|publisher|audit|gc`).

A person names things — a user, an index, a project, a token's id — so these take names and
look the rows up themselves; the CLI only parses, calls and prints, and never opens the
database (tests/test_layers.py keeps `cli/` off `store/`). Refusals are the use cases' own
errors (`AccountError`, `ProjectError`, `PublisherConfigError`, `ConfigError`), whose messages
say what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from keyless.config import ConfigError, Settings
from keyless.store import archive, db, migrations
from keyless.store.backends import open_blob_store
from keyless.store.blobs import BlobStore
from keyless.store.static_tree import open_static_target

from . import accounts, fsck, imports, indexes, maintenance, projects, publishers, static
from .catalog import Catalog
from .pages import SimplePages, url_prefix_of

if TYPE_CHECKING:
    from .mirror.prune import PruneReport

# The revision a database made before keyless had migrations is brought to (`keyless db`).
BASELINE = migrations.BASELINE
SchemaState = migrations.SchemaState
# `keyless export|import`'s refusal (a damaged archive, a target with data) and its result.
ArchiveError = archive.ArchiveError
ArchiveSummary = archive.Summary
ImportRefused = imports.ImportRefused
ImportReport = imports.ImportReport


def upgrade_schema(settings: Settings) -> tuple[SchemaState, SchemaState]:
    """Create or upgrade the schema of `settings`' database: (before, after)."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # private when new
    return migrations.upgrade(db.connect(settings.database))


def schema_of(settings: Settings) -> SchemaState:
    """Where the schema of `settings`' database stands; changes nothing."""
    return migrations.current(db.connect(settings.database))


# Who the journal names for a change made on the server's own data (no signed-in user).
ADMIN = "admin"


@dataclass
class Admin:
    """The server's data as an administrator on its machine sees it: opened by `open`."""

    settings: Settings
    engine: Engine
    _indexes: indexes.IndexAdmin = field(init=False, repr=False)
    _accounts: accounts.Accounts = field(init=False, repr=False)
    _projects: projects.ProjectAdmin = field(init=False, repr=False)
    _publishers: publishers.Publishers = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._indexes = indexes.IndexAdmin(self.engine)
        self._accounts = accounts.Accounts(self.engine)
        self._projects = projects.ProjectAdmin(self.engine, projects.no_cached_pages)
        self._publishers = publishers.Publishers(self.engine, self.settings.trusted_publishing)

    @classmethod
    def open(cls, settings: Settings) -> Admin:
        """Open (creating when new) the database of `settings`, with its configured indexes."""
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # private when new
        engine = db.open_database(settings.database, upgrade=settings.database_auto_upgrade)
        indexes.IndexAdmin(engine).ensure_indexes(settings.indexes)
        return cls(settings, engine)

    @classmethod
    def open_existing(cls, settings: Settings) -> Admin:
        """`open` for the commands that read a server's data (fsck, export, static rebuild):
        on a SQLite path where there is no database, ConfigError rather than a new, empty
        one (which would report a clean store, an empty tree or an empty archive)."""
        if settings.database_url is None and not Path(settings.database).is_file():
            raise ConfigError(
                f"no keyless database at {settings.database}: point --data at the server's "
                "data folder (or set database-url)."
            )
        return cls.open(settings)

    def _index_id(self, name: str) -> int:
        with db.reading(self.engine) as conn:
            return accounts.index_id(conn, name)

    def _user_id(self, name: str) -> int:
        with db.reading(self.engine) as conn:
            return accounts.user_id(conn, name)

    # ------------------------------------------------------------ users and tokens

    def add_user(self, username: str, password: str, *, is_admin: bool = False) -> int:
        return self._accounts.create_user(username, password, is_admin=is_admin)

    def set_password(self, username: str, password: str) -> None:
        self._accounts.set_password(username, password)

    def create_token(
        self,
        username: str,
        index: str,
        *,
        projects: list[str] | None = None,
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> accounts.NewToken:
        return self._accounts.create_token(
            username,
            index,
            projects=projects,
            expires_in=expires_in,
            description=description,
        )

    def list_tokens(self, username: str | None = None) -> list[dict[str, object]]:
        return self._accounts.list_tokens(username)

    def revoke_token(self, token_id: int) -> None:
        self._accounts.revoke_token(token_id)

    # ------------------------------------------------------------ indexes and projects

    def create_index(self, name: str, profile: str) -> indexes.IndexInfo:
        return self._indexes.create_index(name, profile)

    def list_indexes(self) -> list[indexes.IndexInfo]:
        return list(self._indexes.load_indexes().values())

    def add_role(self, index: str, project: str, username: str, role: str) -> None:
        self._projects.add_role(self._index_id(index), project, username, role)

    def collect_garbage(self, min_age: float) -> int:
        """Remove blobs no file refers to and stale temp files; the number removed."""
        return maintenance.GarbageCollector(self.engine, self._blobs()).collect_garbage(min_age)

    def prune_mirror(self, days: float, index: str | None = None) -> PruneReport:
        """Forget upstream files not downloaded for `days` days (`keyless mirror prune`)."""
        from .mirror.prune import prune  # the mirror's package imports httpx: only here

        if index is not None:
            self._index_id(index)  # AccountError for an unknown one
        return prune(self.engine, self._blobs(), days, index)

    def _blobs(self) -> BlobStore:
        """The blob store the settings name (store/backends.py)."""
        return open_blob_store(self.settings.storage, self.settings.blob_dir)

    def fsck(self, *, repair: bool) -> fsck.FsckReport:
        """The database against the blob store (`keyless fsck`); see index/fsck.py."""
        return fsck.Fsck(self.engine, self._blobs()).check(repair=repair)

    def rebuild_static(self) -> static.RebuildReport:
        """Write the static read path whole where `[static]` says, and remove from it what
        should not be there (`keyless static rebuild`); ConfigError when no place is set."""
        target = open_static_target(self.settings, self._blobs())
        if target is None:
            raise ConfigError(
                "no static folder or bucket is set: give --static-folder, KEYLESS_STATIC_FOLDER, "
                "KEYLESS_STATIC_BUCKET, or [static] folder or bucket in the config file."
            )
        catalog = Catalog(self.engine)
        pages = SimplePages(catalog, url_prefix_of(self.settings.public_url))
        tree = static.StaticTree(catalog, pages, target)
        return tree.rebuild(self._indexes.load_indexes().values())

    # ------------------------------------------------------------ export and import

    def export_archive(self, path: Path) -> ArchiveSummary:
        """The whole server into one archive at `path` (`keyless export`; store/archive.py)."""
        schema = migrations.current(self.engine).current
        return archive.export_archive(self.engine, self._blobs(), path, tuple(schema))

    def import_archive(self, path: Path) -> ArchiveSummary:
        """An archive of `export_archive` into this server, which must hold no data."""
        schema = migrations.current(self.engine).current
        return archive.import_archive(self.engine, self._blobs(), path, tuple(schema))

    def import_pypiserver(
        self, folder: Path, index: str | None, owner: str | None = None
    ) -> ImportReport:
        """A pypiserver packages folder into `index` (index/imports.py)."""
        moving_in = imports.Imports(self.engine, self._blobs())
        return moving_in.import_pypiserver(moving_in.index_named(index), folder, owner)

    def import_devpi_export(self, folder: Path) -> ImportReport:
        """The users, indexes and packages of a `devpi-export` dump (index/imports.py)."""
        return imports.Imports(self.engine, self._blobs()).import_devpi_export(folder)

    # ------------------------------------------------------------ trusted publishers

    def add_publisher(
        self, index: str, projects: Sequence[str], kind: str, config: Mapping[str, str]
    ) -> dict[str, Any]:
        """A publisher for existing projects of `index`, added by the administrator."""
        index_id = self._index_id(index)
        return self._publishers.add_publisher(
            index_id,
            projects,
            kind,
            config,
            publishers.Actor(username=ADMIN, user_id=None),
        )

    def add_pending_publisher(
        self,
        index: str,
        project: str,
        kind: str,
        config: Mapping[str, str],
        owner: str | None = None,
    ) -> dict[str, Any]:
        """A publisher for a project its first upload creates, owned then by `owner`."""
        index_id = self._index_id(index)
        owner_id = self._user_id(owner) if owner else None
        return self._publishers.add_pending_publisher(
            index_id,
            project,
            kind,
            config,
            publishers.Actor(username=owner or ADMIN, user_id=owner_id),
        )

    def list_publishers(self, index: str, project: str | None = None) -> list[dict[str, Any]]:
        return self._publishers.list_publishers(self._index_id(index), project)

    def remove_publisher(self, index: str, publisher_id: int) -> None:
        self._publishers.remove_publisher(
            self._index_id(index),
            publisher_id,
            publishers.Actor(username=ADMIN, user_id=None),
        )

    def audit_trail(
        self, index: str, project: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        return self._publishers.audit_trail(self._index_id(index), project, limit)
