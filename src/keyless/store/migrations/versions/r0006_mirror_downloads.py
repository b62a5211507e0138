"""When a file an index keeps from its upstream was last downloaded
(`mirrored_files.last_download`, for `keyless mirror prune`), and what the upstream's page said
of it (`requires_python`, `yanked`: an offline index's pages list them).

Revision ID: r0006
Revises: r0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0006"
down_revision: str | None = "r0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Existing rows: NULL, read as their `stored` time (a file is downloaded when stored).
    op.add_column(
        "mirrored_files", sa.Column("last_download", sa.DateTime(timezone=True), nullable=True)
    )
    # Existing rows: NULL, unknown (listed as not yanked, for any Python).
    op.add_column("mirrored_files", sa.Column("requires_python", sa.Text, nullable=True))
    op.add_column("mirrored_files", sa.Column("yanked", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("mirrored_files", "yanked")
    op.drop_column("mirrored_files", "requires_python")
    op.drop_column("mirrored_files", "last_download")
