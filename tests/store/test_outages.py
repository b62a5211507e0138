"""A backend that stops answering under a running index: 503 naming it, then recovery.

`keyless serve` runs with its blobs in a bucket of a moto S3 server of this test's own, which is
stopped and started again on the same port while the index keeps running. Meanwhile: downloads,
uploads and /_/health answer 503 naming the blob store (never a 500 or a traceback), pages that
need only the database are still served, and once the S3 server is back the same upload goes
through without restarting keyless.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from sqlalchemy.exc import IntegrityError, OperationalError

from keyless.config import StorageSettings
from keyless.store.errors import unavailable_backend
from tests.builders import build_wheel
from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.index.uploading import upload
from tests.pg import start_postgresql

from .s3_server import CREDENTIALS, start_moto, stop_moto
from .test_s3_app import storage_env

BUCKET = "keyless-outage"
# An answer within this, though the S3 client retries: a client must not hang on an outage.
BOUNDED = 20.0


class Outage:
    def __init__(self, port: int) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process = start_moto(port)
        self.make_bucket()

    def make_bucket(self) -> None:
        boto3.session.Session().client("s3", endpoint_url=self.endpoint).create_bucket(
            Bucket=BUCKET
        )

    def stop(self) -> None:
        stop_moto(self.process)

    def restart(self) -> None:
        self.process = start_moto(self.port)
        self.make_bucket()  # moto keeps its buckets in memory: the old one is gone


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[LiveServer, Outage]]:
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    s3 = Outage(free_port())
    storage = StorageSettings(
        blobs=f"s3://{BUCKET}/blobs",
        endpoint_url=s3.endpoint,
        region="us-east-1",
        addressing_style="path",
    )
    live = start_server(tmp_path / "server", env=storage_env(storage))
    try:
        yield live, s3
    finally:
        stop_server(live)
        stop_moto(s3.process)


def timed(call: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - started


def test_the_blob_store_going_away_is_a_503_naming_it_and_the_index_recovers(
    outage: tuple[LiveServer, Outage],
) -> None:
    live, s3 = outage
    token = live.token("outage-owner", "prod")
    first_name, first = build_wheel("outage-demo", "1.0")
    second_name, second = build_wheel("outage-demo", "1.1")
    with live.client() as client:
        assert upload(client, "prod", token, first_name, first).status_code == 200
        page = client.get(
            "/prod/simple/outage-demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        file_url = page.json()["files"][0]["url"]

        s3.stop()
        download, taken = timed(lambda: client.get(file_url))
        assert download.status_code == 503, download.text
        assert "blob store is not answering" in download.text
        assert download.headers["Retry-After"] == "5"
        assert taken < BOUNDED

        refused, taken = timed(lambda: upload(client, "prod", token, second_name, second))
        assert refused.status_code == 503
        assert "blob store is not answering" in refused.text
        assert taken < BOUNDED

        health = client.get("/_/health")
        assert health.status_code == 503
        assert "blob store check failed" in health.json()["message"]
        # What needs only the database is still served.
        listed = client.get("/prod/simple/outage-demo/", headers={"Cache-Control": "no-cache"})
        assert listed.status_code == 200
        assert first_name in listed.text

        s3.restart()
        again = upload(client, "prod", token, second_name, second)
        assert again.status_code == 200, again.text
        assert client.get("/_/health").status_code == 200
        simple = client.get("/prod/simple/outage-demo/").text
        assert second_name in simple
    log = live.log()
    assert "Traceback" not in log
    assert "the blob store is not answering: EndpointConnectionError" in log


def disk_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL
    return error


def client_error(status: int, code: str) -> Exception:
    return ClientError(
        {
            "Error": {"Code": code},
            # botocore fills all five; the store reads the status only.
            "ResponseMetadata": {
                "RequestId": "",
                "HostId": "",
                "HTTPStatusCode": status,
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        "GetObject",
    )


@pytest.mark.parametrize(
    ("error", "which"),
    [
        (
            OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
            "database",
        ),
        (OperationalError("INSERT", {}, disk_full()), None),
        (IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")), None),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "blob store"),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), "blob store"),
        (client_error(503, "SlowDown"), "blob store"),
        (client_error(500, "InternalError"), "blob store"),
        (client_error(404, "NoSuchKey"), None),
        (client_error(403, "AccessDenied"), None),
        (ValueError("a bug"), None),
    ],
)
def test_which_errors_are_a_backend_not_answering(error: Exception, which: str | None) -> None:
    assert unavailable_backend(error) == which


def test_postgresql_going_away_is_a_503_naming_the_database_and_the_index_recovers(
    tmp_path: Path,
) -> None:
    with start_postgresql() as pg:  # a server of this test's own, to stop and start again
        live = start_server(
            tmp_path / "server", env={"KEYLESS_DATABASE_URL": pg.new_database("outage")}
        )
        try:
            token = live.token("outage-owner", "prod")
            first_name, first = build_wheel("pg-outage", "1.0")
            second_name, second = build_wheel("pg-outage", "1.1")
            with live.client() as client:
                assert upload(client, "prod", token, first_name, first).status_code == 200
                pg.stop()
                refused, taken = timed(lambda: upload(client, "prod", token, second_name, second))
                assert refused.status_code == 503, refused.text
                assert "database is not answering" in refused.text
                assert taken < BOUNDED
                # A page it had in memory cannot be known to be current: not served either.
                page, taken = timed(lambda: client.get("/prod/simple/pg-outage/"))
                assert page.status_code == 503
                assert taken < BOUNDED
                health = client.get("/_/health")
                assert health.status_code == 503
                assert "database check failed" in health.json()["message"]

                pg.start_again()
                again = upload(client, "prod", token, second_name, second)
                assert again.status_code == 200, again.text
                assert client.get("/_/health").status_code == 200
                assert second_name in client.get("/prod/simple/pg-outage/").text
        finally:
            stop_server(live)
        log = live.log()
        assert "Traceback" not in log
        assert "the database is not answering: OperationalError" in log
