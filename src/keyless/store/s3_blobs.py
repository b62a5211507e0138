"""`BlobStore` in an S3 bucket (AWS or any S3-compatible server: MinIO, Ceph, R2, ...).

Layout under the configured prefix: blobs at `sha256/<hexdigest>`, nothing else. An upload is
hashed and spooled to a local temp file as it arrives and, when the form named its sha256
before the file (as twine, uv and keyless publish do), sent on the way as the parts of a
multipart upload of that final key. S3 shows a multipart upload to no reader until it is
completed, which only `place` does, once the caller has checked the digests: no reader ever
sees a blob under `sha256/` that was not checked, nor half of one, and nothing is copied
inside the bucket afterwards. An upload that named no sha256 is sent whole by `place`, from the
spool. The parts an interrupted upload left (an unfinished multipart upload) are aborted by
`remove_stale_temp_files` once they have not been written to for the given age (on a server
that can list them: s3rver cannot).

What the design is for, measured (bench scenario 10: a 200 MB wheel over HTTP into
`keyless serve`, against boto3 putting the file straight into the same moto S3 server, moto on
a core of its own): keyless sent it at 0.34x boto3's speed when it streamed into a temp key,
copied that to the final key (1.4 s of moto's time) and read the archive back with ranged
GETs (12 of them, 2 s); at 0.61-0.66x once it did neither. Then the parts went with their
CRC32 and without a second SHA-256 of every byte for the signature (`from_settings`), and
the upload was begun and completed with their CRC32s, as boto3's managed upload does
(`CHECKSUM`). On a machine shared with four other benchmarks (load 12-18 on its 2
cores: every figure here moves by tens of percent from run to run), medians of 3 runs before
and of 4, then 3 after: keyless's CPU per 200 MB 3.8 → 2.1, 2.4 s, moto's for it 7.2 → 2.6,
3.4 s (for boto3's own upload: 2.6, 2.7 s), the ratio 0.53x → 0.69x, 0.58x: short of 0.7x
when boto3 had the better share of the machine. On the idle machine (bench/README.md, three
runs of 5-7 uploads each): 0.69x, 0.80x and 1.00x, keyless 1.6-3.1 CPU-s per 200 MB.
What keyless still spends, measured apart: three digests of every byte (md5 0.33, blake2b 0.26,
sha256 0.14 CPU-s per 200 MB here; all three needed, each on a thread of its own), the event
loop receiving the body (0.3-0.45: uvloop and httptools hand over ~250 KiB at a time; the form
parser's part is 0.06), botocore sending the parts (0.25; a 1 MiB socket block instead of
urllib3's 16 KiB saved 0.03: not kept), and the spool (0.1-0.8: what writing 200 MB to a file
costs varies with the machine's load).

The spool stays even when the parts go straight to their key: S3 lets nobody read an
unfinished multipart upload, and the upload reads its archive before the row is committed (a
wheel's central directory and members, an sdist from end to end), then may need it to put the
blob back (`place`).

Why boto3: it is the reference S3 client, maintained by AWS, speaks to every S3-compatible
server (endpoint URL, path or virtual addressing, the standard credential chain: the AWS
variables, profiles, instance roles), and its low-level client lets the upload hand each part
over as soon as it has arrived — the managed `upload_fileobj` would need a file-like object to
pull from, which an ASGI body (pushed at us) is not without a pipe and a thread per upload.
Measured against the alternatives on their own (bench scenario 13: 200 MB pushed in 64 KiB
chunks, 8 MiB parts, 3 in flight, into moto): boto3 61 MB/s and +65 MB; obstore (Rust
object_store) 76 MB/s and +33 MB; aioboto3 58 MB/s and +87 MB. obstore is faster and leaner
alone, but in the upload above the client's part is small next to the digests and the S3
server (keyless uses 2.1-2.4 CPU-s per 200 MB in all, its threads sending parts a fraction of
that), so the switch — this one class — would buy little of the gap; it stays the first thing
to measure should a faster S3 server make the client matter.

Why 8 MiB parts: S3 wants parts of at least 5 MiB (but the last) and at most 10,000 of them;
8 MiB (boto3's own default) allows 80 GB files and keeps the memory of one upload bounded by
about four parts (one filling, at most `blobs.MAX_BACKLOG`, 16 MiB = two, handed to the
threads, one more being handed over), ~32 MiB however large the file: the server's peak RSS
grew by 25-43 MB per 200 MB upload in scenario 10. 3 parts in parallel with a backlog of 2
streamed 200 MB into moto in 1.8 s where 2 parts and a backlog of 1 took 2.6 s; 4 parts and a
backlog of 3 (tried again with the checksums above: +33-47 MB, no faster), or 5 MiB parts,
were no faster.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeGuard, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from keyless.config import ConfigError, StorageSettings
from keyless.store.blobs import (
    BlobRedirect,
    BlobStream,
    Digests,
    LocalStream,
    PendingBlob,
    StreamedWrite,
    full_disk_as_storage_full,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, MultipartUploadTypeDef

AddressingStyle = Literal["auto", "virtual", "path"]  # as config.ADDRESSING_STYLES checks
MIB = 1024 * 1024
PART_SIZE = 8 * MIB
# botocore says at INFO where it found credentials, on every start of `keyless serve` (whose
# log is at INFO): noise, and the name of a profile is nobody's business in a server log.
logging.getLogger("botocore.credentials").setLevel(logging.WARNING)
log = logging.getLogger(__name__)

# Parts of one upload sent at once (measured: 3 stream 200 MB into moto 30% faster than 2).
PARALLEL_PARTS = 3
# The checksum of every part, and of the object made of them, as boto3's managed upload
# sends it (`place` uses that): the upload is begun with it, each part sent with its CRC32
# (which the server checks on arrival), and completed with the list of them, which the server
# checks again and keeps as the object's checksum (COMPOSITE: a CRC32 of the parts' CRC32s).
# Begun without it, an S3 server may compute a checksum of the whole object at completion
# instead: moto copies the 200 MB of bench scenario 10 once more for a CRC of it, and its
# completion took 3.0-5.0 s where it takes 1.3-2.3 s now (boto3's own upload: 1.3-2.4 s).
CHECKSUM: Literal["CRC32"] = "CRC32"
# How `place` sends a spool file whole: as the early upload would have.
TRANSFER = TransferConfig(
    multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=PARALLEL_PARTS
)


class S3Pending(StreamedWrite):
    """A streamed write: hashed and spooled to a local temp file as it arrives, and sent to the
    bucket on the way when the key it will live under is known in advance.

    A blob's key is its sha256, certain only once the last byte is in. An upload form names
    the sha256 it sends before the file (twine, uv and keyless publish do), so the parts go
    straight into a multipart upload of that key — which S3 shows to no reader until it is
    completed, by `place`, after the caller has checked the digests. Nothing is copied inside
    the bucket afterwards: a copy of a 200 MB object took as long as its upload (1.4 s in
    moto), and S3 bills a copy as a second write. Without an expected sha256 (or if it is not
    the one computed), `place` sends the spool file instead.

    The spool file (unnamed, gone with the process) is what `open` reads: an upload checks its
    archive there, where each seek into S3 would be a ranged GET (12 of them for a 200 MB
    wheel, 2 s of moto's time). It also lets `place` put a blob back that garbage collection
    took before the upload's row was committed.

    The pieces are `PART_SIZE` parts (`StreamedWrite` hashes and spools them); each also
    goes to one of `PARALLEL_PARTS` threads that upload them.
    """

    def __init__(
        self, store: S3BlobStore, expected_sha256: str | None, sha256_only: bool = False
    ) -> None:
        super().__init__(PART_SIZE, sha256_only)
        self.store = store
        self.finished = False
        self.target = store.key_for(expected_sha256) if _is_sha256(expected_sha256) else None
        # Unnamed (O_TMPFILE): nothing to collect after a crash. Created by the first `_keep`,
        # on a worker thread (a file costs the event loop ~0.2 ms); closed by `discard`.
        self._spool: BinaryIO | None = None
        # The early multipart upload: None while not begun, or when the target is stored.
        self._upload_id: Future[str | None] | None = None
        self._parts: list[Future[CompletedPartTypeDef | None]] = []
        self._completed = False
        self._upload_lane: ThreadPoolExecutor | None = None

    # -- PendingBlob

    def finish(self) -> Digests:
        """Spool and send what is left (the early upload stays open); the digests. Blocking."""
        try:
            self._settle()
            assert self._spool is not None  # created by the first `_keep`, even of nothing
            with full_disk_as_storage_full():
                self._spool.flush()
        except BaseException:
            self.discard()
            raise
        self.finished = True
        return self._digests()

    def discard(self) -> None:
        """Drop the spool file and abort the early upload unless completed (idempotent)."""
        self._stop_lanes()
        self.abandon_upload()
        if self._spool is not None:
            self._spool.close()

    def open(self) -> BinaryIO:
        """The finished bytes, read from the spool file."""
        assert self._spool is not None, "finish() first"
        stream = LocalStream(os.dup(self._spool.fileno()), self.size)
        return io.BufferedReader(RangeReader(stream), 1 * MIB)

    # -- what `S3BlobStore.place` does with it

    def complete_upload(self, key: str) -> bool:
        """Make the early upload the object `key`, if it was sent there; False otherwise."""
        if self._completed or self.target != key or self._upload_id is None:
            return False
        upload_id = self._upload_id.result()
        parts = [part.result() for part in self._parts]
        if upload_id is None or None in parts:
            return False  # the target was stored when the upload began: nothing was sent
        self.store.client.complete_multipart_upload(
            Bucket=self.store.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [part for part in parts if part is not None]},
        )
        self._completed = True
        return True

    def abandon_upload(self) -> None:
        """Abort the early upload, unless completed or never begun (idempotent)."""
        upload, self._upload_id = self._upload_id, None
        if self._completed or upload is None or not upload.done() or upload.cancelled():
            return  # `discard` stops the lanes first, so an unfinished begin was cancelled
        if upload.exception() is not None or (upload_id := upload.result()) is None:
            return
        # The store unreachable: `remove_stale_temp_files` collects the parts later.
        with contextlib.suppress(BotoCoreError, ClientError):
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.target or "", UploadId=upload_id
            )

    # -- StreamedWrite

    def _keep(self, data: bytes) -> None:
        with full_disk_as_storage_full():
            if self._spool is None:
                self._spool = tempfile.TemporaryFile(prefix="keyless-upload-")  # noqa: SIM115
            self._spool.write(data)

    def _also(self, data: bytes) -> list[Future[Any]]:
        if self.target is None:
            return []
        if self._upload_lane is None:
            self._upload_lane = ThreadPoolExecutor(PARALLEL_PARTS, thread_name_prefix="s3-part")
        if self._upload_id is None:
            self._upload_id = self._upload_lane.submit(self._begin, self.target)
        part = self._upload_lane.submit(self._upload_part, len(self._parts) + 1, data)
        self._parts.append(part)
        return [part]

    def _stop_lanes(self) -> None:
        super()._stop_lanes()
        if self._upload_lane is not None:
            self._upload_lane.shutdown(wait=True, cancel_futures=True)
            self._upload_lane = None

    # -- the part uploads

    def _begin(self, key: str) -> str | None:
        if self.store.size_of(key) is not None:
            return None  # stored already (a re-upload): `place` checks it, nothing to send
        created = self.store.client.create_multipart_upload(
            Bucket=self.store.bucket, Key=key, ChecksumAlgorithm=CHECKSUM
        )
        return created["UploadId"]

    def _upload_part(self, number: int, data: bytes) -> CompletedPartTypeDef | None:
        assert self._upload_id is not None
        assert self.target is not None
        upload_id = self._upload_id.result()
        if upload_id is None:
            return None
        sent = self.store.client.upload_part(
            Bucket=self.store.bucket,
            Key=self.target,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm=CHECKSUM,
        )
        part: CompletedPartTypeDef = {"PartNumber": number, "ETag": sent["ETag"]}
        # A server that does not implement S3's additional checksums (s3rver) ignores the
        # part's and answers none: the part is then completed by its ETag alone, as boto3's
        # managed upload does. (Read as always there, it failed every upload over one part
        # whose sha256 was named in advance.)
        if "ChecksumCRC32" in sent:
            part["ChecksumCRC32"] = sent["ChecksumCRC32"]
        return part


class S3BlobStore:
    """`BlobStore` in `bucket` under `prefix` ("" or ending in "/")."""

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", presign_seconds: int = 0
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.presign_seconds = presign_seconds
        self.description = f"s3://{bucket}/{prefix}"
        self._said_unlisted = False  # `_unfinished_uploads` warns once per store

    @classmethod
    def from_settings(cls, storage: StorageSettings) -> S3BlobStore:
        """The store `storage` names, checked: raises ConfigError with one line to fix it."""
        bucket_and_prefix = storage.bucket_and_prefix
        assert bucket_and_prefix is not None, "not an s3:// setting"
        bucket, prefix = bucket_and_prefix
        config = Config(
            region_name=storage.region,
            s3={
                "addressing_style": cast(AddressingStyle, storage.addressing_style),
                # A body is sent with a CRC32 of it (botocore's default checksum, in a header
                # the signature covers), which the S3 server checks: a part damaged on the
                # way is refused. Without this, botocore also signs a SHA-256 of every body
                # when the endpoint is plain http (a fourth digest of every byte: 0.2 of
                # keyless's ~3 CPU-s per 200 MB upload). What that hash adds over the CRC32
                # is proof against someone who rewrites the traffic to the store, and over
                # plain http they can read and rewrite the downloads as well, which nothing
                # signs; over https botocore already sends uploads unsigned with a checksum.
                "payload_signing_enabled": False,
            },
            signature_version="s3v4",  # presigned URLs too: SigV2 is retired on AWS
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=storage.endpoint_url, config=config
        )
        store = cls(client, bucket, prefix, storage.presigned_downloads)
        store.check(storage.endpoint_url or "AWS S3")
        return store

    def check(self, where: str) -> None:
        """Raise ConfigError, saying what to fix, unless the bucket answers."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise ConfigError(
                f"blob store {self.description}: no AWS credentials found; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for the server."
            ) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket"):
                problem = f"the bucket {self.bucket!r} does not exist at {where}; create it"
            elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                problem = f"access to the bucket {self.bucket!r} at {where} is denied ({code}); "
                problem += "check the AWS credentials and the bucket's policy"
            else:
                problem = f"the bucket {self.bucket!r} at {where} answered {code or exc}"
            raise ConfigError(f"blob store {self.description}: {problem}.") from None
        except BotoCoreError as exc:
            raise ConfigError(
                f"blob store {self.description}: cannot reach {where} ({exc}); check "
                "storage.endpoint-url and that the server is up."
            ) from None

    def key_for(self, sha256: str) -> str:
        return f"{self.prefix}sha256/{sha256}"

    def new_writer(
        self, expected_sha256: str | None = None, *, sha256_only: bool = False
    ) -> S3Pending:
        return S3Pending(self, expected_sha256, sha256_only)

    def place(self, pending: PendingBlob, sha256: str, size: int) -> bool:
        """Complete the early upload of `pending` as the blob, or send its spool file there,
        unless an intact blob is there already."""
        if not isinstance(pending, S3Pending) or pending.store is not self:
            raise TypeError(f"{type(pending).__name__} was not begun by this S3BlobStore")
        key = self.key_for(sha256)
        if self.exists(sha256, size):
            pending.abandon_upload()
            return False
        if not pending.complete_upload(key):
            pending.abandon_upload()
            with pending.open() as spooled:
                # Parts of `PART_SIZE`, `PARALLEL_PARTS` at a time, as the early upload.
                self.client.upload_fileobj(spooled, self.bucket, key, Config=TRANSFER)
        return True

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.exists(sha256, len(data)):
            self.client.put_object(Bucket=self.bucket, Key=self.key_for(sha256), Body=data)
        return sha256

    def exists(self, sha256: str, size: int | None = None) -> bool:
        stored = self.size_of(self.key_for(sha256))
        return stored is not None and size in (None, stored)

    def open(self, sha256: str) -> BinaryIO:
        key = self.key_for(sha256)
        size = self.size_of(key)
        if size is None:
            raise FileNotFoundError(f"{self.description}sha256/{sha256}")
        return self.reader(key, size)

    def reader(self, key: str, size: int) -> BinaryIO:
        """A seekable reader of `key` that fetches what is read with ranged GETs."""
        return io.BufferedReader(
            RangeReader(S3Stream(self.client, self.bucket, key, size)), 1 * MIB
        )

    def serve(self, sha256: str) -> S3Stream | BlobRedirect | None:
        key = self.key_for(sha256)
        if self.presign_seconds:
            if self.size_of(key) is None:
                return None
            url = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.presign_seconds,
            )
            return BlobRedirect(url)
        # One GET of the whole object tells the size; a download from the start reads it
        # on, a range opens another GET from there (S3Stream.read).
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        stream = S3Stream(self.client, self.bucket, key, answer["ContentLength"])
        stream.body = answer["Body"]
        return stream

    def iter_keys(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}sha256/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"].rpartition("/")[2]

    def remove(self, sha256: str) -> bool:
        # S3's DELETE succeeds whether or not the key is there: ask first.
        if not self.exists(sha256):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))
        return True

    def remove_stale_temp_files(self, min_age_seconds: float) -> int:
        """Abort the multipart uploads under this store's keys that were begun and last
        written to over `min_age_seconds` ago (an upload in progress sends a part at least
        every `PART_SIZE`): what an upload cut off, refused or crashed left in the bucket.
        The spool files need nothing: they have no name, and go with their process."""
        cutoff = datetime.now(UTC) - timedelta(seconds=min_age_seconds)
        removed = 0
        for upload in self._unfinished_uploads():
            if upload["Initiated"] >= cutoff:
                continue
            parts = self.client.list_parts(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            ).get("Parts", [])
            if any(part["LastModified"] >= cutoff for part in parts):
                continue  # a slow upload still sending
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            removed += 1
        return removed

    def _unfinished_uploads(self) -> list[MultipartUploadTypeDef]:
        """The multipart uploads begun under this store's keys and not completed or aborted;
        none when the server cannot list them (said once in the log)."""
        listings = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}sha256/"
        )
        try:
            return [upload for listing in listings for upload in listing.get("Uploads", [])]
        except ClientError as exc:
            # Some S3-compatible servers do not implement this listing (s3rver answers
            # NotImplemented). Garbage collection, which asks first, runs at every start of
            # `keyless serve`: failing here stopped the server, and left the orphaned blobs,
            # which the rest of the collection removes, where they were.
            code = exc.response.get("Error", {}).get("Code", "")
            if code != "NotImplemented":
                raise
            if not self._said_unlisted:
                self._said_unlisted = True
                log.warning(
                    "blob store %s: the S3 server cannot list unfinished multipart uploads "
                    "(%s): those that interrupted uploads leave stay until a lifecycle rule "
                    "of the bucket (AbortIncompleteMultipartUpload) removes them",
                    self.description,
                    code,
                )
            return []

    def size_of(self, key: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise


class S3Stream:
    """A blob read for download: sequential reads go on from one GET; a read elsewhere (a
    Range request) starts another GET at its offset."""

    def __init__(self, client: S3Client, bucket: str, key: str, size: int) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.size = size
        self.body: Any = None  # botocore's StreamingBody, at `position`
        self.position = 0
        self._lock = threading.Lock()

    def read(self, offset: int, length: int) -> bytes:
        with self._lock:
            if self.body is None or offset != self.position:
                self._close_body()
                answer = self.client.get_object(
                    Bucket=self.bucket, Key=self.key, Range=f"bytes={offset}-"
                )
                self.body = answer["Body"]
                self.position = offset
            chunks: list[bytes] = []
            wanted = length
            while wanted > 0:
                chunk = self.body.read(wanted)
                if not chunk:
                    break
                chunks.append(chunk)
                wanted -= len(chunk)
            data = b"".join(chunks)
            self.position += len(data)
            return data

    def close(self) -> None:
        with self._lock:
            self._close_body()

    def _close_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None


class RangeReader(io.RawIOBase):
    """A seekable raw file over a `BlobStream`. Over an `S3Stream`, reading on from where the
    last read ended goes on with the same GET (fsck and export read a blob through from start
    to end), a seek elsewhere starts another."""

    def __init__(self, stream: BlobStream) -> None:
        self.stream = stream
        self.size = stream.size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readall(self) -> bytes:
        return self._read(self.size - self.position)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.stream.close()
        super().close()

    def _read(self, length: int) -> bytes:
        if length <= 0 or self.position >= self.size:
            return b""
        data = self.stream.read(self.position, length)
        self.position += len(data)
        return data


def _is_sha256(text: str | None) -> TypeGuard[str]:
    return text is not None and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound")
