"""Housekeeping: remove blobs no database row refers to, and temp files of dead uploads.

A blob is referenced (`store.db.referenced_blobs`, the one answer gc and fsck share) by a file
row, by a file an index keeps from its upstream (`index/mirror/`), or by a file of a live PEP
694 upload session (open or in error and not expired, or processing): its bytes arrived before
it is published. The files of canceled, expired and published sessions refer to nothing (a
published one's blobs are its file rows').

Orphaned blobs come from uploads that placed their blob and then failed to commit (a crash, a
full database, a lost filename race); temp files from uploads cut off mid-stream or a crash.
Run at server start, every `gc-interval` seconds inside the server, and by `keyless gc`.

Deciding that a blob is unreferenced and deleting it happen inside one writing transaction.
An upload makes sure its blob is there (putting it back from its temp file if not) inside the
writing transaction that commits the row referring to it, and the database runs one writing
transaction at a time (SQLite's write lock, BEGIN IMMEDIATE): collection either runs before
that check, or after the row is committed and sees it. Unreferenced blobs therefore need no
grace period; only temp files do, since one may still be streaming.

On a database whose writing transactions run side by side (PostgreSQL) this needs a lock
both take; keyless serves SQLite today.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from keyless.store import db
from keyless.store.blobs import BlobStore

TEMP_GRACE_SECONDS = 3600.0
# Candidates checked and deleted per writing transaction: uploads wait for the write lock
# meanwhile, so it is held for a bounded batch, not for a whole store's worth of unlinks.
BATCH = 500


@dataclass
class GarbageCollector:
    """Garbage collection of one database's blob store (see the module's docstring)."""

    engine: Engine
    blobs: BlobStore

    def referenced_blobs(self) -> set[str]:
        with db.reading(self.engine) as conn:
            return db.referenced_blobs(conn)

    def collect_garbage(self, min_age_seconds: float = TEMP_GRACE_SECONDS) -> int:
        """Delete unreferenced blobs, and temp files older than `min_age_seconds`.

        Returns how many files were removed.
        """
        removed = self.blobs.remove_stale_temp_files(min_age_seconds)
        # Listed on a snapshot, without any lock: most blobs are referenced, and this is the slow
        # part on a large store.
        referenced = self.referenced_blobs()
        candidates = [sha256 for sha256 in self.blobs.iter_keys() if sha256 not in referenced]
        return removed + len(self.remove_unreferenced(candidates))

    def remove_unreferenced(self, candidates: list[str]) -> list[str]:
        """Delete those of `candidates` no row refers to (`db.referenced_blobs`), deciding under
        the write lock; returns the ones deleted (by gc, and by `keyless fsck --repair`)."""
        removed: list[str] = []
        for start in range(0, len(candidates), BATCH):
            batch = candidates[start : start + BATCH]
            with db.writing(self.engine) as conn:
                # Checked again under the write lock: an upload may have committed a row for one
                # of them since the snapshot, and none can commit until this transaction ends.
                kept = db.referenced_blobs(conn, batch)
                removed += [
                    sha256 for sha256 in batch if sha256 not in kept and self.blobs.remove(sha256)
                ]
        return removed
