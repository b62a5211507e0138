"""`read_upload_form` tells the blob store the sha256 a client names before its file, so a
store can send the bytes where they will live while they arrive (tests/store/test_s3_blobs.py
shows what the S3 store does with it)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from keyless.index.multipart import read_upload_form
from tests.store.memory_blobs import MemoryBlobStore, MemoryPending

BOUNDARY = "x-keyless-test"


class RecordingStore(MemoryBlobStore):
    def __init__(self) -> None:
        super().__init__()
        self.expected: list[str | None] = []

    def new_writer(
        self, expected_sha256: str | None = None, *, sha256_only: bool = False
    ) -> MemoryPending:
        self.expected.append(expected_sha256)
        return super().new_writer(expected_sha256, sha256_only=sha256_only)


def body(parts: list[tuple[str, str | bytes]]) -> bytes:
    out = b""
    for name, value in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        if isinstance(value, bytes):
            disposition = f'form-data; name="{name}"; filename="a-1.0.tar.gz"'
            out += f"Content-Disposition: {disposition}\r\n".encode()
            out += b"Content-Type: application/octet-stream\r\n\r\n" + value + b"\r\n"
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return out + f"--{BOUNDARY}--\r\n".encode()


def read(store: RecordingStore, raw: bytes) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 100):
            yield raw[start : start + 100]

    form = asyncio.run(
        read_upload_form(
            f"multipart/form-data; boundary={BOUNDARY}", chunks(), store, max_file_size=10**6
        )
    )
    assert form.file is not None
    form.file.discard()


FILE = b"sdist bytes " * 50
SHA256 = hashlib.sha256(FILE).hexdigest()


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        # twine, uv and keyless publish: the digests first, in either case.
        ([("name", "a"), ("sha256_digest", SHA256), ("content", FILE)], SHA256),
        ([("sha256_digest", SHA256.upper()), ("content", FILE)], SHA256),
        # Named only after the file, or not at all: the store learns it at `place`.
        ([("content", FILE), ("sha256_digest", SHA256)], None),
        ([("name", "a"), ("content", FILE)], None),
        ([("sha256_digest", ""), ("content", FILE)], None),
    ],
    ids=["first", "upper-case", "after-the-file", "absent", "empty"],
)
def test_the_store_hears_the_sha256_named_before_the_file(
    parts: list[tuple[str, str | bytes]], expected: str | None
) -> None:
    store = RecordingStore()
    read(store, body(parts))
    assert store.expected == [expected]
