"""Two `keyless serve` processes on one data folder answer alike: what one changes, the other
serves on the very next request (the change serial, `keyless.store.changes`).

Each page is first asked of the second process, so it is in that process's memory when the
first one changes it: without the serial, the second would keep serving the old page.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.builders import build_wheel
from tests.conftest import LiveServer, start_server, stop_server

from .test_project_admin import post
from .uploading import upload

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    folder = tmp_path_factory.mktemp("pair")
    first = start_server(folder / "first")
    second = start_server(folder / "second", data_dir=first.data_dir)
    yield first, second
    stop_server(second)
    stop_server(first)


def page(client: httpx.Client, path: str) -> dict[str, Any]:
    answer = client.get(path, headers={"Accept": JSON_TYPE})
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def files_of(client: httpx.Client, project: str) -> dict[str, Any]:
    """{filename: yanked} on the project's simple page of `prod`."""
    return {f["filename"]: f["yanked"] for f in page(client, f"/prod/simple/{project}/")["files"]}


def projects_of(client: httpx.Client) -> list[str]:
    return [p["name"] for p in page(client, "/prod/simple/")["projects"]]


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text


def test_an_upload_through_one_is_served_by_the_other_at_once(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    token = first.token("fresh-owner", "prod")
    with first.client() as one, second.client() as two:
        ok(upload(one, "prod", token, *build_wheel("fresh-upload", "1.0")))
        assert files_of(two, "fresh-upload") == {"fresh_upload-1.0-py3-none-any.whl": False}
        assert "fresh-upload" in projects_of(two)  # both pages now in the second's memory

        ok(upload(one, "prod", token, *build_wheel("fresh-upload", "1.1")))
        ok(upload(one, "prod", token, *build_wheel("fresh-other", "1.0")))
        assert files_of(two, "fresh-upload") == {
            "fresh_upload-1.0-py3-none-any.whl": False,
            "fresh_upload-1.1-py3-none-any.whl": False,
        }
        assert "fresh-other" in projects_of(two)
        # And the other way round.
        assert files_of(one, "fresh-other") == {"fresh_other-1.0-py3-none-any.whl": False}
        ok(upload(two, "prod", token, *build_wheel("fresh-other", "1.1")))
        assert len(files_of(one, "fresh-other")) == 2


def test_a_yank_and_a_status_through_one_show_on_the_other_at_once(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    token = first.token("yank-owner", "prod")
    wheel = "fresh_yank-1.0-py3-none-any.whl"
    with first.client() as one, second.client() as two:
        ok(upload(one, "prod", token, *build_wheel("fresh-yank", "1.0")))
        assert files_of(two, "fresh-yank") == {wheel: False}
        ok(post(one, "fresh-yank/releases/1.0/yank", token, {"reason": "broken"}))
        assert files_of(two, "fresh-yank") == {wheel: "broken"}
        ok(post(one, "fresh-yank/status", token, {"status": "quarantined", "reason": "why"}))
        quarantined = page(two, "/prod/simple/fresh-yank/")
        assert quarantined["project-status"] == {"status": "quarantined", "reason": "why"}
        assert quarantined["files"] == []


def test_an_index_created_elsewhere_is_served_at_once(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    with second.client() as two:
        assert two.get("/fresh-index/simple/").status_code == 404
        data = ("--data", str(first.data_dir))
        created = subprocess.run(
            [sys.executable, "-m", "keyless", "index", "create", "fresh-index", *data],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        assert page(two, "/fresh-index/simple/")["projects"] == []
        assert (
            "fresh-index" in two.get("/", headers={"Accept": "application/json"}).json()["indexes"]
        )
