"""The static read path kept in a bucket prefix (`[static] bucket`), for a bucket's website
hosting or a CDN: each page an object with the type a client must get, the bytes keyless
serves, rewritten within a second of a change.

`keyless serve` runs against each test S3 server (moto's, s3rver); the objects are read back
with GetObject, whose Content-Type and Cache-Control are what a bucket website or a CDN would
answer with. Once with the blobs in a bucket of the same server (distributions are copied
inside the store), once with the blobs in the local folder (they are uploaded from it).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from keyless.config import StorageSettings
from tests.builders import build_wheel
from tests.conftest import LiveServer, start_server, stop_server
from tests.index.uploading import upload

from .s3_server import S3Server, each_s3_server, s3_server, s3_storage
from .test_s3_app import storage_env

__all__ = ["s3_server", "s3_storage"]  # the fixtures
pytest_generate_tests = each_s3_server

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
WITHIN = 1.0  # "rewritten within a second of every change"


def static_env(s3: S3Server, bucket: str) -> dict[str, str]:
    """The settings that keep the static tree under `site/` in `bucket` of the test server."""
    return {
        "KEYLESS_STATIC_BUCKET": f"s3://{bucket}/site",
        "KEYLESS_S3_ENDPOINT_URL": s3.endpoint,
        "KEYLESS_S3_REGION": "us-east-1",
        "KEYLESS_S3_ADDRESSING_STYLE": "path",
    }


def wait_for(what: str, since: float, seen: Callable[[], bool]) -> None:
    while not seen():
        if time.monotonic() - since > WITHIN:
            pytest.fail(f"{what}: not in the bucket within {WITHIN} s")
        time.sleep(0.02)
    print(f"static bucket: {what} after {(time.monotonic() - since) * 1000:.0f} ms")


class Stored:
    """An object of the tree as the store answers it (absent: status 404)."""

    def __init__(self, s3: S3Server, bucket: str, key: str) -> None:
        try:
            got = s3.client().get_object(Bucket=bucket, Key=f"site/{key}")
        except ClientError:
            self.status, self.content, self.headers = 404, b"", {}
            return
        self.status = 200
        self.content = got["Body"].read()
        self.headers = {
            "content-type": got["ContentType"],
            "cache-control": got.get("CacheControl", ""),
        }

    @property
    def text(self) -> str:
        return self.content.decode()


def check_the_tree(live: LiveServer, s3: S3Server, bucket: str, tmp: str) -> None:
    def get(key: str) -> Stored:
        return Stored(s3, bucket, key)

    token = live.token(f"owner-{tmp}", "prod")
    name = f"bucket-site-{tmp}"
    filename, data = build_wheel(name, "1.0")
    with live.client() as client:
        assert upload(client, "prod", token, filename, data).status_code == 200
        since = time.monotonic()
        page = f"prod/simple/{name}/"

        def listed() -> bool:
            answer = get(page + "index.json")
            return answer.status == 200 and filename in answer.text

        wait_for("the upload", since, listed)
        for accept, key, kind in (
            (JSON_TYPE, "index.json", JSON_TYPE),
            ("text/html", "index.html", "text/html; charset=utf-8"),
        ):
            ours = client.get(f"/{page}", headers={"Accept": accept})
            stored = get(page + key)
            assert stored.content == ours.content, key
            assert stored.headers["content-type"] == kind == ours.headers["content-type"]
            assert stored.headers["cache-control"] == ours.headers["cache-control"]
        root = get("prod/simple/index.html")
        assert root.status == 200
        assert name in root.text
        sha256 = hashlib.sha256(data).hexdigest()
        dist = get(f"files/{sha256}/{filename}")
        assert dist.content == data
        assert dist.headers["cache-control"] == "max-age=31536000, immutable"
        metadata = get(f"files/{sha256}/{filename}.metadata")
        assert metadata.content == client.get(f"/files/{sha256}/{filename}.metadata").content

        yanked = client.post(
            f"/prod/api/projects/{name}/releases/1.0/yank",
            json={"reason": "broken"},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        assert yanked.status_code == 200, yanked.text
        since = time.monotonic()

        def shows_yanked() -> bool:
            document = json.loads(get(page + "index.json").content)
            return [f["yanked"] for f in document["files"]] == ["broken"]

        wait_for("the yank", since, shows_yanked)
    assert "Traceback" not in live.log()


def test_pages_and_files_in_a_bucket_beside_the_blobs(
    s3_server: S3Server, s3_storage: StorageSettings, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    env = {**storage_env(s3_storage), **static_env(s3_server, bucket)}
    live = start_server(tmp_path / "server", env=env)
    try:
        check_the_tree(live, s3_server, bucket, "copied")
    finally:
        stop_server(live)


def test_pages_and_files_in_a_bucket_with_the_blobs_in_the_folder(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    live = start_server(tmp_path / "server", env=static_env(s3_server, bucket))
    try:
        check_the_tree(live, s3_server, bucket, "uploaded")
    finally:
        stop_server(live)


def test_a_static_bucket_that_is_not_there_stops_the_server_with_one_line(
    s3_server: S3Server, tmp_path: Path
) -> None:
    env = static_env(s3_server, "no-such-bucket")
    with pytest.raises(RuntimeError, match="no-such-bucket") as failed:
        start_server(tmp_path / "server", env=env)
    assert "Traceback" not in str(failed.value)
