"""`S3BlobStore` against real S3-speaking servers (moto's server mode and s3rver,
tests/store/s3_server.py): the `BlobStore` contract, object by object as the bucket shows it.
What s3rver does not implement (listing and aborting unfinished multipart uploads, keeping
checksums) is checked on moto only."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
import tracemalloc
import zlib
from typing import Any

import httpx
import pytest

from keyless.config import ConfigError, StorageSettings
from keyless.store.backends import open_blob_store
from keyless.store.blobs import BlobRedirect
from keyless.store.s3_blobs import PART_SIZE, S3BlobStore, S3Pending, S3Stream
from tests.conftest import free_port

from .s3_server import S3Server, each_s3_server, s3_server, s3_storage

__all__ = ["s3_server", "s3_storage"]  # the fixtures
pytest_generate_tests = each_s3_server


def s3_store(storage: StorageSettings) -> S3BlobStore:
    store = open_blob_store(storage, local_folder=None)  # type: ignore[arg-type]
    assert isinstance(store, S3BlobStore)
    return store


def keys(store: S3BlobStore) -> list[str]:
    """Every object in the store's bucket, under any prefix."""
    listing = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def multipart_uploads(store: S3BlobStore) -> list[str]:
    listing = store.client.list_multipart_uploads(Bucket=store.bucket)
    return [upload["Key"] for upload in listing.get("Uploads", [])]


def stream_in(pending: S3Pending, data: bytes, chunk: int = 64 * 1024) -> None:
    """Write as an upload does: chunks as they arrive, draining the backlog between them."""

    async def feed() -> None:
        for start in range(0, len(data), chunk):
            pending.write(memoryview(data)[start : start + chunk])
            await pending.drain()

    asyncio.run(feed())


def requests_made(store: S3BlobStore) -> list[str]:
    """The S3 operations `store`'s client sends from now on, by name, in order."""
    made: list[str] = []

    def record(model: Any, **_: Any) -> None:
        made.append(model.name)

    store.client.meta.events.register("before-call.s3", record)
    return made


def sample(size: int) -> bytes:
    return hashlib.sha256(b"seed").digest() * (size // 32) + b"x" * (size % 32)


@pytest.mark.parametrize("named", [True, False], ids=["sha256-named", "unnamed"])
@pytest.mark.parametrize("size", [1000, 2 * PART_SIZE + 12345], ids=["one-put", "multipart"])
def test_nothing_is_visible_under_its_key_before_place(
    s3_server: S3Server, s3_storage: StorageSettings, size: int, named: bool
) -> None:
    store = s3_store(s3_storage)
    data = sample(size)
    sha256 = hashlib.sha256(data).hexdigest()
    key = f"keyless/blobs/sha256/{sha256}"
    pending = store.new_writer(sha256 if named else None)
    stream_in(pending, data)
    digests = pending.finish()
    assert (digests.sha256, digests.size) == (sha256, size)
    assert digests.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert digests.blake2_256 == hashlib.blake2b(data, digest_size=32).hexdigest()

    # Finished and hashed; the parts of a large one named in advance are in the bucket, as an
    # unfinished multipart upload of its key, which no reader sees.
    assert keys(store) == []
    if s3_server.lists_multipart_uploads:
        assert multipart_uploads(store) == ([key] if named and size > PART_SIZE else [])
    assert not store.exists(sha256)
    assert store.serve(sha256) is None
    assert list(store.iter_keys()) == []
    made = requests_made(store)
    with pending.open() as archive:  # the upload inspects the archive here: the spool file
        archive.seek(-10, 2)
        assert archive.read() == data[-10:]
        archive.seek(0)
        assert archive.read() == data
    assert made == []

    assert store.place(pending, sha256, size) is True
    if named and size > PART_SIZE:
        assert made == ["HeadObject", "CompleteMultipartUpload"]  # no second copy of the bytes
    else:
        assert "CopyObject" not in made
        assert made[-1] in ("PutObject", "CompleteMultipartUpload")
    assert store.exists(sha256, size)
    assert not store.exists(sha256, size + 1)
    assert list(store.iter_keys()) == [sha256]
    assert store.place(pending, sha256, size) is False  # idempotent: the upload calls it twice
    with store.open(sha256) as stored:
        assert stored.read() == data

    pending.discard()
    assert keys(store) == [key]
    if s3_server.lists_multipart_uploads:
        assert multipart_uploads(store) == []


def test_a_wrong_sha256_named_in_advance_never_becomes_a_blob(
    s3_server: S3Server, s3_storage: StorageSettings
) -> None:
    store = s3_store(s3_storage)
    data = sample(PART_SIZE + 100)
    sha256 = hashlib.sha256(data).hexdigest()
    claimed = "0" * 64  # a client's claim is only checked once the bytes are in
    pending = store.new_writer(claimed)
    stream_in(pending, data)
    assert pending.finish().sha256 == sha256
    if s3_server.lists_multipart_uploads:
        assert multipart_uploads(store) == [f"keyless/blobs/sha256/{claimed}"]
    # An upload refuses the file then; were it placed under its true digest, it goes there.
    assert store.place(pending, sha256, len(data)) is True
    pending.discard()
    assert keys(store) == [f"keyless/blobs/sha256/{sha256}"]
    if s3_server.lists_multipart_uploads:
        assert multipart_uploads(store) == []
    with store.open(sha256) as stored:
        assert stored.read() == data


def test_a_blob_already_stored_is_not_sent_again(
    s3_server: S3Server, s3_storage: StorageSettings
) -> None:
    store = s3_store(s3_storage)
    data = sample(2 * PART_SIZE)
    sha256 = store.put_bytes(data)
    made = requests_made(store)
    pending = store.new_writer(sha256)  # the same file uploaded again (another index, a retry)
    stream_in(pending, data)
    pending.finish()
    assert made == ["HeadObject"]  # found there: no multipart upload begun, no part sent
    assert store.place(pending, sha256, len(data)) is False
    pending.discard()
    if s3_server.lists_multipart_uploads:
        assert multipart_uploads(store) == []


def test_place_puts_back_a_blob_collected_before_the_row_committed(
    s3_storage: StorageSettings,
) -> None:
    store = s3_store(s3_storage)
    data = sample(PART_SIZE + 7)
    sha256 = hashlib.sha256(data).hexdigest()
    pending = store.new_writer(sha256)
    stream_in(pending, data)
    pending.finish()
    assert store.place(pending, sha256, len(data)) is True
    assert store.remove(sha256) is True  # garbage collection, between the two `place` calls
    assert store.place(pending, sha256, len(data)) is True  # sent again from the spool file
    pending.discard()
    with store.open(sha256) as stored:
        assert stored.read() == data


def test_serve_streams_from_any_offset(s3_storage: StorageSettings) -> None:
    store = s3_store(s3_storage)
    data = bytes(range(256)) * 4000
    sha256 = store.put_bytes(data)
    served = store.serve(sha256)
    assert isinstance(served, S3Stream)
    try:
        assert served.size == len(data)
        # Sequential reads go on from the first GET; a jump (a Range request) starts another.
        assert served.read(0, 1000) + served.read(1000, 1000) == data[:2000]
        assert served.read(500_000, 100) == data[500_000:500_100]
        assert served.read(len(data) - 10, 100) == data[-10:]  # short only at the end
        assert served.read(3, 4) == data[3:7]
    finally:
        served.close()
    assert store.serve("0" * 64) is None


def test_serve_may_redirect_to_a_presigned_url(s3_storage: StorageSettings) -> None:
    store = s3_store(StorageSettings(**{**s3_storage.__dict__, "presigned_downloads": 300}))
    data = b"presigned bytes" * 100
    sha256 = store.put_bytes(data)
    served = store.serve(sha256)
    assert isinstance(served, BlobRedirect)
    assert "X-Amz-Expires=300" in served.url
    assert httpx.get(served.url).content == data  # the bucket answers the client itself
    assert store.serve("1" * 64) is None


def test_iter_keys_lists_only_its_prefix_and_remove_says_what_it_removed(
    s3_server: S3Server, s3_storage: StorageSettings
) -> None:
    store = s3_store(s3_storage)
    a, b = store.put_bytes(b"a"), store.put_bytes(b"b")
    assert store.put_bytes(b"a") == a  # stored once
    # Another deployment's prefix in the same bucket is not ours to list or collect.
    other = s3_store(StorageSettings(**{**s3_storage.__dict__, "blobs": f"s3://{store.bucket}"}))
    other.put_bytes(b"c")
    assert sorted(store.iter_keys()) == sorted([a, b])
    assert store.remove(a) is True
    assert store.remove(a) is False
    assert list(store.iter_keys()) == [b]


def test_iter_keys_reads_every_page_of_the_listing(s3_storage: StorageSettings) -> None:
    store = s3_store(s3_storage)
    stored = sorted(store.put_bytes(bytes([n])) for n in range(5))

    # S3 lists up to 1000 keys a page; two here, so that garbage collection's walk of a large
    # store (the listing's continuation tokens) is shown by five blobs.
    def two_a_page(params: dict[str, Any], **_: Any) -> None:
        params["MaxKeys"] = 2

    store.client.meta.events.register("provide-client-params.s3.ListObjectsV2", two_a_page)
    made = requests_made(store)
    assert sorted(store.iter_keys()) == stored
    assert made == ["ListObjectsV2"] * 3


@pytest.mark.moto_only("s3rver cannot list or abort unfinished multipart uploads")
def test_what_interrupted_writes_leave_is_removed_once_stale(s3_storage: StorageSettings) -> None:
    store = s3_store(s3_storage)
    data = b"i" * (2 * PART_SIZE + 1)
    interrupted = store.new_writer(hashlib.sha256(data).hexdigest())  # cut off after 2 parts
    stream_in(interrupted, data)
    while interrupted.backlog():
        time.sleep(0.05)
    died = store.new_writer("1" * 64)  # the server died between finish and place
    stream_in(died, b"d" * (PART_SIZE + 1))
    died.finish()
    kept = store.put_bytes(b"a blob")
    assert interrupted.target is not None
    assert died.target is not None
    assert sorted(multipart_uploads(store)) == sorted([interrupted.target, died.target])

    assert store.remove_stale_temp_files(3600) == 0  # young: maybe still being written
    time.sleep(1.1)  # S3 times have whole seconds
    assert store.remove_stale_temp_files(0) == 2
    assert multipart_uploads(store) == []
    assert keys(store) == [f"keyless/blobs/sha256/{kept}"]
    interrupted.discard()  # as the upload's own clean-up would, later: no error
    died.discard()


@pytest.mark.moto_only("s3rver cannot list or abort unfinished multipart uploads")
def test_discard_drops_the_parts_sent(s3_storage: StorageSettings) -> None:
    store = s3_store(s3_storage)
    data = b"d" * (PART_SIZE + 10)
    pending = store.new_writer(hashlib.sha256(data).hexdigest())
    stream_in(pending, data)
    pending.finish()
    assert len(multipart_uploads(store)) == 1
    pending.discard()
    assert multipart_uploads(store) == []
    assert keys(store) == []


def test_place_refuses_a_write_another_store_began(
    s3_storage: StorageSettings, tmp_path: object
) -> None:
    store = s3_store(s3_storage)
    from keyless.store.blobs import LocalBlobStore

    local = LocalBlobStore(tmp_path)  # type: ignore[arg-type]
    pending = local.new_writer()
    pending.write(b"x")
    digests = pending.finish()
    with pytest.raises(TypeError, match="was not begun by this S3BlobStore"):
        store.place(pending, digests.sha256, digests.size)


def test_a_missing_bucket_or_server_is_one_line_that_says_what_to_fix(
    s3_server: S3Server,
) -> None:
    missing = StorageSettings(
        blobs="s3://no-such-bucket/x", endpoint_url=s3_server.endpoint, addressing_style="path"
    )
    with pytest.raises(ConfigError) as refused:
        open_blob_store(missing, local_folder=None)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "blob store s3://no-such-bucket/x/: the bucket 'no-such-bucket' does not exist at "
        f"{s3_server.endpoint}; create it."
    )
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = StorageSettings(blobs="s3://bucket", endpoint_url=nobody)
    with pytest.raises(ConfigError, match=f"cannot reach {nobody} .*storage.endpoint-url"):
        open_blob_store(unreachable, local_folder=None)  # type: ignore[arg-type]


@pytest.mark.s3rver_only("moto accepts any access key")
def test_credentials_the_server_does_not_know_are_one_line_that_says_what_to_fix(
    s3_server: S3Server, s3_storage: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, prefix = s3_storage.bucket_and_prefix or ("", "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody-it-knows")
    with pytest.raises(ConfigError) as refused:
        open_blob_store(s3_storage, local_folder=None)  # type: ignore[arg-type]
    assert str(refused.value) == (
        f"blob store s3://{bucket}/{prefix}: access to the bucket {bucket!r} at "
        f"{s3_server.endpoint} is denied (403); check the AWS credentials and the bucket's "
        "policy."
    )


def test_a_large_upload_streams_in_bounded_memory(
    s3_server: S3Server, s3_storage: StorageSettings
) -> None:
    store = s3_store(s3_storage)
    pending = store.new_writer("2" * 64)  # sent on the way, part by part
    size = 12 * PART_SIZE  # 96 MiB, made and sent 64 KiB at a time
    seed = hashlib.sha256()

    async def feed() -> None:
        for start in range(0, size, 64 * 1024):
            pending.write(start.to_bytes(8, "big") * 8192)
            await pending.drain()

    tracemalloc.start()
    try:
        asyncio.run(feed())
        digests = pending.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for start in range(0, size, 64 * 1024):
        seed.update(start.to_bytes(8, "big") * 8192)
    assert digests.sha256 == seed.hexdigest()
    # About four parts at most (one filling, two handed over, one being handed over), and
    # what botocore holds per request: far below the 96 MiB a buffered upload would take.
    assert peak < 6 * PART_SIZE, f"peak {peak / 2**20:.0f} MiB"
    if s3_server.lists_multipart_uploads:
        assert len(multipart_uploads(store)) == 1
    pending.discard()


def test_parts_are_sent_with_a_signed_crc32_and_completed_with_the_list_of_them(
    s3_server: S3Server, s3_storage: StorageSettings
) -> None:
    store = s3_store(s3_storage)
    sent: list[tuple[str, dict[str, str], bytes]] = []

    def record(request: Any, **_: Any) -> None:
        headers = {
            name.lower(): value if isinstance(value, str) else value.decode()
            for name, value in request.headers.items()
        }
        assert isinstance(request.body, io.BytesIO)  # the part, as botocore wraps bytes
        sent.append((request.url, headers, request.body.getvalue()))

    store.client.meta.events.register("before-send.s3.UploadPart", record)
    data = sample(2 * PART_SIZE + 100)
    sha256 = hashlib.sha256(data).hexdigest()
    pending = store.new_writer(sha256)
    stream_in(pending, data)
    pending.finish()
    assert store.place(pending, sha256, len(data)) is True

    assert [len(body) for _, _, body in sorted(sent)] == [PART_SIZE, PART_SIZE, 100]
    for _, headers, body in sent:
        # The endpoint is plain http, where botocore would hash every body for the signature.
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        assert headers["x-amz-checksum-crc32"] == crc32
        assert "x-amz-checksum-crc32" in headers["authorization"].split("SignedHeaders=")[1]
    # Completed as boto3's managed upload completes one: the server checked the parts' CRC32s
    # again and keeps a checksum of them (a CRC32 of their CRC32s), not one of the whole object.
    # A server that ignores checksums (s3rver) returns none for the parts, and the upload is
    # completed without them.
    if s3_server.keeps_checksums:
        head = store.client.head_object(
            Bucket=store.bucket, Key=store.key_for(sha256), ChecksumMode="ENABLED"
        )
        crcs = b"".join(zlib.crc32(body).to_bytes(4, "big") for _, _, body in sorted(sent))
        composite = base64.b64encode(zlib.crc32(crcs).to_bytes(4, "big")).decode()
        # S3 adds "-3" (the number of parts), moto not.
        assert head.get("ChecksumCRC32", "").partition("-")[0] == composite
    with store.open(sha256) as stored:
        assert stored.read() == data
    pending.discard()
