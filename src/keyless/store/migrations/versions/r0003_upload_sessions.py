"""PEP 694 upload sessions: `upload_sessions` and `upload_session_files` (`index/upload2/`).

Revision ID: r0003
Revises: r0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0003"
down_revision: str | None = "r0002"
branch_labels: str | None = None
depends_on: str | None = None

_LIVE = sa.text("status IN ('open', 'processing', 'error')")


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token", sa.String(64), nullable=False, unique=True),
        sa.Column("index_id", sa.Integer, sa.ForeignKey("indexes.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("normalized_name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("canonical_version", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("token_id", sa.Integer, nullable=False),
        sa.Column("notices", sa.JSON, nullable=False),
    )
    op.create_index(
        "ux_upload_sessions_live",
        "upload_sessions",
        ["index_id", "normalized_name", "canonical_version"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    op.create_index("ix_upload_sessions_name", "upload_sessions", ["index_id", "normalized_name"])
    op.create_table(
        "upload_session_files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("upload_sessions.id"), nullable=False),
        sa.Column("token", sa.String(32), nullable=False, unique=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("declared_size", sa.BigInteger, nullable=False),
        sa.Column("declared_hashes", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("md5", sa.String(32), nullable=True),
        sa.Column("blake2_256", sa.String(64), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("packagetype", sa.String(16), nullable=True),
        sa.Column("python_version", sa.String(64), nullable=True),
        sa.Column("requires_python", sa.Text, nullable=True),
        sa.Column("metadata_sha256", sa.String(64), nullable=True),
        sa.Column("metadata", sa.LargeBinary, nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("release_info", sa.JSON, nullable=True),
        sa.Column("notices", sa.JSON, nullable=False),
        sa.UniqueConstraint("session_id", "filename"),
    )
    op.create_index("ix_upload_session_files_sha256", "upload_session_files", ["sha256"])
    op.create_index("ix_upload_session_files_filename", "upload_session_files", ["filename"])


def downgrade() -> None:
    op.drop_table("upload_session_files")
    op.drop_table("upload_sessions")
