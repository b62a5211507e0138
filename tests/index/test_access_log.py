"""The access log: every request once — also the simple pages answered from memory before
any routing — and nothing at all with `access-log = false`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builders import build_wheel
from tests.conftest import LiveServer, start_server, stop_server

from .uploading import upload


def access_lines(server: LiveServer, path: str) -> list[str]:
    return [line for line in server.log().splitlines() if f' {path}" ' in line]


def wait_for_lines(server: LiveServer, path: str, count: int) -> list[str]:
    # The lines are written once per event-loop turn: give the server a moment.
    deadline = time.monotonic() + 5
    while len(lines := access_lines(server, path)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return lines


def test_cached_pages_and_routed_requests_are_each_logged_once(
    server: LiveServer, tmp_path: Path
) -> None:
    token = server.token("log-owner", "prod")
    with server.client() as client:
        assert upload(client, "prod", token, *build_wheel("log-demo", "1.0")).status_code == 200
        page = "/prod/simple/log-demo/"
        first = client.get(page)  # rendered by the route, then kept in memory
        etag = first.headers["etag"]
        cached = client.get(page)  # answered from memory, before routing
        not_modified = client.get(page, headers={"If-None-Match": etag})
        missing = client.get("/prod/simple/no-such-project-here/")
    assert (first.status_code, cached.status_code, not_modified.status_code) == (200, 200, 304)
    assert missing.status_code == 404
    lines = wait_for_lines(server, page, 3)
    statuses = [re.search(r'" (\d{3}) (\d+) ', line) for line in lines]
    assert [(m.group(1), int(m.group(2))) for m in statuses if m] == [
        ("200", len(first.content)),
        ("200", len(cached.content)),
        ("304", 0),
    ]
    assert all(line.startswith('127.0.0.1 "GET ') for line in lines)
    assert len(wait_for_lines(server, "/prod/simple/no-such-project-here/", 1)) == 1
    assert token not in server.log()


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "quiet", env={"KEYLESS_ACCESS_LOG": "false"})
    yield server
    stop_server(server)


def test_access_log_false_logs_nothing_on_any_path(quiet_server: LiveServer) -> None:
    token = quiet_server.token("quiet-owner", "prod")
    with quiet_server.client() as client:
        assert upload(client, "prod", token, *build_wheel("quiet-demo", "1.0")).status_code == 200
        for _ in range(2):  # rendered, then answered from memory
            assert client.get("/prod/simple/quiet-demo/").status_code == 200
        assert client.get("/_/health").status_code == 200
    time.sleep(0.3)
    log = quiet_server.log()
    assert '"GET /prod/simple/quiet-demo/"' not in log
    assert '"POST /prod/legacy/"' not in log
    assert '"GET /_/health"' not in log
