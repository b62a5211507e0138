"""The database schema and engine (SQLAlchemy Core; SQLite in WAL mode by default).

Core rather than the ORM: the queries are few and explicit, and the hot paths stay cheap.
The same tables work on PostgreSQL (`postgresql+psycopg://` URLs): `connect` sets up each
backend so that `writing` means the same on both (one writer at a time, readers never wait).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    event,
    false,
    or_,
    select,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DataError, OperationalError

from keyless.config import ConfigError
from keyless.store.errors import StorageFull, UnstorableText, is_nul_in_text, is_storage_full

metadata = MetaData()

indexes = Table(
    "indexes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("profile", String(16), nullable=False),
    Column("max_file_size", BigInteger, nullable=False),
    Column("max_project_size", BigInteger, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    # Closed releases (config.IndexSettings): seconds after its first file a release takes
    # no new files (NULL: never), and whether one published through an upload session does.
    Column("close_releases_after", BigInteger, nullable=True),
    # A server default (as the migration's) as well: an older keyless writing to a database
    # this one created names no such column (bench scenario 8 runs one).
    Column("close_session_releases", Boolean, nullable=False, server_default=false()),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    # Only the sha256 of the secret is kept: tokens are random and long, so a slow hash adds
    # nothing but latency on every upload.
    Column("token_hash", String(64), nullable=False, unique=True),
    # "user": an API token a person created; "trusted": minted for a trusted publisher, whose
    # scope is whatever its publishers are linked to at the moment it is used.
    Column("kind", String(16), nullable=False, default="user"),
    Column("user_id", ForeignKey("users.id"), nullable=True),
    Column("index_id", ForeignKey("indexes.id"), nullable=True),  # NULL for trusted tokens
    Column("projects", JSON, nullable=True),  # normalized names, or NULL for the whole index
    Column("description", Text, nullable=False, default=""),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=True),
    Column("last_used", DateTime(timezone=True), nullable=True),
    Column("revoked", DateTime(timezone=True), nullable=True),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("index_id", ForeignKey("indexes.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("normalized_name", String(255), nullable=False),
    # The name's confusable form (dists.names.ultranormalize_name): "too similar to an existing
    # project" is then one indexed lookup, not a pass over every project of the index.
    Column("similar_key", String(255), nullable=True),
    Column("status", String(16), nullable=False, default="active"),
    Column("status_reason", Text, nullable=False, default=""),
    Column("serial", Integer, nullable=False, default=0),
    Column("total_size", BigInteger, nullable=False, default=0),
    Column("created", DateTime(timezone=True), nullable=False),
    UniqueConstraint("index_id", "normalized_name"),
)
Index("ix_projects_similar_key", projects.c.index_id, projects.c.similar_key)

roles = Table(
    "roles",
    metadata,
    Column("project_id", ForeignKey("projects.id"), primary_key=True),
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("role", String(16), nullable=False),  # "owner" | "maintainer"
)

releases = Table(
    "releases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", ForeignKey("projects.id"), nullable=False),
    Column("version", String(255), nullable=False),
    # PEP 440 canonical form: 1.0 and 1.0.0 are one release, as on PyPI.
    Column("canonical_version", String(255), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("yanked", Boolean, nullable=False, default=False),
    Column("yanked_reason", Text, nullable=False, default=""),
    Column("requires_python", Text, nullable=True),
    Column("summary", Text, nullable=True),
    Column("info", JSON, nullable=False),  # the metadata fields the JSON API serves
    # Files were published into it through an upload session (PEP 694): an index with
    # `close-session-releases` takes no more (releases.closed_release).
    Column("via_session", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("project_id", "canonical_version"),
)

files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("release_id", ForeignKey("releases.id"), nullable=False),
    Column("index_id", ForeignKey("indexes.id"), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("packagetype", String(16), nullable=False),
    Column("python_version", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("md5", String(32), nullable=False),
    Column("blake2_256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("metadata_sha256", String(64), nullable=True),
    Column("requires_python", Text, nullable=True),
    Column("upload_time", DateTime(timezone=True), nullable=False),
    Column("uploaded_by", Text, nullable=False),
    # Set when a trusted publisher uploaded it: what the audit trail and the APIs show.
    Column("publisher", JSON, nullable=True),
    # The unique index makes "two clients upload the same filename at once" a database race
    # with exactly one winner.
    UniqueConstraint("index_id", "filename"),
)

# Wheels' METADATA files (PEP 658 `.metadata`), by sha256. A few KB each, so they live here
# rather than as blobs: a blob costs an upload a second temp file, fsync, rename and directory
# fsync (~1 ms, a sixth of a small upload), a row costs nothing extra in the transaction the
# upload commits anyway. Shared by every file (and index) with the same METADATA.
core_metadata = Table(
    "core_metadata",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)


_CORE_METADATA_KNOWN = select(core_metadata.c.sha256).where(
    core_metadata.c.sha256 == bindparam("sha256")
)
_CORE_METADATA_INSERT = core_metadata.insert()


def store_core_metadata_of(conn: Connection, files: dict[str, bytes]) -> None:
    """`store_core_metadata` for many METADATA files (by sha256) in two statements, not up to
    two each (a 50-file release published at once)."""
    if not files:
        return
    shas = list(files)
    known: set[str] = set()
    for start in range(0, len(shas), 500):  # well under any database's bound parameters
        batch = shas[start : start + 500]
        known.update(
            conn.execute(
                select(core_metadata.c.sha256).where(core_metadata.c.sha256.in_(batch))
            ).scalars()
        )
    new = [{"sha256": sha, "data": data} for sha, data in files.items() if sha not in known]
    if new:
        conn.execute(_CORE_METADATA_INSERT, new)


def store_core_metadata(conn: Connection, sha256: str, data: bytes) -> None:
    """Keep a METADATA file unless the same bytes are already stored (content addressing)."""
    known = conn.execute(_CORE_METADATA_KNOWN, {"sha256": sha256}).first()
    if known is None:
        conn.execute(_CORE_METADATA_INSERT, {"sha256": sha256, "data": data})


Index("ix_files_release", files.c.release_id)
Index("ix_files_sha256", files.c.sha256)

# Every filename ever accepted, kept after a file is deleted: a filename's bytes never change.
filename_log = Table(
    "filename_log",
    metadata,
    Column("index_id", ForeignKey("indexes.id"), primary_key=True),
    Column("filename", String(255), primary_key=True),
)

# Trusted publishers: an identity in a CI (a GitHub repository + workflow, a GitLab project,
# a Google service account, any OIDC issuer's subject) allowed to publish to linked projects.
publishers = Table(
    "publishers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("index_id", ForeignKey("indexes.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    # What a token's claims are looked up by, so a token only ever meets the publishers of its
    # own repository/subject (never the configuration of unrelated projects).
    Column("lookup_key", Text, nullable=False),
    Column("config", JSON, nullable=False),
    Column("pinned", JSON, nullable=False),  # claims pinned on first use (e.g. owner id)
    Column("created", DateTime(timezone=True), nullable=False),
    Column("created_by", ForeignKey("users.id"), nullable=True),
    # A pending publisher names a project that does not exist yet; its first trusted publish
    # creates the project, owned by `created_by`.
    Column("pending_project", String(255), nullable=True),
    Column("expires", DateTime(timezone=True), nullable=True),
)
Index("ix_publishers_lookup", publishers.c.lookup_key)

publisher_projects = Table(
    "publisher_projects",
    metadata,
    Column("publisher_id", ForeignKey("publishers.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", ForeignKey("projects.id"), primary_key=True),
)

# Which publishers a trusted token was minted for. Removing a publisher removes these rows,
# which leaves the token with no scope: unlinking invalidates tokens already minted.
token_publishers = Table(
    "token_publishers",
    metadata,
    Column("token_id", ForeignKey("api_tokens.id"), primary_key=True),
    Column("publisher_id", ForeignKey("publishers.id", ondelete="CASCADE"), primary_key=True),
)

# OIDC tokens already exchanged (by jti, or by a hash when there is none), until they expire.
used_oidc_tokens = Table(
    "used_oidc_tokens",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("expires", DateTime(timezone=True), nullable=False),
)

# Issuers' signing keys, shared by every server process.
jwks_cache = Table(
    "jwks_cache",
    metadata,
    Column("issuer", Text, primary_key=True),
    Column("jwks", JSON, nullable=False),
    Column("fetched_at", Float, nullable=False),
)

# The journal: one row per change, its id is the serial (PyPI's `last_serial`).
journal = Table(
    "journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("index_id", ForeignKey("indexes.id"), nullable=False),
    Column("project", String(255), nullable=True),
    Column("action", String(64), nullable=False),
    Column("actor", Text, nullable=False),
    Column("details", JSON, nullable=False),
)
Index("ix_journal_project", journal.c.index_id, journal.c.project)


# PEP 694 upload sessions (`index/upload2/`). A session collects files for one release of one
# project; its files become `files` rows only when it is published, all in one transaction.
# The token is kept as it is, not hashed: the 409 of a second create answers with the live
# session's URL, which holds it. It is a capability only for the stage (every other request
# also needs credentials allowed to upload to the project).
upload_sessions = Table(
    "upload_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token", String(64), nullable=False, unique=True),
    Column("index_id", ForeignKey("indexes.id"), nullable=False),
    Column("name", String(255), nullable=False),  # as the create request wrote it
    Column("normalized_name", String(255), nullable=False),
    Column("version", String(255), nullable=False),
    Column("canonical_version", String(255), nullable=False),
    # open | processing | published | error | canceled (PEP 694 "Session status")
    Column("status", String(16), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),  # the last change of status
    Column("expires", DateTime(timezone=True), nullable=False),
    Column("created_by", Text, nullable=False),  # the identity's name, as the journal's actor
    Column("user_id", ForeignKey("users.id"), nullable=True),  # NULL: a trusted publisher
    Column("token_id", Integer, nullable=False),  # the API token that created it
    Column("notices", JSON, nullable=False),
)
# At most one live session per release: two creates at once are a race with one winner.
LIVE_SESSION = ("open", "processing", "error")
Index(
    "ux_upload_sessions_live",
    upload_sessions.c.index_id,
    upload_sessions.c.normalized_name,
    upload_sessions.c.canonical_version,
    unique=True,
    sqlite_where=upload_sessions.c.status.in_(LIVE_SESSION),
    postgresql_where=upload_sessions.c.status.in_(LIVE_SESSION),
)
Index("ix_upload_sessions_name", upload_sessions.c.index_id, upload_sessions.c.normalized_name)

# A session's files. The bytes are a blob as soon as they are received (`sha256` set); what
# `complete` read from the archive is kept so publishing reads no archive again. A deleted
# file's row goes: its blob is then referenced by nothing and garbage collection takes it.
upload_session_files = Table(
    "upload_session_files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", ForeignKey("upload_sessions.id"), nullable=False),
    Column("token", String(32), nullable=False, unique=True),
    Column("filename", String(255), nullable=False),
    Column("declared_size", BigInteger, nullable=False),
    Column("declared_hashes", JSON, nullable=False),  # {"sha256": hex, ...} as the client sent
    Column("status", String(16), nullable=False),  # pending | completed | error
    Column("created", DateTime(timezone=True), nullable=False),
    # The received bytes (NULL until they came).
    Column("sha256", String(64), nullable=True),
    Column("md5", String(32), nullable=True),
    Column("blake2_256", String(64), nullable=True),
    Column("size", BigInteger, nullable=True),
    # What `complete` found in the archive (NULL until then).
    Column("packagetype", String(16), nullable=True),
    Column("python_version", String(64), nullable=True),
    Column("requires_python", Text, nullable=True),
    Column("metadata_sha256", String(64), nullable=True),
    Column("metadata", LargeBinary, nullable=True),
    Column("summary", Text, nullable=True),
    Column("release_info", JSON, nullable=True),
    Column("notices", JSON, nullable=False),
    UniqueConstraint("session_id", "filename"),
)
Index("ix_upload_session_files_sha256", upload_session_files.c.sha256)
Index("ix_upload_session_files_filename", upload_session_files.c.filename)


# What changed, for the caches each server process keeps (simple pages, the list of indexes):
# a writing transaction that changes what is served bumps the one `change_serial` row and adds
# a `changes` row with the new serial, in the same transaction (`store.changes`). Every process
# compares the serial with the last it saw on each request and drops exactly what changed.
# The files and PEP 658 metadata files an index with an upstream fetched and stored
# (index/mirror/): they keep their blobs from garbage collection, and let a stored file be
# served after a restart while the upstream is down. `filename` ends in `.metadata` for a
# metadata file; one row per name on an index, as an upstream names each file once.
mirrored_files = Table(
    "mirrored_files",
    metadata,
    Column("index_id", ForeignKey("indexes.id"), primary_key=True),
    Column("filename", String(255), primary_key=True),
    Column("project", String(255), nullable=False),  # normalized
    Column("sha256", String(64), nullable=False),
    Column("stored", DateTime(timezone=True), nullable=False),
    # When a client last downloaded it (`keyless mirror prune`); NULL: not since `stored`.
    # A metadata file's row keeps NULL: it goes with its distribution's.
    Column("last_download", DateTime(timezone=True), nullable=True),
    # What the upstream's page said of the file when it was stored (an offline index's pages
    # list it): its Requires-Python, and its yank (NULL: not yanked; else the reason, maybe "").
    Column("requires_python", Text, nullable=True),
    Column("yanked", Text, nullable=True),
)


def referenced_blobs(conn: Connection, among: Iterable[str] | None = None) -> set[str]:
    """The blobs a row refers to (a file, a mirrored file, a live upload session's file), of
    `among` or all: what garbage collection and fsck must keep."""
    found: set[str] = set()
    for column in (files.c.sha256, mirrored_files.c.sha256, upload_session_files.c.sha256):
        query = select(column).distinct()
        if column is upload_session_files.c.sha256:
            query = _of_live_sessions(query)
        if among is not None:
            query = query.where(column.in_(list(among)))
        found.update(conn.execute(query).scalars())
    return found


def _of_live_sessions(query: Select[Any]) -> Select[Any]:
    """`query` on session files narrowed to live sessions' (a PEP 694 session's file is a blob
    on arrival, and no file row refers to it before the publish): processing, or open or in
    error and not expired."""
    sessions = upload_sessions
    return query.join(sessions, sessions.c.id == upload_session_files.c.session_id).where(
        upload_session_files.c.sha256.is_not(None),
        or_(
            sessions.c.status == "processing",
            and_(
                sessions.c.status.in_(("open", "error")),
                sessions.c.expires > datetime.now(UTC),
            ),
        ),
    )


# The single row is also what orders the serials: its row lock is held to the commit, so on a
# database whose writers run side by side (PostgreSQL) serials are still given in commit order.
change_serial = Table(
    "change_serial",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("serial", BigInteger, nullable=False),
)
changes = Table(
    "changes",
    metadata,
    Column("serial", BigInteger, primary_key=True, autoincrement=False),
    Column("index_id", Integer, nullable=False),
    # The normalized project whose pages changed; NULL for the index itself (created, or its
    # settings changed), which drops all its cached pages and reloads the list of indexes.
    Column("project", String(255), nullable=True),
)
# Its one row, from the start: a bump is then always an UPDATE, which two first changes at
# once cannot both turn into an INSERT of the same key. (Revision r0002 adds it to older ones.)
_FIRST_SERIAL = DDL("INSERT INTO change_serial (id, serial) VALUES (1, 0)")  # type: ignore[no-untyped-call]
event.listen(change_serial, "after_create", _FIRST_SERIAL)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. FULL: each commit fsyncs the log before it returns,
    # so an upload answered 200 survives a power cut (NORMAL survives only a crash of the
    # process: the last commits could vanish with their 200s sent). The blob is fsynced
    # before its row is committed.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# The transactions this process began, [reading, writing]: /_/metrics shows them, what
# requests cost the database (each is a BEGIN and a COMMIT, a writing one an fsync too).
TRANSACTIONS = [0, 0]


def _sqlite_begin(conn: Any) -> None:
    # A writing transaction takes the write lock at BEGIN, so read-then-write transactions
    # cannot fail half-way with "database is locked" when two uploads race; readers stay
    # concurrent (WAL).
    writing = bool(conn.get_execution_options().get("writing"))
    TRANSACTIONS[writing] += 1
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _postgresql_begin(conn: Any) -> None:
    # SQLite's BEGIN IMMEDIATE, on PostgreSQL: a writing transaction first takes one advisory
    # lock, held to its commit or rollback, so writers run one at a time across every process
    # and machine while readers never wait (MVCC). Why one lock rather than row locks: the use
    # cases read, decide, then write ("is this filename taken, is the project over its quota,
    # was this jti used, how many failed sign-ins") and were written for SQLite's single
    # writer; row locks would lock only rows that exist (not the row about to be inserted) and
    # need each use case to name them, SERIALIZABLE would make each retry on a conflict. With
    # the lock taken first, each statement of the default READ COMMITTED isolation sees every
    # write committed before, exactly as under SQLite. Writes are rare next to reads in an
    # index (uploads, not downloads), so serialising them costs little.
    writing = bool(conn.get_execution_options().get("writing"))
    TRANSACTIONS[writing] += 1
    if writing:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")


def inserted_id(conn: Connection, statement: Any, params: Any = None) -> int:
    """Run a one-row INSERT; returns the new row's primary key."""
    key = conn.execute(statement, params).inserted_primary_key
    if key is None:  # pragma: no cover - every table here has an integer primary key
        raise RuntimeError("the database returned no primary key for an insert")
    return int(key[0])


_AFTER_COMMIT = "keyless_after_commit"


def after_commit(conn: Connection, hook: Callable[[], None]) -> None:
    """Run `hook` once the `writing` transaction of `conn` has committed (never if it rolls
    back), before `writing` returns to its caller."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(hook)


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: committed on success, rolled back on any exception.

    Raises StorageFull when the database cannot grow (the disk is full); nothing is committed.
    """
    try:
        with engine.connect() as conn:
            conn.execution_options(writing=True)
            try:
                with conn.begin():
                    yield conn
            finally:  # `info` belongs to the pooled connection: clear it, committed or not
                hooks: list[Callable[[], None]] = conn.info.pop(_AFTER_COMMIT, [])
        for hook in hooks:  # reached only when the commit succeeded
            hook()
    except OperationalError as exc:
        if is_storage_full(exc):
            raise StorageFull(exc) from exc
        raise
    except DataError as exc:
        if is_nul_in_text(exc):
            raise UnstorableText() from exc
        raise


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only snapshot (one transaction, so related reads agree with each other)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # PostgreSQL's default (READ COMMITTED) takes a new snapshot for each statement;
            # REPEATABLE READ keeps the first one to the end, as a SQLite read transaction
            # does. Read-only, it never fails with a serialisation error.
            conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            with conn.begin():
                yield conn
        except DataError as exc:
            if is_nul_in_text(exc):
                raise UnstorableText() from exc
            raise


def open_database(url_or_path: str | Path, *, upgrade: bool = False) -> Engine:
    """Open the database, a plain path meaning SQLite, with its schema at this code's revision.

    A new database is created at it; an older one is upgraded when `upgrade`, otherwise
    `migrations.SchemaOutOfDate` says what to run (see `keyless.store.migrations`). A database
    that cannot be opened at all raises ConfigError, whose one line says what to fix.
    """
    engine = connect(url_or_path)
    check_reachable(engine)
    # Here, not at module level: Alembic is loaded only by what opens a database.
    from keyless.store.migrations import ensure_schema

    ensure_schema(engine, upgrade=upgrade)
    return engine


# PostgreSQL's pool, per server process. Requests run on a thread pool; a connection is held
# for one transaction, so a few suffice, and a burst may open more for a while. Ten processes
# then stay under PostgreSQL's default of 100 connections.
PG_POOL_SIZE = 5
PG_MAX_OVERFLOW = 5
# Seconds to wait for the server when connecting: an unreachable one is reported, not waited on.
PG_CONNECT_TIMEOUT = 10
# Any number, the same in every process: the lock every writing transaction on PostgreSQL
# takes (`_postgresql_begin`). Not the schema lock of `migrations`, which is taken inside it.
_PG_WRITE_LOCK = 0x6B6C7772


def connect(url_or_path: str | Path) -> Engine:
    """The engine alone, set up for its backend; the schema is left as it is."""
    url = database_url(url_or_path)
    if url.get_backend_name() == "sqlite":
        database = url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            keep_private(Path(database))
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling is turned off so BEGIN IMMEDIATE is ours.
        event.listen(
            engine,
            "connect",
            lambda dbapi_conn, _rec: setattr(dbapi_conn, "isolation_level", None),
        )
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        url,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_MAX_OVERFLOW,
        # A connection the server closed (a restart, a failover, an idle timeout of a proxy)
        # is replaced before a request uses it, instead of failing that request.
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT,
            "application_name": "keyless",
            # Timestamps are written and read in UTC whatever the server's own time zone, as
            # SQLite keeps them.
            "options": "-c timezone=UTC",
        },
    )
    event.listen(engine, "begin", _postgresql_begin)
    return engine


def database_url(url_or_path: str | Path) -> URL:
    """The SQLAlchemy URL of a setting: a path is a SQLite file; `postgresql://` (and Heroku's
    `postgres://`) mean the psycopg driver, the one keyless installs. ConfigError otherwise."""
    text = str(url_or_path)
    if "://" not in text:
        return make_url(f"sqlite:///{Path(text).resolve()}")
    try:
        url = make_url(text)
    except ArgumentError:
        url = None
    if url is not None and url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url is None or url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        shown = url.render_as_string(hide_password=True) if url else text.split("://")[0]
        raise ConfigError(
            f"database URL {shown!r} is not one keyless can use: write "
            "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE, or a SQLite file's path."
        )
    return url


def check_reachable(engine: Engine) -> None:
    """Connect once; ConfigError with what to fix when the database cannot be used at all."""
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        raise ConfigError(_connect_failure(engine.url, exc)) from None


def _connect_failure(url: URL, exc: OperationalError) -> str:
    """One line for a failed first connection: which setting to fix, never the password."""
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        return f"cannot open the SQLite database {url.database}: {exc.orig}"
    # psycopg's message: the server's own error, on the last line of several.
    reason = str(exc.orig).strip().splitlines()[-1] if exc.orig else str(exc)
    reason = reason.removeprefix("FATAL:").strip()
    if url.password:
        reason = reason.replace(str(url.password), "***")
    where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
    if "password authentication failed" in reason or "no password supplied" in reason:
        return (
            f"database URL {shown}: {where} refused the password of user {url.username!r}; "
            "fix the password in the URL."
        )
    if f'database "{url.database}" does not exist' in reason:
        return (
            f"database URL {shown}: {where} has no database {url.database!r}; create it "
            f"(createdb {url.database}) or fix its name in the URL."
        )
    if "role" in reason and "does not exist" in reason:
        return f"database URL {shown}: {where} has no user {url.username!r}; fix the URL."
    return (
        f"database URL {shown}: cannot reach {where} ({reason}); start it, or fix the host and "
        "port in the URL."
    )


_SQLITE_FILES = ("", "-wal", "-shm", "-journal")


def keep_private(database: Path) -> None:
    """Make the SQLite database readable by this user only, and create it so.

    It holds password and API-token hashes and live sessions' CSRF tokens. SQLite creates its
    -wal and -shm files with the database file's mode, so creating that file 0600 covers
    them; files of an installation made before are tightened.
    """
    if not database.exists() and database.parent.is_dir():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in _SQLITE_FILES:
        path = database.with_name(database.name + suffix)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            path.chmod(mode & 0o700)


# --- web UI ---------------------------------------------------------------------------------

# Web UI sign-in sessions. The cookie holds a random id; only its sha256 is stored, so a copy
# of the database (a backup) cannot be replayed as a signed-in browser. The CSRF token is per
# session: it is useless without the session cookie.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
)
Index("ix_web_sessions_user", web_sessions.c.user_id)

# Recent failed web sign-ins, to slow password guessing; rows older than the window are dropped.
web_login_failures = Table(
    "web_login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
)
Index("ix_web_login_failures_time", web_login_failures.c.time)
