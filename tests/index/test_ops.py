"""/_/health and /_/metrics on a live server: real damage makes health say which part failed,
and the counters, parsed by Prometheus' own parser, count what the tests did."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keyless.ci.emulator import Emulator
from keyless.index.metrics import ROUTE_CLASSES, route_class
from tests.builders import build_wheel
from tests.conftest import AUDIENCE, LiveServer, start_server, stop_server
from tests.index.test_trusted_publishing import add_github_publisher, job, mint
from tests.index.uploading import upload

# ---------------------------------------------------------------------------------- health


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "server")
    yield server
    stop_server(server)


def health(server: LiveServer) -> httpx.Response:
    with server.client() as client:
        return client.get("/_/health", timeout=30)


def wait_healthy(server: LiveServer, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while (answer := health(server)).status_code != 200:
        assert time.monotonic() < deadline, f"not healthy again: {answer.text}"
        time.sleep(0.2)


def test_health_names_what_it_checked(live: LiveServer) -> None:
    answer = health(live)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "blob store": "ok"}
    assert body["indexes"] == ["private", "prod", "test", "tiny"]  # SERVER_CONFIG's


@pytest.mark.local_only  # a temp folder replaced by a file
def test_health_fails_when_the_blob_store_cannot_be_written(live: LiveServer) -> None:
    # Root ignores permissions, so the store's temp folder becomes a file: every upload's
    # first write fails there exactly as on a broken or read-only disk.
    temp_folder = live.data_dir / "blobs" / "tmp"
    shutil.rmtree(temp_folder)
    temp_folder.write_text("not a folder")
    answer = health(live)
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["blob store"] == "failed: NotADirectoryError: Not a directory"
    assert body["message"] == "blob store check failed: NotADirectoryError: Not a directory"
    assert str(live.data_dir) not in answer.text  # the path is for the log only
    log = live.log()
    assert "Traceback" not in log
    logged = "health check: blob store failed: NotADirectoryError: [Errno 20] Not a directory"
    assert f"{logged}: '{temp_folder}/" in log

    temp_folder.unlink()
    temp_folder.mkdir()
    wait_healthy(live)


@pytest.mark.local_only  # SQLite's WAL locks
def test_health_fails_in_bounded_time_when_the_database_is_locked(live: LiveServer) -> None:
    # What a wedged process holding SQLite's WAL locks looks like to the server: every read
    # waits for the locks (bytes 120-127 of the -shm file, POSIX locks as SQLite takes them).
    database = live.database
    assert isinstance(database, Path)  # the SQLite file (local_only)
    shm = os.open(database.with_name("keyless.db-shm"), os.O_RDWR)
    try:
        fcntl.lockf(shm, fcntl.LOCK_EX | fcntl.LOCK_NB, 8, 120)
        started = time.monotonic()
        answer = health(live)
        took = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["checks"]["database"] == "failed: no answer within 3 s"
        assert body["checks"]["blob store"] == "ok"
        assert body["message"] == "database check failed: no answer within 3 s"
        assert took < 8, f"health took {took:.1f} s"  # bounded: not the 10 s busy timeout
        assert "health check: database: no answer within 3 s" in live.log()
    finally:
        fcntl.lockf(shm, fcntl.LOCK_UN, 8, 120)
        os.close(shm)
    wait_healthy(live)


# --------------------------------------------------------------------------------- metrics


# `tp_server` (tests/index/conftest.py) is this module's own, so the counters count only
# what these tests did.


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> Samples:
    answer = client.get("/_/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        if family.name == "keyless_process_id":  # which worker answered: a gauge, not a count
            assert family.type == "gauge"
            continue
        assert family.type == "counter", family.name
        assert "per process" in family.documentation, family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests(samples: Samples, route: str, status: str) -> float:
    return samples[("keyless_requests_total", (("route", route), ("status", status)))]


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/prod/simple/", "simple"),
        ("/prod/simple/demo/", "simple"),
        ("/prod/legacy/+simple/demo/", "simple"),
        ("/prod/legacy/", "upload"),
        ("/prod/legacy", "upload"),
        ("/prod/legacy/demo/1.0/", "web"),
        ("/prod/pypi/demo/json", "json"),
        ("/files/" + "a" * 64 + "/demo-1.0.tar.gz", "files"),
        ("/_/oidc/mint-token", "oidc"),
        ("/_/oidc/prod/dry-run", "oidc"),
        ("/.well-known/pytp/abc", "oidc"),
        ("/_/health", "other"),
        ("/_/metrics", "other"),
        ("/+client/", "other"),
        ("/prod/api/projects/demo/status", "other"),
        ("/", "web"),
        ("/prod/", "web"),
        ("/prod/project/demo/", "web"),
        ("/static/keyless.css", "web"),
    ],
)
def test_route_classes(path: str, route: str) -> None:
    assert ROUTE_CLASSES[route_class(path)] == route


def delta(before: Samples, after: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        key: value - before.get(key, 0)
        for key, value in after.items()
        if value != before.get(key, 0)
    }


def test_metrics_count_requests_uploads_mints_and_cache(
    tp_server: LiveServer, emulator: Emulator
) -> None:
    with tp_server.client() as client:
        token = tp_server.token("metrics-owner", "prod")
        filename, data = build_wheel("metrics-demo", "1.0")
        assert upload(client, "prod", token, filename, data).status_code == 200
        add_github_publisher(tp_server, emulator, "metrics-demo")
        before = scrape(client)

        uploaded = upload(client, "prod", token, *build_wheel("metrics-demo", "1.1"))
        assert uploaded.status_code == 200, uploaded.text
        refused = upload(client, "prod", "keyless-wrong", *build_wheel("metrics-demo", "1.2"))
        assert refused.status_code == 403, refused.text
        page = client.get("/prod/simple/metrics-demo/")  # rendered: the upload dropped it
        assert page.status_code == 200
        assert client.get("/prod/simple/metrics-demo/").status_code == 200  # from memory
        etag = page.headers["etag"]
        assert (
            client.get("/prod/simple/metrics-demo/", headers={"If-None-Match": etag}).status_code
            == 304
        )
        assert client.get("/prod/simple/no-such-project/").status_code == 404
        # hatch's path to the same page goes through the router: a hit all the same.
        assert client.get("/prod/legacy/+simple/metrics-demo/").status_code == 200
        link = page.text.split('href="')[1].split("#")[0]
        assert client.get(link).status_code == 200
        assert client.get("/prod/pypi/metrics-demo/json").status_code == 200
        assert client.get("/help/").status_code == 200
        assert client.get("/_/health").status_code == 200
        assert mint(client, emulator.token(AUDIENCE, job())).status_code == 200
        assert mint(client, emulator.token(AUDIENCE, job(repo="octo-org/other"))).status_code == 422
        assert client.post("/_/oidc/mint-token", content=b"not json").status_code == 422
        after = scrape(client)

    changed = delta(before, after)
    upload_bytes = changed.pop(("keyless_upload_bytes_total", ()))
    # The multipart bodies of both uploads: the files plus their forms.
    assert upload_bytes > 2 * len(data)
    # The database's transactions: the upload and the mint wrote, the pages read.
    assert changed.pop(("keyless_db_transactions_total", (("mode", "write"),))) >= 2
    assert changed.pop(("keyless_db_transactions_total", (("mode", "read"),))) >= 1
    assert changed == {
        ("keyless_requests_total", (("route", "upload"), ("status", "2xx"))): 1,
        ("keyless_requests_total", (("route", "upload"), ("status", "4xx"))): 1,
        ("keyless_requests_total", (("route", "simple"), ("status", "2xx"))): 3,
        ("keyless_requests_total", (("route", "simple"), ("status", "3xx"))): 1,
        ("keyless_requests_total", (("route", "simple"), ("status", "4xx"))): 1,
        ("keyless_requests_total", (("route", "files"), ("status", "2xx"))): 1,
        ("keyless_requests_total", (("route", "json"), ("status", "2xx"))): 1,
        ("keyless_requests_total", (("route", "web"), ("status", "2xx"))): 1,
        # The health check, and the first scrape (counted once it was answered).
        ("keyless_requests_total", (("route", "other"), ("status", "2xx"))): 2,
        ("keyless_requests_total", (("route", "oidc"), ("status", "2xx"))): 1,
        ("keyless_requests_total", (("route", "oidc"), ("status", "4xx"))): 2,
        ("keyless_oidc_mints_total", (("outcome", "ok"),)): 1,
        ("keyless_oidc_mints_total", (("outcome", "invalid-publisher"),)): 1,
        ("keyless_oidc_mints_total", (("outcome", "invalid-payload"),)): 1,
        # Hits: the second request, the 304 and hatch's; misses: the first and the unknown
        # project.
        ("keyless_simple_cache_hits_total", ()): 3,
        ("keyless_simple_cache_misses_total", ()): 2,
    }
