"""The blob store's writer: digests, threads, back-pressure and clean-up."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from keyless.store import blobs as blobs_module
from keyless.store.blobs import BATCH, HashingWriter, LocalBlobStore


def expected(data: bytes) -> tuple[str, str, str]:
    return (
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
        hashlib.blake2b(data, digest_size=32).hexdigest(),
    )


def write_in_random_pieces(writer: HashingWriter, data: bytes, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible piece sizes, not secrets
    at = 0
    while at < len(data):
        step = rng.choice([1, 7, 4096, 65536, 300_000, BATCH + 3])
        # A memoryview into bytes, as the multipart parser hands over network chunks.
        writer.write(memoryview(data)[at : at + step])
        at += step


def hashing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("digest")]


@pytest.mark.parametrize(
    "size", [0, 1, BATCH - 1, BATCH, BATCH + 1, 3 * BATCH + 12345], ids=lambda s: f"{s}B"
)
def test_digests_and_bytes_match_whatever_the_size(tmp_path: Path, size: int) -> None:
    blobs = LocalBlobStore(tmp_path)
    data = os.urandom(size)
    writer = blobs.new_writer()
    write_in_random_pieces(writer, data, seed=size)
    digests = writer.finish()
    assert (digests.sha256, digests.md5, digests.blake2_256) == expected(data)
    assert digests.size == size
    assert writer.path.read_bytes() == data
    assert hashing_threads() == []  # the lanes of a large upload are stopped by finish


@pytest.mark.parametrize("size", [1000, 3 * BATCH + 12345], ids=lambda s: f"{s}B")
def test_a_write_asked_for_the_sha256_only_computes_nothing_else(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    writer = LocalBlobStore(tmp_path).new_writer(sha256_only=True)
    write_in_random_pieces(writer, data, seed=size)
    if size > BATCH:
        assert len(hashing_threads()) == 1  # sha256 (+ write) only
    digests = writer.finish()
    assert (digests.sha256, digests.md5, digests.blake2_256) == (expected(data)[0], "", "")
    assert digests.size == size
    assert writer.path.read_bytes() == data


@pytest.mark.parametrize("size", [1000, 3 * BATCH + 12345], ids=lambda s: f"{s}B")
def test_hashed_tells_the_digests_before_finish_makes_the_bytes_durable(
    tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mirror checks the sha256 here and sends its client the last bytes before the fsync.
    synced: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    data = os.urandom(size)
    writer = LocalBlobStore(tmp_path).new_writer(sha256_only=True)
    write_in_random_pieces(writer, data, seed=size)
    early = writer.hashed()
    assert (early.sha256, early.size) == (expected(data)[0], size)
    assert synced == []
    assert hashing_threads() == []
    assert writer.finish() == early
    assert len(synced) == 1
    assert writer.path.read_bytes() == data


def test_a_small_upload_is_created_written_and_hashed_only_by_finish(tmp_path: Path) -> None:
    # The event loop calls `write`: for a small file it must do no file or hashing work.
    writer = LocalBlobStore(tmp_path).new_writer()
    writer.write(b"x" * 1000)
    assert not writer.path.exists()  # not even created yet: that is a worker's job too
    assert hashing_threads() == []
    assert writer.finish().size == 1000
    assert writer.path.stat().st_size == 1000


def test_a_large_upload_is_hashed_while_it_arrives(tmp_path: Path) -> None:
    writer = LocalBlobStore(tmp_path).new_writer()
    writer.write(os.urandom(2 * BATCH))
    assert len(hashing_threads()) == 3  # sha256 (+ write), md5, blake2b
    asyncio.run(writer.drain(limit=0))
    assert writer.backlog() == 0
    assert writer.path.stat().st_size == 2 * BATCH  # written before finish
    writer.finish()


def test_drain_waits_until_the_threads_catch_up(tmp_path: Path) -> None:
    writer = LocalBlobStore(tmp_path).new_writer()
    for _ in range(8):
        writer.write(os.urandom(BATCH))
    limit = 2 * BATCH
    asyncio.run(writer.drain(limit=limit))
    assert writer.backlog() <= limit
    writer.finish()


def test_discard_stops_the_threads_and_leaves_no_file(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    writer = blobs.new_writer()
    for _ in range(4):
        writer.write(os.urandom(BATCH))
    writer.discard()
    assert not writer.path.exists()
    assert list(blobs.tmp.iterdir()) == []
    assert hashing_threads() == []


def test_a_failed_write_surfaces_from_finish(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    writer = blobs.new_writer()
    blobs.tmp.rmdir()  # the temp file cannot be created, as on a broken disk
    writer.write(os.urandom(2 * BATCH))
    with pytest.raises(FileNotFoundError):
        writer.finish()
    writer.discard()
    assert not writer.path.exists()
    assert hashing_threads() == []


def test_commit_creates_the_prefix_folders_and_keeps_one_copy(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    first = blobs.put_bytes(b"same bytes")
    second = blobs.put_bytes(b"same bytes")
    assert first == second == hashlib.sha256(b"same bytes").hexdigest()
    assert blobs.path_for(first).read_bytes() == b"same bytes"
    assert list(blobs.tmp.iterdir()) == []  # the second temp file was dropped


def test_commit_syncs_every_folder_it_creates_in_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rename is on disk once its folder is synced; a new folder once its parent is. Without
    # the parents, a power cut could lose the `ab/cd` folders and the blob with them.
    synced: list[Path] = []
    monkeypatch.setattr(blobs_module, "_fsync_dir", synced.append)
    blobs = LocalBlobStore(tmp_path)
    first = blobs.put_bytes(b"first bytes")
    target = blobs.path_for(first)
    assert synced == [target.parent, target.parent.parent, tmp_path / "sha256"]
    synced.clear()
    # Another blob under the same two-level prefix creates no folder: only its own is synced.
    writer = blobs.new_writer()
    writer.write(b"other bytes")
    writer.finish()
    assert blobs.commit(writer.path, first[:4] + "0" * 60)  # commit trusts the caller's hash
    assert synced == [target.parent]


def test_commit_says_whether_it_placed_the_blob(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    for expected_placed in (True, False):
        writer = blobs.new_writer()
        writer.write(b"the same bytes")
        digests = writer.finish()
        assert blobs.commit(writer.path, digests.sha256) is expected_placed


def finished(blobs: LocalBlobStore, data: bytes) -> tuple[HashingWriter, str]:
    writer = blobs.new_writer()
    writer.write(data)
    return writer, writer.finish().sha256


@pytest.mark.parametrize("hard_links", [True, False])
def test_place_puts_back_a_missing_or_truncated_blob_and_keeps_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    if not hard_links:  # a file system without them: the bytes are copied instead

        def no_link(*_args: object) -> None:
            raise PermissionError("hard links are not supported here")

        monkeypatch.setattr(os, "link", no_link)
    blobs = LocalBlobStore(tmp_path / "blobs")
    data = os.urandom(5000)
    writer, sha256 = finished(blobs, data)
    temp = writer.path
    damages: list[Callable[[], object]] = [
        lambda: None,
        blobs.path_for(sha256).unlink,
        lambda: cut_short(blobs, sha256),
    ]
    for damage in damages:
        damage()
        blobs.place(writer, sha256, len(data))
        assert blobs.path_for(sha256).read_bytes() == data
        assert temp.read_bytes() == data  # the upload discards it itself, after its commit
    assert sorted(p.name for p in blobs.tmp.iterdir()) == [temp.name]


def cut_short(blobs: LocalBlobStore, sha256: str) -> None:
    # Another file in its place (writing into it would also change the temp file it may be
    # a hard link of).
    short = blobs.root / "short"
    short.write_bytes(b"only the beginning")
    os.replace(short, blobs.path_for(sha256))


def test_serve_reads_by_offset_and_keeps_serving_a_blob_removed_meanwhile(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    data = os.urandom(3000)
    sha256 = blobs.put_bytes(data)
    assert blobs.serve("0" * 64) is None
    stream = blobs.serve(sha256)
    assert stream is not None
    try:
        assert stream.size == len(data)
        assert blobs.remove(sha256)  # garbage collection, during a download
        assert stream.read(1000, 500) == data[1000:1500]
        assert stream.read(2900, 500) == data[2900:]  # fewer only at the end
    finally:
        stream.close()
    stream.close()  # twice is harmless: the response closes it however it ends


def test_keys_and_open_go_by_hash_only(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    stored = {blobs.put_bytes(b"one"), blobs.put_bytes(b"two")}
    writer = blobs.new_writer()  # a write in progress is not a blob
    writer.write(b"three")
    writer.finish()
    assert set(blobs.iter_keys()) == stored
    for sha256 in stored:
        with blobs.open(sha256) as file:
            assert hashlib.sha256(file.read()).hexdigest() == sha256
    with pytest.raises(FileNotFoundError):
        blobs.open("0" * 64)


def test_place_takes_only_its_own_pending_writes(tmp_path: Path) -> None:
    # Bytes pending in another backend are not in this folder: refused, not half placed.
    from tests.store.memory_blobs import MemoryBlobStore

    foreign = MemoryBlobStore().new_writer()
    foreign.write(b"elsewhere")
    digests = foreign.finish()
    with pytest.raises(TypeError, match="not begun by a LocalBlobStore"):
        LocalBlobStore(tmp_path).place(foreign, digests.sha256, digests.size)
