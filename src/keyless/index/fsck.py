"""`keyless fsck`: does the blob store hold exactly the bytes the database says it does?

Four kinds of damage, each reported with the files it touches and what to do:

- `missing`: a file's blob is not in the store (the file cannot be downloaded);
- `size-mismatch`: the blob has another length than the file's row (truncated, grown);
- `sha256-mismatch`: the right length, other bytes (bit rot, a stray write);
- `orphan`: a blob no file refers to (an upload that never committed; `keyless gc` and the
  server's periodic collection remove these too).

Uploading the identical file again puts a missing or wrong-length blob back (the upload path
checks the blob inside its writing transaction); a blob of the right length is trusted there,
so a `sha256-mismatch` blob must be removed first. `--repair` does what is safe without the
original bytes: removes orphans and damaged blobs, each decided again under the database's
write lock, as garbage collection does (maintenance.py), so a concurrent upload of the same
bytes never loses them. Missing files are left for a re-upload.

The store is used only through `BlobStore.iter_keys`, `exists`, `open` and `remove`, so any
backend works.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from keyless.store import db
from keyless.store.blobs import BlobStore

from .maintenance import GarbageCollector

CHUNK = 1024 * 1024
WRONG_BYTES = ("size-mismatch", "sha256-mismatch")

REUPLOAD = (
    "upload the identical file again (e.g. `twine upload` of the same bytes, or `keyless "
    "publish`): that puts its blob back"
)


@dataclass(frozen=True)
class FileRef:
    """A file row that refers to a damaged or missing blob."""

    index: str
    project: str
    version: str
    filename: str


@dataclass
class Problem:
    kind: str  # "missing", "size-mismatch", "sha256-mismatch" or "orphan"
    sha256: str
    message: str
    files: list[FileRef] = field(default_factory=list)
    repaired: bool = False  # the damaged or orphaned blob was removed by --repair
    action: str = ""  # what is left to do, if anything


@dataclass
class FsckReport:
    files: int  # file rows checked
    blobs: int  # blobs found in the store
    problems: list[Problem]

    @property
    def clean(self) -> bool:
        """Nothing left to do: nothing found, or everything found repaired."""
        return not any(problem.action for problem in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "files": self.files,
            "blobs": self.blobs,
            "problems": [asdict(problem) for problem in self.problems],
        }


def _chunks(blobs: BlobStore, sha256: str) -> Iterator[bytes]:
    """The blob's bytes, read through the store (FileNotFoundError when it is not there)."""
    with blobs.open(sha256) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _measure(blobs: BlobStore, sha256: str) -> tuple[int, str] | None:
    """(size, sha256) of the stored bytes, or None if the blob is not there."""
    digest = hashlib.sha256()
    size = 0
    try:
        for chunk in _chunks(blobs, sha256):
            digest.update(chunk)
            size += len(chunk)
    except FileNotFoundError:
        return None
    return size, digest.hexdigest()


def _damage(blobs: BlobStore, sha256: str, size: int) -> tuple[str, str] | None:
    """(kind, message) of what is wrong with the blob of a file row, or None if nothing."""
    if not blobs.exists(sha256):
        return "missing", "the blob is not in the store"
    measured = _measure(blobs, sha256)
    if measured is None:  # removed while we looked
        return "missing", "the blob is not in the store"
    found_size, found_sha256 = measured
    if found_size != size:
        return "size-mismatch", f"the blob has {found_size} bytes, the file {size}"
    if found_sha256 != sha256:
        return "sha256-mismatch", f"the blob's bytes hash to {found_sha256}"
    return None


def _action(problem: Problem, repair: bool) -> str:
    if problem.kind == "orphan":
        if problem.repaired:
            return ""
        if repair:
            # Listed, unreferenced, yet not removable by its name: not where the store keeps
            # a blob of that name (e.g. a stray file under sha256/).
            return "not removed: it is not where the store keeps that name; delete it by hand"
        return "`keyless fsck --repair` (or `keyless gc`) removes it"
    if problem.kind == "missing":
        return REUPLOAD
    if problem.repaired:
        return "the damaged blob was removed; " + REUPLOAD
    if problem.kind == "size-mismatch":
        return REUPLOAD + ", or run `keyless fsck --repair` to remove the damaged blob first"
    return "run `keyless fsck --repair` to remove the damaged blob, then " + REUPLOAD


@dataclass
class Fsck:
    """A database checked against its blob store (`keyless fsck`; see the module)."""

    engine: Engine
    blobs: BlobStore

    def _file_rows(self) -> dict[tuple[str, int], list[FileRef]]:
        """(sha256, size) -> the files with those bytes."""
        query = (
            select(
                db.files.c.sha256,
                db.files.c.size,
                db.files.c.filename,
                db.indexes.c.name.label("index_name"),
                db.projects.c.name.label("project_name"),
                db.releases.c.version,
            )
            .join(db.releases, db.releases.c.id == db.files.c.release_id)
            .join(db.projects, db.projects.c.id == db.releases.c.project_id)
            .join(db.indexes, db.indexes.c.id == db.files.c.index_id)
            .order_by(db.files.c.sha256, db.indexes.c.name, db.files.c.filename)
        )
        rows: dict[tuple[str, int], list[FileRef]] = {}
        with db.reading(self.engine) as conn:
            for row in conn.execute(query):
                ref = FileRef(row.index_name, row.project_name, row.version, row.filename)
                rows.setdefault((row.sha256, row.size), []).append(ref)
        return rows

    def check(self, *, repair: bool = False) -> FsckReport:
        """Compare every file row with its blob, and every blob with the rows; see the module."""
        # Blobs first, rows second: a blob an upload places and commits meanwhile is then either
        # not listed or already referenced, never a false orphan.
        stored = list(self.blobs.iter_keys())
        rows = self._file_rows()
        problems: list[Problem] = []
        for (sha256, size), refs in rows.items():
            damage = _damage(self.blobs, sha256, size)
            if damage is not None:
                kind, message = damage
                problems.append(Problem(kind, sha256, message, refs))
        # A live upload session's files are no orphans: their blobs wait for its publish.
        referenced = {sha256 for sha256, _ in rows}
        with db.reading(self.engine) as conn:  # an upstream's files an index keeps (mirror/)
            referenced |= db.referenced_blobs(conn, set(stored) - referenced)
        orphans = sorted(set(stored) - referenced)
        problems += [Problem("orphan", sha256, "no file refers to this blob") for sha256 in orphans]

        removed: set[str] = set()
        kept: set[str] = set()  # orphans a file refers to by now (an upload committed meanwhile)
        if repair:
            removed.update(GarbageCollector(self.engine, self.blobs).remove_unreferenced(orphans))
            kept = self._referenced([sha256 for sha256 in orphans if sha256 not in removed])
            size_of = {sha256: size for sha256, size in rows}
            damaged = [(p.sha256, size_of[p.sha256]) for p in problems if p.kind in WRONG_BYTES]
            removed.update(self._remove_damaged(damaged))
        for problem in problems:
            problem.repaired = problem.sha256 in removed
            problem.action = "" if problem.sha256 in kept else _action(problem, repair)
        files = sum(len(refs) for refs in rows.values())
        return FsckReport(files=files, blobs=len(stored), problems=problems)

    def _referenced(self, candidates: list[str]) -> set[str]:
        if not candidates:
            return set()
        with db.reading(self.engine) as conn:
            return db.referenced_blobs(conn, candidates)

    def _remove_damaged(self, damaged: list[tuple[str, int]]) -> list[str]:
        """Remove blobs whose bytes are wrong, each checked again under the write lock: a
        re-upload may have put the right bytes back since, and none can while this holds it
        (uploads wait meanwhile, for as long as hashing that one blob takes)."""
        removed: list[str] = []
        for sha256, size in damaged:
            with db.writing(self.engine):
                damage = _damage(self.blobs, sha256, size)
                if damage is not None and damage[0] in WRONG_BYTES and self.blobs.remove(sha256):
                    removed.append(sha256)
        return removed
