"""PEP 694 upload sessions on a live server: the state machine over HTTP, as a client sees it.

Files are built by tests/builders.py; twine is the legacy client that meets a session.
"""

from __future__ import annotations

import httpx
import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer

from .sessions_api import (
    MEDIA_TYPE,
    create,
    get,
    publish,
    upload_completed,
)


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> str:
    return server.token("session-owner", "prod")


def simple_files(http: httpx.Client, name: str) -> list[str]:
    page = http.get(
        f"/prod/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    if page.status_code == 404:
        return []
    assert page.status_code == 200, page.text
    return sorted(f["filename"] for f in page.json()["files"])


def test_a_session_publishes_its_files_together(http: httpx.Client, owner: str) -> None:
    wheel = build_wheel("staged-one", "1.0")
    sdist = build_sdist("staged-one", "1.0")
    created = create(http, owner, "Staged_One", "1.0")
    assert created.status_code == 201, created.text
    assert created.headers["content-type"] == MEDIA_TYPE
    session = created.json()
    url = session["links"]["session"]
    assert created.headers["location"] == url
    assert (
        url
        == f"{str(http.base_url).rstrip('/')}/prod/upload/2.0/sessions/{session['session-token']}"
    )
    assert session["status"] == "open"
    assert session["files"] == {}
    assert session["mechanisms"] == ["http-post-bytes"]

    upload_completed(http, owner, session, *wheel)
    assert simple_files(http, "staged-one") == []  # nothing is visible before the publish
    upload_completed(http, owner, session, *sdist)
    assert simple_files(http, "staged-one") == []

    published = publish(http, owner, session)
    assert published.status_code == 201, published.text
    assert published.headers["location"] == url
    assert published.json()["status"] == "published"
    assert simple_files(http, "staged-one") == sorted([wheel[0], sdist[0]])
    state = get(http, url, owner).json()
    assert state["status"] == "published"
    assert {f: v["status"] for f, v in state["files"].items()} == {
        wheel[0]: "completed",
        sdist[0]: "completed",
    }
