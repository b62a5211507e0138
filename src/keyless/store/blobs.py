"""Content-addressed blob storage: the interface the index uses, and the local folder.

Every file is stored once under its sha256, whatever index or filename refers to it, so
promoting a release from `test` to `prod` copies no bytes.

`BlobStore` is everything the code above `store/` may do with blobs; nothing there sees where
or how the bytes are kept, so another backend (an object store) is one more class with these
methods. Its rules: a streamed write hashes on the way (`new_writer`); nothing is visible under
its final key until the caller has checked the digests and calls `place`, which is idempotent
(an upload calls it before its write transaction and again inside it, see `place`); `serve`
answers a download with a stream that can start at any offset, or with a URL to redirect to.

`LocalBlobStore` keeps them in a folder. Writes are atomic: bytes go to a temp file in the same
file system, are fsynced, then renamed into place — a reader never sees a half-written blob, and
a crash leaves only a temp file that garbage collection deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from keyless.store.errors import StorageFull, is_storage_full

# Bytes collected before a large upload's piece goes to the hashing threads: big enough that
# handing over costs little, small enough that the threads start while the upload arrives.
BATCH = 1024 * 1024
# How far the hashing threads may fall behind the network before reading waits for them.
MAX_BACKLOG = 16 * BATCH


@dataclass
class Digests:
    """The three digests PyPI clients send, computed in the same pass as the write."""

    sha256: str
    md5: str
    blake2_256: str
    size: int


class PendingBlob(Protocol):
    """A streamed write in progress: bytes in, digests out, not yet visible under a key.

    `write` takes the bytes as they arrive; `backlog`/`drain` keep the memory bounded when
    the work behind `write` (hashing, disk or network) falls behind; `hashed` (blocking)
    returns the digests once every byte is hashed, before they are durable; `finish`
    (blocking) returns them once everything is durable in the pending area; `open` reads the
    finished bytes back (an upload reads its archive's metadata there); `discard` drops it.
    """

    size: int

    def write(self, chunk: bytes | memoryview) -> None: ...
    def backlog(self) -> int: ...
    async def drain(self, limit: int = ...) -> None: ...
    def hashed(self) -> Digests: ...
    def finish(self) -> Digests: ...
    def discard(self) -> None: ...
    def open(self) -> BinaryIO: ...


class BlobStream(Protocol):
    """A stored blob opened for download: its size, and reads at any offset (HTTP Range)."""

    size: int

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`; blocking. Fewer only at the end of the blob."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BlobRedirect:
    """A download answered elsewhere: the client is sent to `url` (e.g. a presigned URL)."""

    url: str


class BlobStore(Protocol):
    """What the index may do with blobs. The methods block: call them off the event loop."""

    def new_writer(
        self, expected_sha256: str | None = None, *, sha256_only: bool = False
    ) -> PendingBlob:
        """Begin a streamed write; `place` or `discard` it afterwards.

        `expected_sha256`: what the writer says the bytes will hash to (an upload form names
        it before the file), unchecked: a store may use it to send the bytes on the way to
        where that blob will live, still invisible until `place`. `sha256_only`: no md5 and
        blake2b (their `Digests` are ""), for a writer that checks the sha256 alone (a
        mirror): they cost ~3 CPU-ms per MB here, twice the sha256.
        """
        ...

    def place(self, pending: PendingBlob, sha256: str, size: int) -> bool:
        """Make the blob `sha256` hold the finished `pending` bytes, which stay pending.

        The caller has checked the digests. Nothing to do when an intact blob of `size`
        bytes is there; True if this call put the bytes in. Cheap when called again: an
        upload calls it before its write transaction (the slow part, without the database's
        write lock) and again inside it, where garbage collection cannot run, so the blob
        its committed row refers to is certainly there. Raises StorageFull when out of room.
        """
        ...

    def put_bytes(self, data: bytes) -> str:
        """Store small bytes at once; returns their sha256."""
        ...

    def exists(self, sha256: str, size: int | None = None) -> bool:
        """Whether the blob is stored (with `size` bytes, when given)."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """The blob as a seekable binary file (raises FileNotFoundError when missing)."""
        ...

    def serve(self, sha256: str) -> BlobStream | BlobRedirect | None:
        """How to answer a download: a stream, a redirect, or None when the blob is missing."""
        ...

    def iter_keys(self) -> Iterator[str]:
        """The sha256 of every stored blob (for garbage collection)."""
        ...

    def remove(self, sha256: str) -> bool:
        """Delete one blob; False if it was not there. The caller decides it is unreferenced
        (see keyless.index.maintenance, which does so under the database's write lock)."""
        ...

    def remove_stale_temp_files(self, min_age_seconds: float) -> int:
        """Delete what writes left behind that has not been written to for
        `min_age_seconds` (an interrupted upload, a crash); returns how many went."""
        ...


def write_all(pending: PendingBlob, chunks: Iterable[bytes]) -> None:
    """Feed `chunks` to a write from blocking code (an import), its memory bounded as an
    upload's: whenever the threads behind `write` fall behind, wait for them."""
    for chunk in chunks:
        pending.write(chunk)
        if pending.backlog() > MAX_BACKLOG:
            asyncio.run(pending.drain())


class StreamedWrite:
    """What every store's pending write shares: the bytes taken as they arrive, and handed
    over, `piece` bytes at a time, to threads that hash them and keep them.

    One thread per digest: md5, sha256 and blake2b together cost ~3 CPU-ms per MB here, and
    hashlib releases the GIL, so on a multi-core machine they run side by side instead of one
    after another. The sha256 thread also keeps the bytes, in order (`_keep`: a temp file, a
    spool). A store may give each piece more work (`_also`: sending it to a bucket).
    `backlog()` says how many bytes the threads have not finished; the caller awaits `drain`
    to keep that, and so the memory, bounded.

    A write smaller than one piece is only collected in memory by `write`, then kept and
    hashed by `_settle` (from `finish`, on a worker thread): the event loop never hashes.
    """

    def __init__(self, piece: int, sha256_only: bool = False) -> None:
        self.size = 0
        self._piece = piece
        self._sha256_only = sha256_only
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._blake2 = hashlib.blake2b(digest_size=32)
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0
        self._lanes: list[ThreadPoolExecutor] = []
        self._in_flight: deque[tuple[int, list[Future[Any]]]] = deque()
        self._settled = False

    def _keep(self, data: bytes) -> None:
        """Store the next bytes where `open` reads them back (called in order)."""
        raise NotImplementedError

    def _also(self, data: bytes) -> list[Future[Any]]:
        """More work for a piece handed over; the futures `backlog` waits for too."""
        return []

    def write(self, chunk: bytes | memoryview) -> None:
        """Take the next bytes; a caller's memoryview must stay valid (bytes underneath)."""
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        self.size += len(chunk)
        if self._pending_size >= self._piece:
            self._hand_over()

    def backlog(self) -> int:
        """Bytes handed to the threads and not yet done by all of them.

        Raises the error of a piece that failed (a full disk, a store that did not answer),
        so reading stops.
        """
        while self._in_flight and all(f.done() for f in self._in_flight[0][1]):
            _, futures = self._in_flight.popleft()
            for future in futures:
                future.result()
        return sum(size for size, _ in self._in_flight)

    async def drain(self, limit: int = MAX_BACKLOG) -> None:
        """Wait until the threads are at most `limit` bytes behind."""
        while self.backlog() > limit:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in self._in_flight[0][1]))

    def hashed(self) -> Digests:
        """The digests of every byte written, all of it kept but not yet durable: `finish`
        follows (a mirror checks the sha256 here and lets its client have the last bytes
        while the file is made durable and placed). Blocking; no `write` after it."""
        self._settle()
        return self._digests()

    def _settle(self) -> None:
        """Keep and hash what is left, and wait for the threads (once). Blocking."""
        if self._settled:
            return
        self._settled = True
        if self._lanes:
            self._hand_over()
            try:
                for _, futures in self._in_flight:
                    for future in futures:
                        future.result()
                self._in_flight.clear()
            finally:
                self._stop_lanes()
        else:
            data = b"".join(self._pending)
            self._pending.clear()
            self._keep_and_sha256(data)
            if not self._sha256_only:
                self._md5.update(data)
                self._blake2.update(data)

    def _digests(self) -> Digests:
        return Digests(
            sha256=self._sha256.hexdigest(),
            md5="" if self._sha256_only else self._md5.hexdigest(),
            blake2_256="" if self._sha256_only else self._blake2.hexdigest(),
            size=self.size,
        )

    def _hand_over(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)  # one copy, so the network chunks can be freed
        self._pending.clear()
        self._pending_size = 0
        if not self._lanes:
            count = 1 if self._sha256_only else 3
            self._lanes = [ThreadPoolExecutor(1, thread_name_prefix="digest") for _ in range(count)]
        futures = [self._lanes[0].submit(self._keep_and_sha256, data), *self._also(data)]
        if not self._sha256_only:
            futures.append(self._lanes[1].submit(self._md5.update, data))
            futures.append(self._lanes[2].submit(self._blake2.update, data))
        self._in_flight.append((len(data), futures))

    def _keep_and_sha256(self, data: bytes) -> None:
        self._keep(data)
        self._sha256.update(data)

    def _stop_lanes(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=True, cancel_futures=True)
        self._lanes = []
        self._pending.clear()


class HashingWriter(StreamedWrite):
    """Writes an upload to a temp file in the store's folder while computing its digests.

    Pieces of `BATCH` bytes (`StreamedWrite`). The temp file itself is created by the first
    thread that writes to it: creating a file costs ~0.2 ms here, which the event loop should
    not spend.
    """

    def __init__(self, folder: Path, sha256_only: bool = False) -> None:
        super().__init__(BATCH, sha256_only)
        self.folder = folder
        self.file: BinaryIO | None = None
        self.path = self._new_name()  # final once the file is created

    def finish(self) -> Digests:
        """Write and hash what is left, flush and fsync; returns the digests. Blocking."""
        self._settle()
        assert self.file is not None  # created by the first write, even of nothing
        with full_disk_as_storage_full():
            self.file.flush()
            os.fsync(self.file.fileno())
        self.file.close()
        return self._digests()

    def discard(self) -> None:
        """Stop the threads, close and delete the temp file (upload refused or interrupted)."""
        self._stop_lanes()
        if self.file is None:
            return  # never created
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def open(self) -> BinaryIO:
        """The finished temp file, for reading."""
        return self.path.open("rb")

    def _keep(self, data: bytes) -> None:
        with full_disk_as_storage_full():
            if self.file is None:
                self.file = self._create()
            self.file.write(data)

    def _new_name(self) -> Path:
        return self.folder / f"upload-{secrets.token_hex(8)}.part"

    def _create(self) -> BinaryIO:
        # A random name opened with O_EXCL: what tempfile.mkstemp does, for a third of its
        # cost (it draws each letter separately).
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self.path = self._new_name()
                continue
            return os.fdopen(fd, "wb")


class LocalBlobStore:
    """`BlobStore` in a folder: blobs at `<root>/sha256/ab/cd/<hexdigest>`, temp files at
    `<root>/tmp/`. The paths stay inside this class."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str, size: int | None = None) -> bool:
        """Whether the blob is stored (with `size` bytes, when given)."""
        try:
            stored = self.path_for(sha256).stat().st_size
        except FileNotFoundError:
            return False
        return size in (None, stored)

    def new_writer(
        self, expected_sha256: str | None = None, *, sha256_only: bool = False
    ) -> HashingWriter:
        """A temp file to stream an upload into; `commit` or `discard` it afterwards.

        A temp file is renamed into place whatever its digest: `expected_sha256` is no use.
        """
        return HashingWriter(self.tmp, sha256_only)

    def commit(self, temp_path: Path, sha256: str) -> bool:
        """Move a finished temp file into place under its hash; True if this call placed it.

        If the blob already exists (same bytes uploaded before, maybe to another index) the
        temp file is dropped and False returned: content addressing makes the existing one
        identical. Raises StorageFull when the disk has no room for a new folder.
        """
        target = self.path_for(sha256)
        if target.exists():
            temp_path.unlink(missing_ok=True)
            return False
        self._move_in(temp_path, target)
        return True

    def place(self, pending: PendingBlob, sha256: str, size: int) -> bool:
        """Make the blob hold the bytes of a finished write, whose temp file stays where it is.

        Nothing to do when an intact blob (of `size` bytes) is there; otherwise the temp file
        is hard-linked in (a missing or truncated blob is replaced atomically) and the folder
        fsynced. An upload calls it twice: before its write transaction, where the link and
        the fsync take their time without holding the database's write lock, and again
        inside it, where it costs a stat — unless garbage collection removed the blob in
        between, which it only does in a writing transaction of its own.

        Returns True if this call put the bytes in. Raises StorageFull on a full disk.
        """
        if not isinstance(pending, HashingWriter):
            raise TypeError(f"{type(pending).__name__} was not begun by a LocalBlobStore")
        return self.place_file(pending.path, sha256, size)

    def place_file(self, temp_path: Path, sha256: str, size: int) -> bool:
        """`place` for a finished temp file of this store, named by its path."""
        if self.exists(sha256, size):
            return False
        linked = self.tmp / f"link-{secrets.token_hex(8)}.part"
        with full_disk_as_storage_full():
            try:
                os.link(temp_path, linked)
            except OSError as exc:
                if is_storage_full(exc):
                    raise
                # A file system without hard links: a copy, on disk before the rename.
                shutil.copyfile(temp_path, linked)
                with linked.open("rb") as copy:
                    os.fsync(copy.fileno())
        self._move_in(linked, self.path_for(sha256))
        return True

    def _move_in(self, temp_path: Path, target: Path) -> None:
        new_folders: list[Path] = []
        with full_disk_as_storage_full():
            try:
                os.replace(temp_path, target)
            except FileNotFoundError:  # the first blob under this prefix: make its folders
                new_folders = _make_folders(target.parent)
                os.replace(temp_path, target)
            # The rename is durable once its folder is synced, and a new folder once its
            # parent is: without that, a power cut could lose a blob whose row is committed.
            _fsync_dir(target.parent)
            for folder in new_folders:
                _fsync_dir(folder.parent)

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

    def open(self, sha256: str) -> BinaryIO:
        return self.path_for(sha256).open("rb")

    def serve(self, sha256: str) -> LocalStream | None:
        # One open and one fstat: the download's reads then go by offset on that descriptor,
        # so a blob removed meanwhile is still served whole.
        try:
            fd = os.open(self.path_for(sha256), os.O_RDONLY)
        except FileNotFoundError:
            return None
        return LocalStream(fd, os.fstat(fd).st_size)

    def iter_keys(self) -> Iterator[str]:
        for path in (self.root / "sha256").glob("*/*/*"):
            yield path.name

    def remove(self, sha256: str) -> bool:
        try:
            self.path_for(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def remove_stale_temp_files(self, min_age_seconds: float) -> int:
        """Delete temp files not written to for `min_age_seconds` (an upload streaming into
        one writes to it all along); returns how many went."""
        cutoff = time.time() - min_age_seconds
        removed = 0
        for path in list(self.tmp.iterdir()):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class LocalStream:
    """An open blob file, read with `pread` so concurrent ranges need no shared position."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns the ones that were missing."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)  # another upload may create it at the same moment
    return missing


@contextlib.contextmanager
def full_disk_as_storage_full() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if is_storage_full(exc):
            raise StorageFull(exc) from exc
        raise


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
