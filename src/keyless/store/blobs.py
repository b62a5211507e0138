"""Content-addressed blob storage on the local file system.

Every file is stored once under its sha256, whatever index or filename refers to it, so
promoting a release from `test` to `prod` copies no bytes. Writes are atomic: bytes go to a
temp file in the same file system, are fsynced, then renamed into place — a reader never sees a
half-written blob, and a crash leaves only a temp file that `remove_orphans` deletes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


@dataclass
class Digests:
    """The three digests PyPI clients send, computed in the same pass as the write."""

    sha256: str
    md5: str
    blake2_256: str
    size: int


@dataclass
class HashingWriter:
    """Writes to a temp file while hashing, so an upload is read exactly once."""

    file: BinaryIO
    path: Path
    _sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    _md5: hashlib._Hash = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    _blake2: hashlib._Hash = field(default_factory=lambda: hashlib.blake2b(digest_size=32))
    size: int = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self._sha256.update(chunk)
        self._md5.update(chunk)
        self._blake2.update(chunk)
        self.size += len(chunk)

    def finish(self) -> Digests:
        """Flush and fsync the temp file; returns its digests."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return Digests(
            sha256=self._sha256.hexdigest(),
            md5=self._md5.hexdigest(),
            blake2_256=self._blake2.hexdigest(),
            size=self.size,
        )

    def discard(self) -> None:
        """Close and delete the temp file (upload refused or interrupted)."""
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class BlobStore:
    """Blobs at `<root>/sha256/ab/cd/<hexdigest>`; temp files at `<root>/tmp/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def new_writer(self) -> HashingWriter:
        """A temp file to stream an upload into; `commit` or `discard` it afterwards."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-", suffix=".part")
        return HashingWriter(file=os.fdopen(fd, "wb"), path=Path(name))

    def commit(self, temp_path: Path, sha256: str) -> Path:
        """Move a finished temp file into place under its hash.

        If the blob already exists (same bytes uploaded before, maybe to another index) the
        temp file is dropped: content addressing makes the existing one identical.
        """
        target = self.path_for(sha256)
        if target.exists():
            temp_path.unlink(missing_ok=True)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, target)
        _fsync_dir(target.parent)
        return target

    def put_bytes(self, data: bytes) -> str:
        """Store small bytes (e.g. a wheel's METADATA); returns the sha256."""
        writer = self.new_writer()
        try:
            writer.write(data)
            digests = writer.finish()
        except BaseException:
            writer.discard()
            raise
        self.commit(writer.path, digests.sha256)
        return digests.sha256

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        for path in (self.root / "sha256").glob("*/*/*"):
            yield path.name, path

    def remove_orphans(self, referenced: Iterable[str], min_age_seconds: float = 3600) -> int:
        """Delete stale temp files and blobs no database row refers to.

        Only files older than `min_age_seconds` go, so an upload between its blob rename and its
        database commit is never mistaken for an orphan. Returns how many files were removed.
        """
        keep = set(referenced)
        cutoff = time.time() - min_age_seconds
        removed = 0
        candidates = [p for p in self.tmp.iterdir()] + [
            p for sha, p in self.iter_blobs() if sha not in keep
        ]
        for path in candidates:
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
