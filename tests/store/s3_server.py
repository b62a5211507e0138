"""Real S3-speaking HTTP servers for the tests, each in its own process: moto's server mode,
and s3rver (Node, file-backed; installed by scripts/ensure-s3rver.sh), written independently of
moto, so that an assumption keyless makes that only one of them satisfies shows.

`s3_server` (session-wide) starts `python -m moto.server` on 127.0.0.1 on a free port and stops
it by its process at the end (tests/backends.py); each test gets a bucket of its own from
`s3_storage`. A test module that sets `pytest_generate_tests = each_s3_server` runs its tests
that use them against both servers (test ids `[moto]`, `[s3rver]`), but those marked
`moto_only` (with the reason: what s3rver does not implement) or `s3rver_only` (what moto
does not check). The S3 client finds its
credentials where it would in production, in the AWS variables (moto accepts any key; s3rver
is given these).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
import pytest

from keyless.config import StorageSettings
from tests.conftest import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "keyless-test",
    "AWS_SECRET_ACCESS_KEY": "keyless-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    kind: str = "moto"  # one of SERVERS

    @property
    def lists_multipart_uploads(self) -> bool:
        """Whether the unfinished multipart uploads of a bucket can be listed and aborted:
        s3rver implements neither ListMultipartUploads (NotImplemented) nor
        AbortMultipartUpload (MethodNotAllowed), so their parts stay in its folder."""
        return self.kind == "moto"

    @property
    def keeps_checksums(self) -> bool:
        """Whether an object keeps the checksum it was sent with (HeadObject's ChecksumCRC32):
        s3rver ignores the x-amz-checksum-* headers."""
        return self.kind == "moto"

    def client(self) -> S3Client:
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        name = f"keyless-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name


# Which servers `each_s3_server` runs a test against.
SERVERS = ("moto", "s3rver")
S3RVER = Path(__file__).parent / "s3rver"  # its package.json, lock file and start.js


def start_moto(port: int) -> subprocess.Popen[bytes]:
    """moto's S3 server on 127.0.0.1:`port`, once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return answering(process, f"http://127.0.0.1:{port}/moto-api/", "moto's S3 server")


def start_s3rver(port: int, directory: Path) -> subprocess.Popen[bytes]:
    """s3rver on 127.0.0.1:`port`, its buckets in `directory`, once it answers."""
    if not (S3RVER / "node_modules" / "s3rver").is_dir():
        raise RuntimeError(
            f"s3rver is not installed in {S3RVER}/node_modules: run bash scripts/ensure-s3rver.sh"
        )
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: run bash scripts/ensure-s3rver.sh")
    # s3rver ciphers the ListObjectsV2 continuation token with DES, which OpenSSL 3 keeps in
    # its legacy provider: without it a listing of over 1000 keys (its second page) is an
    # InternalError.
    process = subprocess.Popen(
        [node, "--openssl-legacy-provider", str(S3RVER / "start.js"), str(port), str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # it takes the key pair to accept from the AWS variables, as the clients do
    return answering(process, f"http://127.0.0.1:{port}/", "s3rver")  # any answer, even a 403


def answering(process: subprocess.Popen[bytes], url: str, what: str) -> subprocess.Popen[bytes]:
    """`process` once `url` answers anything (stopped, and an error, if not within 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} stopped while starting")
        try:
            httpx.get(url, timeout=1)
            return process
        except httpx.TransportError:
            if time.monotonic() > deadline:
                stop_process(process)
                raise RuntimeError(f"{what} did not start in 30 s") from None
            time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


stop_moto = stop_process


@contextmanager
def start_s3_server(kind: str = "moto") -> Iterator[S3Server]:
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"keyless-{kind}-") as directory:
        # moto keeps its buckets in memory; s3rver in files, here.
        process = start_moto(port) if kind == "moto" else start_s3rver(port, Path(directory))
        try:
            yield S3Server(f"http://127.0.0.1:{port}", process, kind)
        finally:
            stop_process(process)


def shared_s3_server() -> S3Server:
    """The session's one S3 server (also the one `start_server` puts servers on when the tests
    run on PostgreSQL + S3, tests/backends.py, which stops it at the end)."""
    from tests.backends import shared

    return shared("s3", start_s3_server)


def each_s3_server(metafunc: pytest.Metafunc) -> None:
    """As a module's `pytest_generate_tests`: its tests that use `s3_server` (or `s3_storage`)
    run against each of `SERVERS`, or only moto's when marked `moto_only` (s3rver's when
    marked `s3rver_only`)."""
    if "s3_server" in metafunc.fixturenames:
        servers = [
            kind
            for kind in SERVERS
            if all(
                metafunc.definition.get_closest_marker(f"{other}_only") is None
                for other in SERVERS
                if other != kind
            )
        ]
        metafunc.parametrize("s3_server", servers, indirect=True, scope="session")


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    kind: str = getattr(request, "param", "moto")
    if kind == "moto":
        return shared_s3_server()
    from tests.backends import shared

    return shared(kind, lambda: start_s3_server(kind))


@pytest.fixture
def s3_storage(s3_server: S3Server) -> StorageSettings:
    """Settings naming a fresh bucket (under a prefix) on the test server."""
    return StorageSettings(
        blobs=f"s3://{s3_server.new_bucket()}/keyless/blobs",
        endpoint_url=s3_server.endpoint,
        region="us-east-1",
        addressing_style="path",
    )
