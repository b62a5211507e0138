"""The change serial: `change_serial` (one row) and `changes`, so that every server process
learns what another one changed (`keyless.store.changes`).

Revision ID: r0002
Revises: r0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision: str | None = "r0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    serial = op.create_table(
        "change_serial",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("serial", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(serial, [{"id": 1, "serial": 0}])
    op.create_table(
        "changes",
        sa.Column("serial", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("index_id", sa.Integer, nullable=False),
        sa.Column("project", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("changes")
    op.drop_table("change_serial")
