"""With blobs in a bucket, each upload keeps a spool copy in the server's temp folder (where
its archive is checked): that folder filling up is a 507 that says so, and nothing of the
upload stays in the bucket — not the parts already sent, nor an object."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.config import StorageSettings
from keyless.store.s3_blobs import PART_SIZE
from tests.conftest import LiveServer, start_server, stop_server
from tests.index.test_full_disk import STORAGE_FULL, Filler, mount_tmpfs, wheel_of_size
from tests.index.uploading import upload

from .s3_server import S3Server, s3_server, s3_storage
from .test_s3_app import storage_env

__all__ = ["s3_server", "s3_storage"]  # the fixtures

MIB = 1024 * 1024
SPOOL_SIZE = 2 * PART_SIZE


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "spool"
    folder.mkdir()
    why_not = mount_tmpfs(folder, SPOOL_SIZE)
    if why_not is not None:
        pytest.skip(f"cannot mount a small temp folder: {why_not}")  # not root
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def server(tmp_path: Path, s3_storage: StorageSettings, spool: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path / "server", env={**storage_env(s3_storage), "TMPDIR": str(spool)})
    try:
        yield live
    finally:
        stop_server(live)


def test_a_full_spool_folder_is_a_507_and_leaves_nothing_in_the_bucket(
    server: LiveServer, s3_server: S3Server, s3_storage: StorageSettings, spool: Path
) -> None:
    bucket, _ = s3_storage.bucket_and_prefix or ("", "")
    s3 = s3_server.client()
    token = server.token("spool-owner", "prod")
    # Over one part: the first goes to the bucket while the spool runs out of room.
    filename, data = wheel_of_size("spool-demo", "1.0", PART_SIZE + 4 * MIB)
    filler = Filler(spool)
    filler.leave(4 * MIB)
    with server.client() as http:
        answer = upload(http, "prod", token, filename, data)
        assert answer.status_code == 507, answer.text
        assert STORAGE_FULL in answer.text
        assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert http.get("/_/health").status_code == 200  # reads go on
        filler.remove()
        assert upload(http, "prod", token, filename, data).status_code == 200
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 1
    assert list(spool.iterdir()) == []  # the spool files have no name: nothing to clean
    assert "Traceback" not in server.log()
