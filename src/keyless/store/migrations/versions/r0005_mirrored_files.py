"""The files an index with an upstream stored: `mirrored_files` (`keyless.index.mirror`).

Revision ID: r0005
Revises: r0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0005"
down_revision: str | None = "r0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "mirrored_files",
        sa.Column("index_id", sa.Integer, sa.ForeignKey("indexes.id"), primary_key=True),
        sa.Column("filename", sa.String(255), primary_key=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stored", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mirrored_files")
