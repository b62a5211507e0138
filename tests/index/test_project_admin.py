"""The owners' JSON API (yank, unyank, project status) and the CLI commands that call it.

Over real HTTP against the live server; the CLI runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.publish.errors import PublishError
from keyless.publish.indexclient import OwnersClient, keyless_index_of
from tests.builders import build_wheel
from tests.conftest import LiveServer, free_port, run_keyless

from .uploading import upload

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text


def post(
    client: httpx.Client,
    path: str,
    token: str | None,
    body: Any = None,
    *,
    content: bytes | None = None,
    index: str = "prod",
    accept: str = "application/json",
) -> httpx.Response:
    headers = {"Accept": accept}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content is not None:
        headers["Content-Type"] = "application/json"
        return client.post(f"/{index}/api/projects/{path}", content=content, headers=headers)
    return client.post(f"/{index}/api/projects/{path}", json=body, headers=headers)


def simple_page(client: httpx.Client, project: str, index: str = "prod") -> dict[str, Any]:
    answer = client.get(f"/{index}/simple/{project}/", headers={"Accept": JSON_TYPE})
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def yanked_by_version(client: httpx.Client, project: str) -> dict[str, Any]:
    """{filename: yanked value} from the simple JSON page."""
    return {f["filename"]: f["yanked"] for f in simple_page(client, project)["files"]}


def run_cli(server: LiveServer, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLESS_")}
    if token is not None:
        env["KEYLESS_TOKEN"] = token
    return run_keyless(*args, env=env)


def remote(server: LiveServer) -> list[str]:
    return ["--url", server.url, "--index", "prod"]


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> str:
    return server.token("admin-owner", "prod")


@pytest.fixture(scope="module")
def project(client: httpx.Client, owner: str) -> str:
    """A project with releases 1.0 and 2.0, owned by `admin-owner`, for refusal tests."""
    ok(upload(client, "prod", owner, *build_wheel("admin-demo", "1.0")))
    ok(upload(client, "prod", owner, *build_wheel("admin-demo", "2.0")))
    return "admin-demo"


# ------------------------------------------------------------------------------- owners


def test_yank_and_unyank(client: httpx.Client, owner: str) -> None:
    ok(upload(client, "prod", owner, *build_wheel("yank-api-demo", "1.0")))
    ok(upload(client, "prod", owner, *build_wheel("yank-api-demo", "1.1")))
    wheel = "yank_api_demo-1.0-py3-none-any.whl"

    answer = post(client, "yank-api-demo/releases/1.0/yank", owner, {"reason": "bad build"})
    ok(answer)
    assert answer.json() == {
        "project": "yank-api-demo",
        "version": "1.0",
        "yanked": True,
        "reason": "bad build",
    }
    assert yanked_by_version(client, "yank-api-demo") == {
        wheel: "bad build",
        "yank_api_demo-1.1-py3-none-any.whl": False,
    }
    release = client.get("/prod/pypi/yank-api-demo/1.0/json").json()["info"]
    assert (release["yanked"], release["yanked_reason"]) == (True, "bad build")

    answer = post(client, "yank-api-demo/releases/1.0/unyank", owner, {})
    ok(answer)
    assert answer.json()["yanked"] is False
    assert yanked_by_version(client, "yank-api-demo")[wheel] is False


def test_yank_finds_the_release_under_another_spelling(client: httpx.Client, owner: str) -> None:
    filename, data = build_wheel("yank-spelling-demo", "1.0")
    ok(upload(client, "prod", owner, filename, data))
    ok(post(client, "Yank_Spelling.Demo/releases/1.0.0/yank", owner, {"reason": "r"}))
    assert yanked_by_version(client, "yank-spelling-demo") == {filename: "r"}


def test_an_empty_body_yanks_without_a_reason(client: httpx.Client, owner: str) -> None:
    filename, data = build_wheel("yank-empty-demo", "1.0")
    ok(upload(client, "prod", owner, filename, data))
    ok(post(client, "yank-empty-demo/releases/1.0/yank", owner, content=b""))
    assert yanked_by_version(client, "yank-empty-demo") == {filename: True}


@pytest.mark.parametrize("status", ["archived", "quarantined"])
def test_project_status(client: httpx.Client, owner: str, status: str) -> None:
    name = f"status-{status}-demo"
    ok(upload(client, "prod", owner, *build_wheel(name, "1.0")))
    answer = post(client, f"{name}/status", owner, {"status": status, "reason": "why"})
    ok(answer)
    assert answer.json() == {"project": name, "status": status, "reason": "why"}
    assert simple_page(client, name)["project-status"] == {"status": status, "reason": "why"}

    ok(post(client, f"{name}/status", owner, {"status": "active"}))
    page = simple_page(client, name)
    assert page["project-status"] == {"status": "active"}
    assert len(page["files"]) == 1
    # Active again: uploads are accepted.
    ok(upload(client, "prod", owner, *build_wheel(name, "1.1")))


# ------------------------------------------------------------------------------- refusals


ACTIONS = [
    ("admin-demo/releases/1.0/yank", {"reason": "x"}),
    ("admin-demo/releases/1.0/unyank", {}),
    ("admin-demo/status", {"status": "archived"}),
]


@pytest.fixture(scope="module")
def maintainer(server: LiveServer, client: httpx.Client, project: str) -> str:
    """A token of `admin-maintainer`, made maintainer of the project with the admin CLI."""
    token = server.token("admin-maintainer", "prod")
    granted = run_cli(
        server,
        None,
        "role",
        "add",
        project,
        "admin-maintainer",
        "--index",
        "prod",
        "--role",
        "maintainer",
        "--config",
        str(server.data_dir.parent / "keyless.toml"),
        "--data",
        str(server.data_dir),
    )
    assert granted.returncode == 0, granted.stderr
    # The role is real: a maintainer may upload.
    ok(upload(client, "prod", token, *build_wheel(project, "3.0")))
    return token


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_maintainers_and_strangers_are_refused(
    server: LiveServer,
    client: httpx.Client,
    project: str,
    maintainer: str,
    path: str,
    body: dict[str, str],
) -> None:
    stranger = server.token("admin-stranger", "prod")
    for token, user in ((maintainer, "admin-maintainer"), (stranger, "admin-stranger")):
        answer = post(client, path, token, body)
        assert answer.status_code == 403, answer.text
        assert (
            f"The user '{user}' is not an owner of project 'admin-demo'" in answer.json()["message"]
        )
    # Nothing changed.
    page = simple_page(client, project)
    assert page["project-status"] == {"status": "active"}
    assert all(f["yanked"] is False for f in page["files"])


@pytest.mark.parametrize(("path", "body"), ACTIONS)
@pytest.mark.parametrize("token", [None, "keyless-not-a-real-token", "garbage"])
def test_missing_or_invalid_token(
    client: httpx.Client, project: str, path: str, body: dict[str, str], token: str | None
) -> None:
    answer = post(client, path, token, body)
    assert answer.status_code == 403
    assert "Invalid or non-existent authentication information." in answer.json()["message"]


def test_basic_auth_with_token_and_bad_basic(
    client: httpx.Client, owner: str, project: str
) -> None:
    answer = client.post(
        f"/prod/api/projects/{project}/status",
        json={"status": "active"},
        auth=("__token__", owner),
    )
    ok(answer)
    refused = client.post(
        f"/prod/api/projects/{project}/status",
        json={"status": "active"},
        headers={"Authorization": "Basic !!!not-base64"},
    )
    assert refused.status_code == 403


def test_token_for_another_index_or_project(
    server: LiveServer, client: httpx.Client, project: str
) -> None:
    on_test = server.token("admin-owner", "test")
    answer = post(client, f"{project}/status", on_test, {"status": "archived"})
    assert answer.status_code == 403
    assert "another index" in answer.json()["message"]
    scoped = server.token("admin-owner", "prod", projects=["some-other-project"])
    answer = post(client, f"{project}/status", scoped, {"status": "archived"})
    assert answer.status_code == 403
    assert simple_page(client, project)["project-status"] == {"status": "active"}


@pytest.mark.parametrize(
    ("path", "index"),
    [
        ("no-such-admin-project/releases/1.0/yank", "prod"),
        ("no-such-admin-project/status", "prod"),
        ("admin-demo/releases/9.9/yank", "prod"),
        ("admin-demo/releases/9.9/unyank", "prod"),
        ("admin-demo/status", "nope"),
    ],
)
def test_unknown_project_version_or_index_is_404(
    client: httpx.Client, owner: str, project: str, path: str, index: str
) -> None:
    body = {"status": "archived"} if path.endswith("status") else {"reason": "x"}
    answer = post(client, path, owner, body, index=index)
    assert answer.status_code == 404, answer.text
    assert answer.json()["message"]


@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [
        ("admin-demo/status", b"{not json", "must be a JSON object"),
        ("admin-demo/status", b"[1, 2]", "must be a JSON object"),
        ("admin-demo/status", b"null", "must be a JSON object"),
        ("admin-demo/status", b'"archived"', "must be a JSON object"),
        ("admin-demo/status", b"\xff\xfe\x00", "must be a JSON object"),
        ("admin-demo/status", b'{"status": 1}', "'status' must be a string"),
        ("admin-demo/status", b'{"status": ["archived"]}', "'status' must be a string"),
        ("admin-demo/status", b'{"status": "archived", "reason": 5}', "'reason' must be a string"),
        ("admin-demo/status", b'{"status": "gone"}', "Status must be one of"),
        ("admin-demo/status", b"{}", "Status must be one of"),
        ("admin-demo/releases/1.0/yank", b'{"reason": {"a": 1}}', "'reason' must be a string"),
        ("admin-demo/releases/1.0/yank", b'{"reason": true}', "'reason' must be a string"),
        ("admin-demo/releases/1.0/yank", b"{", "must be a JSON object"),
        ("admin-demo/releases/not%20a%20version/yank", b"{}", "is not a valid version"),
        (
            "admin-demo/releases/1.0/yank",
            json.dumps({"reason": "x" * 3000}).encode(),
            "too long",
        ),
        ("admin-demo/releases/1.0/yank", b" " * (70 * 1024) + b"{}", "too large"),
    ],
)
def test_bad_bodies_are_400_with_a_message(
    client: httpx.Client, owner: str, project: str, path: str, content: bytes, expected: str
) -> None:
    answer = post(client, path, owner, content=content)
    assert answer.status_code == 400, answer.text
    assert expected in answer.json()["message"]
    plain = post(client, path, owner, content=content, accept="text/plain")
    assert plain.status_code == 400
    assert expected in plain.text
    page = simple_page(client, project)
    assert page["project-status"] == {"status": "active"}
    assert all(f["yanked"] is False for f in page["files"])


# ------------------------------------------------------------------- the client library


def test_owners_client(server: LiveServer, client: httpx.Client, owner: str) -> None:
    """The release client's OwnersClient (what `keyless yank` calls): answers, and refusals
    as a PublishError with the index's status and message."""
    filename, data = build_wheel("lib-admin-demo", "1.0")
    ok(upload(client, "prod", owner, filename, data))
    stranger = server.token("lib-admin-stranger", "prod")
    with httpx.Client() as http:
        owners = OwnersClient(server.url + "/", "prod", token=owner, http=http)
        yanked = owners.yank("lib-admin-demo", "1.0", "bad build")
        assert (yanked["project"], yanked["yanked"]) == ("lib-admin-demo", True)
        assert yanked_by_version(client, "lib-admin-demo") == {filename: "bad build"}
        assert owners.unyank("lib-admin-demo", "1.0")["yanked"] is False
        assert owners.set_status("lib-admin-demo", "archived", "moved") == {
            "project": "lib-admin-demo",
            "status": "archived",
            "reason": "moved",
        }
        with pytest.raises(PublishError) as unknown:
            owners.unyank("lib-admin-demo", "7.7")
        assert unknown.value.context["status"] == "404"
        assert unknown.value.message.startswith("404 ")
        refused = OwnersClient(server.url, "prod", token=stranger, http=http)
        with pytest.raises(PublishError) as forbidden:
            refused.set_status("lib-admin-demo", "active")
        assert forbidden.value.message.startswith("403 ")
        assert "is not an owner of project 'lib-admin-demo'" in forbidden.value.message
    assert simple_page(client, "lib-admin-demo")["project-status"]["status"] == "archived"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("https://pkg.example/prod/legacy/", ("https://pkg.example", "prod")),
        ("http://127.0.0.1:8000/test/legacy", ("http://127.0.0.1:8000", "test")),
        ("https://pkg.example/prod/simple/", None),
        ("https://upload.pypi.org/legacy/", None),
    ],
)
def test_keyless_index_of(url: str, named: tuple[str, str] | None) -> None:
    assert keyless_index_of(url) == named


# ------------------------------------------------------------------------------- the CLI


def test_cli_yank_unyank_and_status(server: LiveServer, client: httpx.Client, owner: str) -> None:
    filename, data = build_wheel("cli-admin-demo", "1.0")
    ok(upload(client, "prod", owner, filename, data))

    yanked = run_cli(
        server, owner, "yank", "cli-admin-demo", "1.0", "--reason", "CVE-1", *remote(server)
    )
    assert yanked.returncode == 0, yanked.stderr
    assert json.loads(yanked.stdout)["yanked"] is True
    assert yanked_by_version(client, "cli-admin-demo") == {filename: "CVE-1"}

    unyanked = run_cli(server, owner, "unyank", "cli-admin-demo", "1.0", *remote(server))
    assert unyanked.returncode == 0, unyanked.stderr
    assert yanked_by_version(client, "cli-admin-demo") == {filename: False}

    archived = run_cli(
        server,
        owner,
        "project",
        "status",
        "cli-admin-demo",
        "archived",
        "--reason",
        "moved",
        *remote(server),
    )
    assert archived.returncode == 0, archived.stderr
    assert simple_page(client, "cli-admin-demo")["project-status"] == {
        "status": "archived",
        "reason": "moved",
    }
    refused = upload(client, "prod", owner, *build_wheel("cli-admin-demo", "1.1"))
    assert refused.status_code == 403


def test_cli_errors(server: LiveServer, client: httpx.Client, project: str) -> None:
    no_token = run_cli(server, None, "yank", project, "1.0", *remote(server))
    assert no_token.returncode != 0
    assert "KEYLESS_TOKEN" in no_token.stderr

    stranger = server.token("admin-cli-stranger", "prod")
    refused = run_cli(server, stranger, "yank", project, "1.0", *remote(server))
    assert refused.returncode == 1
    assert "403" in refused.stderr
    assert "is not an owner of project 'admin-demo'" in refused.stderr

    owner = server.token("admin-owner", "prod")
    unknown = run_cli(server, owner, "unyank", project, "7.7", *remote(server))
    assert unknown.returncode == 1
    assert "404" in unknown.stderr
    assert all(f["yanked"] is False for f in simple_page(client, project)["files"])


def test_cli_says_what_stops_it_reaching_the_index(server: LiveServer, tmp_path: Path) -> None:
    owner = server.token("admin-owner", "prod")
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = run_cli(server, owner, "yank", "admin-demo", "1.0", "--url", nobody)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(f"error: {nobody}/prod/api/projects/admin-demo/")
    assert "ConnectError" in unreachable.stderr

    missing = tmp_path / "no-such-ca.pem"
    no_ca = run_cli(
        server, owner, "project", "status", "admin-demo", "archived", "--cert", str(missing)
    )
    assert no_ca.returncode == 1
    assert f"error: cannot load the CA certificates from {missing}" in no_ca.stderr
    for done in (unreachable, no_ca):
        assert "Traceback" not in done.stderr
        assert owner not in done.stderr


def test_an_oversized_body_is_refused_without_reading_it(
    server: LiveServer, owner: str, project: str
) -> None:
    """A declared 10 GB body is refused at once, not buffered (the server would wait for it)."""
    host, port = server.url.removeprefix("http://").split(":")
    request = (
        f"POST /prod/api/projects/{project}/status HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {owner}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 10000000000\r\n"
        "Connection: close\r\n\r\n"
        '{"status": "archived"}'
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request.encode())
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"400", status_line
