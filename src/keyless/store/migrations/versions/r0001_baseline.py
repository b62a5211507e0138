"""The baseline: the schema keyless had when migrations began (`baseline.schema`).

Revision ID: r0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable

from keyless.store.migrations.baseline import schema

revision = "r0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # DDL statements rather than op.create_table: the frozen tables are the one copy of the
    # baseline, which a database from before migrations is also brought to.
    for table in schema.sorted_tables:
        op.execute(CreateTable(table))
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            op.execute(CreateIndex(index))


def downgrade() -> None:
    for table in reversed(schema.sorted_tables):
        op.execute(DropTable(table))
