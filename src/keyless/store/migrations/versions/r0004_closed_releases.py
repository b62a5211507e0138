"""Closed releases: each index's `close-releases-after` and `close-session-releases`, and
whether a release was published through an upload session (`releases.via_session`).

Revision ID: r0004
Revises: r0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision: str | None = "r0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("indexes", sa.Column("close_releases_after", sa.BigInteger, nullable=True))
    # Existing rows get the defaults: releases never close, as before this revision.
    op.add_column(
        "indexes",
        sa.Column("close_session_releases", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "releases",
        sa.Column("via_session", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("releases", "via_session")
    op.drop_column("indexes", "close_session_releases")
    op.drop_column("indexes", "close_releases_after")
