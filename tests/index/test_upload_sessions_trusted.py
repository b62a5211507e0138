"""PEP 694 sessions with Trusted Publishing: two publishers of one project share a session,
a removed publisher is refused on its next request, and the journal records who did what."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from keyless.ci.emulator import Emulator
from tests.builders import build_sdist, build_wheel
from tests.conftest import AUDIENCE, LiveServer, make_project

from .sessions_api import (
    add_file,
    assert_problem,
    complete,
    create,
    get,
    open_session,
    publish,
    upload_completed,
)
from .test_trusted_publishing import add_github_publisher, job, keyless, mint


@pytest.fixture(scope="module")
def client(tp_server: LiveServer) -> Iterator[httpx.Client]:
    with tp_server.client() as client:
        yield client


def minted(client: httpx.Client, emulator: Emulator, repo: str) -> str:
    answer = mint(client, emulator.token(AUDIENCE, job(repo=repo)))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def test_two_publishers_share_a_session_until_one_is_removed(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    owner = make_project(tp_server, client, "tp-session")
    add_github_publisher(tp_server, emulator, "tp-session")
    second = add_github_publisher(tp_server, emulator, "tp-session", repository="builders")
    first_token = minted(client, emulator, "octo-org/demo")
    second_token = minted(client, emulator, "octo-org/builders")

    session = open_session(client, first_token, "tp-session", "1.0")
    joined = create(client, second_token, "tp-session", "1.0")
    assert_problem(joined, 409)
    assert joined.headers["location"] == session["links"]["session"]
    assert get(client, joined.headers["location"], second_token).status_code == 200
    wheel = add_file(client, second_token, session, *build_wheel("tp-session", "1.0"))
    upload_completed(client, first_token, session, *build_sdist("tp-session", "1.0"))

    removed = keyless(tp_server, "publisher", "remove", "--index", "prod", str(second))
    assert removed.returncode == 0, removed.stderr
    refused = complete(client, second_token, wheel)
    assert_problem(refused, 403, "the trusted publisher it was minted for has been removed")
    assert complete(client, first_token, wheel).status_code == 201  # the session goes on
    assert publish(client, first_token, session).status_code == 201

    audit = client.get("/prod/api/projects/tp-session/audit", auth=("__token__", owner))
    assert audit.status_code == 200, audit.text
    events: dict[str, dict[str, object]] = {}
    for event in audit.json():  # newest first: each action's latest
        events.setdefault(event["action"], event["details"])
    for action in ("upload_session_create", "upload_session_publish", "file_upload"):
        details = events[action]
        assert details["token_id"], details
        assert isinstance(details["trusted_publishers"], list), details
        assert "octo-org/demo" in str(details["trusted_publishers"]), details
    assert events["upload_session_publish"]["files"] == [
        "tp_session-1.0-py3-none-any.whl",
        "tp_session-1.0.tar.gz",
    ]
