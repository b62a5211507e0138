"""`keyless serve` with its blobs in a bucket of a real S3-speaking server (moto's server mode,
and s3rver: tests/store/s3_server.py).

The server is configured only by `KEYLESS_BLOBS` and `KEYLESS_S3_*`, with credentials in the AWS
variables: twine uploads, the simple page lists, pip downloads and a Range request resumes
through it, a promotion re-reads the archive from the bucket, and `keyless gc` (the recorded
settings lead it to the same bucket) collects an orphan there — and the data folder holds no
blob. A bucket that is not there, or a server that does not answer, stops `keyless serve` at
start with one line that says what to fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin

import pytest

from keyless.config import StorageSettings
from keyless.store.s3_blobs import PART_SIZE
from tests.builders import build_wheel
from tests.conftest import free_port, start_server, stop_server
from tests.index.test_clients import run, twine_upload
from tests.index.test_promote import promote
from tests.index.uploading import upload

from .s3_server import S3Server, each_s3_server, s3_server, s3_storage

__all__ = ["s3_server", "s3_storage"]  # the fixtures
pytest_generate_tests = each_s3_server

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def storage_env(storage: StorageSettings) -> dict[str, str]:
    assert storage.blobs is not None
    assert storage.endpoint_url is not None
    return {
        "KEYLESS_BLOBS": storage.blobs,
        "KEYLESS_S3_ENDPOINT_URL": storage.endpoint_url,
        "KEYLESS_S3_REGION": "us-east-1",
        "KEYLESS_S3_ADDRESSING_STYLE": "path",
    }


def test_upload_list_download_promote_and_gc_with_blobs_in_a_bucket(
    s3_server: S3Server, s3_storage: StorageSettings, tmp_path: Path, env: dict[str, str]
) -> None:
    bucket, prefix = s3_storage.bucket_and_prefix or ("", "")
    s3 = s3_server.client()
    # Over one part (and incompressible): the upload streams as a multipart upload.
    noise = random.Random(12).randbytes(  # noqa: S311 (test bytes)
        PART_SIZE + 100_000
    )
    filename, data = build_wheel("s3-backend-demo", "1.0", extra_files={"m/x.bin": noise})
    assert len(data) > PART_SIZE
    sha256 = hashlib.sha256(data).hexdigest()
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / filename).write_bytes(data)

    live = start_server(tmp_path / "server", env=storage_env(s3_storage))
    try:
        token = live.token("s3-owner", "test")
        uploaded = twine_upload(live, "test", token, [tmp_path / "dist" / filename], env)
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
        listing = s3.list_objects_v2(Bucket=bucket)
        assert [o["Key"] for o in listing["Contents"]] == [f"{prefix}sha256/{sha256}"]
        assert s3.get_object(Bucket=bucket, Key=f"{prefix}sha256/{sha256}")["Body"].read() == data

        with live.client() as client:
            page = client.get("/test/simple/s3-backend-demo/", headers={"Accept": JSON_TYPE})
            (entry,) = page.json()["files"]
            url = urljoin(str(page.url), entry["url"])
            start = PART_SIZE - 10  # a resumed download, across the boundary of two parts
            part = client.get(url, headers={"Range": f"bytes={start}-"})
            assert part.status_code == 206
            assert part.content == data[start:]
            assert part.headers["content-range"] == f"bytes {start}-{len(data) - 1}/{len(data)}"

            downloaded = run(
                [
                    *(sys.executable, "-m", "pip", "download", "--no-deps", "--dest", "got"),
                    *("--index-url", f"{live.url}/test/simple/", "s3-backend-demo==1.0"),
                ],
                env,
                cwd=tmp_path,
            )
            assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
            assert (tmp_path / "got" / filename).read_bytes() == data

            # `private` has another policy than `test`: promotion reads the archive again.
            private_token = live.token("s3-owner", "private")
            promoted = promote(client, private_token, "s3-backend-demo", "1.0", to="private")
            assert promoted.status_code == 200, promoted.text
            page = client.get("/private/simple/s3-backend-demo/", headers={"Accept": JSON_TYPE})
            assert [f["hashes"]["sha256"] for f in page.json()["files"]] == [sha256]

        orphan = hashlib.sha256(b"an orphan").hexdigest()
        s3.put_object(Bucket=bucket, Key=f"{prefix}sha256/{orphan}", Body=b"an orphan")
        gc = subprocess.run(
            [sys.executable, "-m", "keyless", "gc", "--data", str(live.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ},  # no KEYLESS_BLOBS: the settings the server recorded say it
        )
        assert gc.returncode == 0, gc.stderr
        assert gc.stdout.strip() == "removed 1 orphaned file(s)"
        # The unfinished uploads it also collects: s3rver cannot list them, which gc says.
        unlisted = "the S3 server cannot list unfinished multipart uploads (NotImplemented)"
        assert (unlisted in gc.stderr) is not s3_server.lists_multipart_uploads, gc.stderr
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys == [f"{prefix}sha256/{sha256}"]

        # keyless fsck checks the same bucket: the blob's bytes are read back and hashed.
        s3.put_object(Bucket=bucket, Key=f"{prefix}sha256/{sha256}", Body=data[:-1] + b"!")
        fsck = subprocess.run(
            [sys.executable, "-m", "keyless", "fsck", "--json", "--data", str(live.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert fsck.returncode == 1, fsck.stdout + fsck.stderr
        report = json.loads(fsck.stdout)
        assert [(p["kind"], p["sha256"]) for p in report["problems"]] == [
            ("sha256-mismatch", sha256)
        ]
    finally:
        stop_server(live)
    blobs = live.data_dir / "blobs"
    assert not blobs.exists() or [p for p in blobs.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("problem", ["no bucket", "no server"])
def test_a_blob_store_that_does_not_answer_stops_the_server_with_one_line(
    s3_server: S3Server, tmp_path: Path, problem: str
) -> None:
    endpoint = s3_server.endpoint if problem == "no bucket" else f"http://127.0.0.1:{free_port()}"
    settings = StorageSettings(blobs="s3://not-created/keyless", endpoint_url=endpoint)
    started = subprocess.run(
        [
            *(sys.executable, "-m", "keyless", "serve", "--data", str(tmp_path / "data")),
            *("--port", str(free_port())),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **storage_env(settings)},
    )
    assert started.returncode == 2
    assert "Traceback" not in started.stdout + started.stderr
    expected = {
        "no bucket": f"the bucket 'not-created' does not exist at {endpoint}; create it.",
        "no server": f"cannot reach {endpoint} (",
    }[problem]
    (line,) = started.stderr.splitlines()
    assert line.startswith("error: blob store s3://not-created/keyless/: "), line
    assert expected in line, line


def test_downloads_may_be_redirected_to_presigned_urls_of_the_bucket(
    s3_storage: StorageSettings, tmp_path: Path, env: dict[str, str]
) -> None:
    filename, data = build_wheel("s3-presigned-demo", "1.0")
    sha256 = hashlib.sha256(data).hexdigest()
    server_env = {**storage_env(s3_storage), "KEYLESS_S3_PRESIGNED_DOWNLOADS": "2m"}
    live = start_server(tmp_path / "server", env=server_env)
    try:
        with live.client() as client:
            answer = upload(client, "test", live.token("s3-owner", "test"), filename, data)
            assert answer.status_code == 200, answer.text
            download = client.get(f"/files/{sha256}/{filename}")
            assert download.status_code == 307
            location = download.headers["location"]
            assert location.startswith(f"{s3_storage.endpoint_url}/")
            assert "X-Amz-Expires=120" in location
        # pip follows the redirect and gets the bytes from the bucket itself.
        downloaded = run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--dest", "got"),
                *("--index-url", f"{live.url}/test/simple/", "s3-presigned-demo==1.0"),
            ],
            env,
            cwd=tmp_path,
        )
        assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
        assert (tmp_path / "got" / filename).read_bytes() == data
    finally:
        stop_server(live)
