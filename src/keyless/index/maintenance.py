"""Housekeeping: remove blobs and temp files that no database row refers to.

They come from uploads interrupted between the blob rename and the database commit, or from a
crash mid-upload. Run at server start and by `keyless gc`.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from keyless.store import db
from keyless.store.blobs import BlobStore


def referenced_blobs(engine: Engine) -> set[str]:
    with db.reading(engine) as conn:
        return set(conn.execute(select(db.files.c.sha256)).scalars())


def collect_garbage(engine: Engine, blobs: BlobStore, min_age_seconds: float = 3600) -> int:
    """Delete unreferenced blobs and stale temp files older than `min_age_seconds`."""
    return blobs.remove_orphans(referenced_blobs(engine), min_age_seconds=min_age_seconds)
