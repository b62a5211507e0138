"""Hostile request bodies and paths: a 4xx that says what is wrong, never a 500 or a traceback.

Each input here once crashed a handler: JSON nested deeper than Python's recursion limit (the
OIDC endpoints take it without authentication), a multipart boundary python-multipart refuses,
a version with a number longer than Python converts to an int (4300 digits), a client that
hangs up in the middle of a JSON body.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer, start_server, stop_server

from .uploading import upload

# Far deeper than the json module's recursion limit, far smaller than the 64 KiB body limit.
DEEP = "[" * 20_000 + "]" * 20_000
DEEP_TOKEN = ('{"token": ' + DEEP + "}").encode()
DEEP_OBJECT = ('{"reason": ' + DEEP + "}").encode()
HUGE_VERSION = "1" * 5000  # Python refuses int("1" * 4301)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own, so its log holds only what these requests caused."""
    live = start_server(tmp_path_factory.mktemp("hostile"))
    yield live
    stop_server(live)


@pytest.fixture
def client(hostile: LiveServer) -> Iterator[httpx.Client]:
    with hostile.client() as http:
        yield http


@pytest.fixture(scope="module")
def owner(hostile: LiveServer) -> str:
    """The owner's token of project `hostile-demo` (release 1.0) on `prod`."""
    token = hostile.token("hostile-owner", "prod")
    with hostile.client() as http:
        answer = upload(http, "prod", token, *build_sdist("hostile-demo", "1.0"))
    assert answer.status_code == 200, answer.text
    return token


@pytest.fixture
def log_start(hostile: LiveServer) -> int:
    """Where this test's part of the server log begins."""
    time.sleep(0.1)  # lines of the previous test still on their way
    return len(hostile.log())


def assert_no_traceback(server: LiveServer, since: int) -> None:
    time.sleep(0.2)  # the log is written by the server process
    log = server.log()[since:]
    assert "Traceback" not in log, log[-3000:]
    assert '" 500 ' not in log, log[-3000:]


@pytest.mark.parametrize(
    "path", ["/_/oidc/mint-token", "/_/oidc/github/mint-token", "/_/oidc/test/mint-token"]
)
def test_deeply_nested_json_to_mint_token_is_a_422(
    hostile: LiveServer, client: httpx.Client, log_start: int, path: str
) -> None:
    answer = client.post(path, content=DEEP_TOKEN)
    assert answer.status_code == 422, answer.text
    error = answer.json()["errors"][0]
    assert error["code"] == "invalid-payload"
    assert "nested too deeply" in error["description"]
    assert_no_traceback(hostile, log_start)


def test_deeply_nested_json_to_burn_token_is_a_422(
    hostile: LiveServer, client: httpx.Client, log_start: int
) -> None:
    answer = client.post("/_/oidc/burn-token", content=DEEP_TOKEN)
    assert answer.status_code == 422, answer.text
    assert "nested too deeply" in answer.json()["errors"][0]["description"]
    assert_no_traceback(hostile, log_start)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/prod/api/projects/hostile-demo/releases/1.0/yank"),
        ("POST", "/prod/api/projects/hostile-demo/status"),
        ("POST", "/prod/api/projects/hostile-demo/publishers"),
        ("POST", "/prod/api/pending-publishers"),
        ("POST", "/prod/api/projects/hostile-demo/releases/1.0/promote"),
    ],
)
def test_deeply_nested_json_to_the_owner_apis_is_a_400(
    hostile: LiveServer, client: httpx.Client, log_start: int, owner: str, method: str, path: str
) -> None:
    answer = client.request(
        method,
        path,
        content=DEEP_OBJECT,
        headers={"authorization": f"Bearer {owner}", "accept": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert "nested too deeply" in answer.json()["message"]
    assert_no_traceback(hostile, log_start)


def test_a_multipart_boundary_over_256_characters_is_a_400(
    hostile: LiveServer, client: httpx.Client, log_start: int, owner: str
) -> None:
    boundary = "b" * 300
    answer = client.post(
        "/prod/legacy/",
        content=f"--{boundary}--\r\n".encode(),
        headers={
            "content-type": f"multipart/form-data; boundary={boundary}",
            "authorization": f"Bearer {owner}",
        },
    )
    assert answer.status_code == 400, answer.text
    assert "boundary" in answer.text
    assert_no_traceback(hostile, log_start)


def test_an_upload_whose_version_has_a_5000_digit_number_is_refused(
    hostile: LiveServer, client: httpx.Client, log_start: int, owner: str
) -> None:
    filename, data = build_wheel("hostile-demo", "2.0")
    answer = upload(client, "prod", owner, filename, data, version=HUGE_VERSION)
    assert answer.status_code == 400, answer.text
    assert "is invalid for 'version'" in answer.text
    assert "more than 4300 digits" in answer.text
    assert_no_traceback(hostile, log_start)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", f"/prod/pypi/hostile-demo/{HUGE_VERSION}/json", 404),
        ("GET", f"/prod/project/hostile-demo/{HUGE_VERSION}/", 404),
        ("POST", f"/prod/api/projects/hostile-demo/releases/{HUGE_VERSION}/yank", 400),
        ("POST", f"/prod/api/projects/hostile-demo/releases/{HUGE_VERSION}/unyank", 400),
        ("POST", f"/prod/api/projects/hostile-demo/releases/{HUGE_VERSION}/promote", 400),
    ],
)
def test_a_5000_digit_version_in_a_path_is_a_4xx(
    hostile: LiveServer,
    client: httpx.Client,
    log_start: int,
    owner: str,
    method: str,
    path: str,
    status: int,
) -> None:
    answer = client.request(
        method,
        path,
        json={"to": "test"} if path.endswith("/promote") else {},
        headers={"authorization": f"Bearer {owner}", "accept": "application/json"},
    )
    assert answer.status_code == status, answer.text[:500]
    assert "1111" in answer.text  # the message names the version it could not use
    assert_no_traceback(hostile, log_start)


@pytest.mark.parametrize(
    "path",
    ["/_/oidc/mint-token", "/_/oidc/burn-token", "/prod/api/projects/x/status", "/account/login"],
)
def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(
    hostile: LiveServer, owner: str, path: str, log_start: int
) -> None:
    host, port = hostile.url.removeprefix("http://").split(":")
    form = path.startswith("/account/")  # the web UI reads forms, the APIs JSON
    kind = "application/x-www-form-urlencoded" if form else "application/json"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {owner}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + b'{"token": "abc')
        time.sleep(0.3)  # the handler is waiting for the rest of the body
    time.sleep(0.5)
    assert_no_traceback(hostile, log_start)
