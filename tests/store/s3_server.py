"""A real S3-speaking HTTP server for the tests: moto's server mode, in its own process.

`s3_server` (session-wide) starts `python -m moto.server` on 127.0.0.1 on a free port and stops
it by its process at the end (tests/backends.py); each test gets a bucket of its own from
`s3_storage`. The S3 client finds its credentials where it would in production, in the AWS
variables, which point at moto's (any key is accepted).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

    def client(self) -> S3Client:
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        name = f"keyless-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name


def start_moto(port: int) -> subprocess.Popen[bytes]:
    """moto's S3 server on 127.0.0.1:`port`, once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError("moto's S3 server stopped while starting")
        try:
            httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return process
        except httpx.TransportError:
            if time.monotonic() > deadline:
                stop_moto(process)
                raise RuntimeError("moto's S3 server did not start in 30 s") from None
            time.sleep(0.1)


def stop_moto(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def start_s3_server() -> Iterator[S3Server]:
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    port = free_port()
    process = start_moto(port)
    try:
        yield S3Server(f"http://127.0.0.1:{port}", process)
    finally:
        stop_moto(process)


def shared_s3_server() -> S3Server:
    """The session's one S3 server (also the one `start_server` puts servers on when the tests
    run on PostgreSQL + S3, tests/backends.py, which stops it at the end)."""
    from tests.backends import shared

    return shared("s3", start_s3_server)


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    return shared_s3_server()


@pytest.fixture
def s3_storage(s3_server: S3Server) -> StorageSettings:
    """Settings naming a fresh bucket (under a prefix) on the test server."""
    return StorageSettings(
        blobs=f"s3://{s3_server.new_bucket()}/keyless/blobs",
        endpoint_url=s3_server.endpoint,
        region="us-east-1",
        addressing_style="path",
    )
