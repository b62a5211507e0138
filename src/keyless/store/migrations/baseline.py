"""The schema as it was at the first migration (revision r0001), frozen.

Databases made before keyless had migrations were created by `create_all` of these tables
(plus `projects.similar_key`, added to older ones at start). This copy never changes: the
baseline revision creates it, and a database from before migrations is checked against it and
stamped. The live schema is `keyless.store.db`; a later change is a new revision, never an
edit here. Comments on what the columns mean are in `keyless.store.db`.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

schema = MetaData()

indexes = Table(
    "indexes",
    schema,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("profile", String(16), nullable=False),
    Column("max_file_size", BigInteger, nullable=False),
    Column("max_project_size", BigInteger, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

users = Table(
    "users",
    schema,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    schema,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False, default="user"),
    Column("user_id", ForeignKey("users.id"), nullable=True),
    Column("index_id", ForeignKey("indexes.id"), nullable=True),
    Column("projects", JSON, nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=True),
    Column("last_used", DateTime(timezone=True), nullable=True),
    Column("revoked", DateTime(timezone=True), nullable=True),
)

projects = Table(
    "projects",
    schema,
    Column("id", Integer, primary_key=True),
    Column("index_id", ForeignKey("indexes.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("normalized_name", String(255), nullable=False),
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
    schema,
    Column("project_id", ForeignKey("projects.id"), primary_key=True),
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("role", String(16), nullable=False),
)

releases = Table(
    "releases",
    schema,
    Column("id", Integer, primary_key=True),
    Column("project_id", ForeignKey("projects.id"), nullable=False),
    Column("version", String(255), nullable=False),
    Column("canonical_version", String(255), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("yanked", Boolean, nullable=False, default=False),
    Column("yanked_reason", Text, nullable=False, default=""),
    Column("requires_python", Text, nullable=True),
    Column("summary", Text, nullable=True),
    Column("info", JSON, nullable=False),
    UniqueConstraint("project_id", "canonical_version"),
)

files = Table(
    "files",
    schema,
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
    Column("publisher", JSON, nullable=True),
    UniqueConstraint("index_id", "filename"),
)

core_metadata = Table(
    "core_metadata",
    schema,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

Index("ix_files_release", files.c.release_id)
Index("ix_files_sha256", files.c.sha256)

filename_log = Table(
    "filename_log",
    schema,
    Column("index_id", ForeignKey("indexes.id"), primary_key=True),
    Column("filename", String(255), primary_key=True),
)

publishers = Table(
    "publishers",
    schema,
    Column("id", Integer, primary_key=True),
    Column("index_id", ForeignKey("indexes.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("lookup_key", Text, nullable=False),
    Column("config", JSON, nullable=False),
    Column("pinned", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("created_by", ForeignKey("users.id"), nullable=True),
    Column("pending_project", String(255), nullable=True),
    Column("expires", DateTime(timezone=True), nullable=True),
)
Index("ix_publishers_lookup", publishers.c.lookup_key)

publisher_projects = Table(
    "publisher_projects",
    schema,
    Column("publisher_id", ForeignKey("publishers.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", ForeignKey("projects.id"), primary_key=True),
)

token_publishers = Table(
    "token_publishers",
    schema,
    Column("token_id", ForeignKey("api_tokens.id"), primary_key=True),
    Column("publisher_id", ForeignKey("publishers.id", ondelete="CASCADE"), primary_key=True),
)

used_oidc_tokens = Table(
    "used_oidc_tokens",
    schema,
    Column("key", String(255), primary_key=True),
    Column("expires", DateTime(timezone=True), nullable=False),
)

jwks_cache = Table(
    "jwks_cache",
    schema,
    Column("issuer", Text, primary_key=True),
    Column("jwks", JSON, nullable=False),
    Column("fetched_at", Float, nullable=False),
)

journal = Table(
    "journal",
    schema,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("index_id", ForeignKey("indexes.id"), nullable=False),
    Column("project", String(255), nullable=True),
    Column("action", String(64), nullable=False),
    Column("actor", Text, nullable=False),
    Column("details", JSON, nullable=False),
)
Index("ix_journal_project", journal.c.index_id, journal.c.project)

web_sessions = Table(
    "web_sessions",
    schema,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
)
Index("ix_web_sessions_user", web_sessions.c.user_id)

web_login_failures = Table(
    "web_login_failures",
    schema,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
)
Index("ix_web_login_failures_time", web_login_failures.c.time)
