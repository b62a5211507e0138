"""A blob store that keeps everything in a dict: the second backend the tests run the app on.

It is what a new backend amounts to: one class with `BlobStore`'s methods (and one for its
pending writes). If the index touched a blob's path anywhere, the app would fail on it.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from typing import BinaryIO

from keyless.store.blobs import BlobRedirect, Digests, PendingBlob


class MemoryPending:
    """Bytes collected and hashed as they arrive, kept aside until `place`."""

    def __init__(self, store: MemoryBlobStore) -> None:
        self.store = store
        self.size = 0
        self._chunks: list[bytes] = []
        self._data: bytes | None = None
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._blake2 = hashlib.blake2b(digest_size=32)
        store.pending.add(self)

    def write(self, chunk: bytes | memoryview) -> None:
        data = bytes(chunk)
        self._chunks.append(data)
        self.size += len(data)
        for digest in (self._sha256, self._md5, self._blake2):
            digest.update(data)

    def backlog(self) -> int:
        return 0  # hashed as written: nothing falls behind

    async def drain(self, limit: int = 0) -> None:
        return None

    def hashed(self) -> Digests:
        return Digests(
            sha256=self._sha256.hexdigest(),
            md5=self._md5.hexdigest(),
            blake2_256=self._blake2.hexdigest(),
            size=self.size,
        )

    def finish(self) -> Digests:
        self._data = b"".join(self._chunks)
        self._chunks.clear()
        return self.hashed()

    def discard(self) -> None:
        self._chunks.clear()
        self._data = None
        self.store.pending.discard(self)

    def open(self) -> BinaryIO:
        assert self._data is not None, "finish() first"
        return io.BytesIO(self._data)


class MemoryBlobStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.pending: set[MemoryPending] = set()
        self.lock = threading.Lock()
        self.served: list[str] = []  # the keys downloads asked `serve` for
        self.opened: list[str] = []  # ... and readers asked `open` for

    def new_writer(
        self, expected_sha256: str | None = None, *, sha256_only: bool = False
    ) -> MemoryPending:
        return MemoryPending(self)

    def place(self, pending: PendingBlob, sha256: str, size: int) -> bool:
        assert isinstance(pending, MemoryPending)
        with self.lock:
            if self.exists(sha256, size):
                return False
            data = pending.open().read()
            assert hashlib.sha256(data).hexdigest() == sha256
            self.blobs[sha256] = data
            return True

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        with self.lock:
            self.blobs.setdefault(sha256, data)
        return sha256

    def exists(self, sha256: str, size: int | None = None) -> bool:
        data = self.blobs.get(sha256)
        return data is not None and size in (None, len(data))

    def open(self, sha256: str) -> BinaryIO:
        self.opened.append(sha256)
        if sha256 not in self.blobs:
            raise FileNotFoundError(sha256)
        return io.BytesIO(self.blobs[sha256])

    def serve(self, sha256: str) -> MemoryStream | BlobRedirect | None:
        self.served.append(sha256)
        data = self.blobs.get(sha256)
        return None if data is None else MemoryStream(data)

    def iter_keys(self) -> Iterator[str]:
        yield from list(self.blobs)

    def remove(self, sha256: str) -> bool:
        with self.lock:
            return self.blobs.pop(sha256, None) is not None

    def remove_stale_temp_files(self, min_age_seconds: float) -> int:
        return 0  # pending writes die with their upload


class MemoryStream:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def close(self) -> None:
        pass


class RedirectingStore(MemoryBlobStore):
    """A backend whose files are served elsewhere (as a bucket's presigned URLs would be)."""

    def serve(self, sha256: str) -> MemoryStream | BlobRedirect | None:
        return BlobRedirect(f"https://files.example/{sha256}?signature=s")
