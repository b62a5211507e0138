"""`StaticTarget` in a bucket prefix: the static read path for a bucket's website hosting or a
CDN in front of a bucket.

Each page is one object with the Content-Type a client must get (the PEP 691 JSON type for
`index.json`, HTML for `index.html`), written with one PUT, which S3 makes visible whole. A
store cannot choose between them by `Accept` as nginx does: website hosting serves
`index.html` for a folder URL (pip and uv read HTML), and a CDN rule may send JSON to those
who ask. An object carries the sha256 of its bytes in its metadata, so a rewrite of unchanged
bytes is one HEAD and no PUT (the ETag a CDN revalidates with stays). A distribution is a copy
of its blob made inside the store when the blobs are in a bucket of the same S3 server
(CopyObject: no byte passes through keyless), or a streamed upload of the local blob.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .blobs import BlobStore
from .s3_blobs import S3BlobStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HTML = "text/html; charset=utf-8"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
# keyless serves a .metadata file as text, as PyPI does.
METADATA = "text/plain; charset=utf-8"
DISTRIBUTION = "application/octet-stream"
# As keyless' own answers (routes/simple.py, routes/files.py): pages a minute, files forever.
PAGE_CACHE = "max-age=60, public"
FILE_CACHE = "max-age=31536000, immutable"
SHA256_KEY = "sha256"  # the object metadata holding the sha256 of its bytes


def content_type(path: str) -> tuple[str, str]:
    """(Content-Type, Cache-Control) of a tree path."""
    if path.endswith("/index.json"):
        return SIMPLE_JSON, PAGE_CACHE
    if path.endswith("/index.html"):
        return HTML, PAGE_CACHE
    if path.endswith(".metadata"):
        return METADATA, FILE_CACHE
    return DISTRIBUTION, FILE_CACHE


class BucketTarget:
    """The tree under `prefix` ("" or ending in "/") of `bucket`."""

    def __init__(self, client: S3Client, bucket: str, prefix: str, blobs: BlobStore) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._blobs = blobs

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, path: str) -> str:
        parts = path.split("/")
        # The writer builds paths from names the index validated; this is the last guard.
        if not path or any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            raise ValueError(f"not a path inside the static tree: {path!r}")
        return self.prefix + path

    def _stored_sha256(self, key: str) -> str | None:
        """The sha256 the object at `key` was written with; None when there is none."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return head.get("Metadata", {}).get(SHA256_KEY, "")

    def put(self, path: str, data: bytes) -> bool:
        key = self._key(path)
        sha256 = hashlib.sha256(data).hexdigest()
        if self._stored_sha256(key) == sha256:
            return False
        kind, cache = content_type(path)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=kind,
            CacheControl=cache,
            Metadata={SHA256_KEY: sha256},
        )
        return True

    def link_blob(self, path: str, sha256: str) -> bool:
        key = self._key(path)
        if self._stored_sha256(key) == sha256:
            return True
        extra: dict[str, Any] = {
            "ContentType": DISTRIBUTION,
            "CacheControl": FILE_CACHE,
            "Metadata": {SHA256_KEY: sha256},
        }
        blobs = self._blobs
        if isinstance(blobs, S3BlobStore) and _same_server(blobs.client, self.client):
            if not blobs.exists(sha256):
                return False  # no such blob (fsck reports it): nothing to serve
            self.client.copy_object(
                CopySource={"Bucket": blobs.bucket, "Key": blobs.key_for(sha256)},
                Bucket=self.bucket,
                Key=key,
                MetadataDirective="REPLACE",
                **extra,
            )
            return True
        try:
            source = blobs.open(sha256)
        except FileNotFoundError:
            return False
        with source:
            self.client.upload_fileobj(source, self.bucket, key, ExtraArgs=extra)
        return True

    def remove(self, path: str) -> bool:
        key = self._key(path)
        if self._stored_sha256(key) is None:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def paths(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :]


def _same_server(one: S3Client, other: S3Client) -> bool:
    return bool(one.meta.endpoint_url == other.meta.endpoint_url)
