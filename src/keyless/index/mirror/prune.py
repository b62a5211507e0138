"""`keyless mirror prune`: forget the upstream files no client downloaded for a while.

A file's row goes (with its PEP 658 metadata file's) when its last download and its storing are
both older than the cut-off (a file fetched again after its blob went is stored anew but keeps
its last download: the later of the two counts); its blob then goes only if nothing else
refers to it, decided by garbage collection under the write lock (`GarbageCollector`): a blob
shared with a file of the index's own, or kept by another index, stays. A pruned file is
fetched from the upstream again on its next download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, select

from keyless.store import db
from keyless.store.blobs import BlobStore

from ..maintenance import GarbageCollector
from ..pages import METADATA_SUFFIX


@dataclass
class PruneReport:
    files: list[tuple[str, str]] = field(default_factory=list)  # (index, filename) forgotten
    blobs_removed: int = 0


def prune(engine: Engine, blobs: BlobStore, days: float, index: str | None = None) -> PruneReport:
    """Forget the mirrored files not downloaded for `days` days (on `index`, or all)."""
    table = db.mirrored_files
    cutoff = datetime.now(UTC) - timedelta(days=days)
    report = PruneReport()
    last_use = case(
        (table.c.last_download > table.c.stored, table.c.last_download), else_=table.c.stored
    )  # NULL (never downloaded) compares false: the storing then
    query = (
        select(table.c.index_id, db.indexes.c.name, table.c.filename)
        .join(db.indexes, db.indexes.c.id == table.c.index_id)
        .where(
            ~table.c.filename.endswith(METADATA_SUFFIX),
            last_use < cutoff,
        )
        .order_by(db.indexes.c.name, table.c.filename)
    )
    if index is not None:
        query = query.where(db.indexes.c.name == index)
    candidates: set[str] = set()
    with db.writing(engine) as conn:
        for row in conn.execute(query).all():
            names = (row.filename, row.filename + METADATA_SUFFIX)
            gone = table.c.index_id == row.index_id, table.c.filename.in_(names)
            candidates.update(conn.execute(select(table.c.sha256).where(*gone)).scalars())
            conn.execute(table.delete().where(*gone))
            report.files.append((row.name, row.filename))
    removed = GarbageCollector(engine, blobs).remove_unreferenced(sorted(candidates))
    report.blobs_removed = len(removed)
    return report
