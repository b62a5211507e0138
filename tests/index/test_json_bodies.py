"""JSON request bodies whose strings hold lone surrogates (`"\\ud800"`), found by the fuzz suite.

JSON can escape a UTF-16 surrogate half that names no character; Python's json module decodes
it into a str that UTF-8 cannot encode, so the database, a hash or a JWT library raised
UnicodeEncodeError: a 500 with a traceback. Every JSON endpoint must refuse such a body with a
4xx saying what is wrong, and store nothing.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from keyless.store import db
from tests.builders import build_wheel
from tests.conftest import LiveServer

from .uploading import upload

LONE = "\ud800"  # half a UTF-16 pair; json.dumps writes it as the escape "\\ud800"
PROJECT = "lone-surrogate"


@pytest.fixture(scope="module")
def owner(server: LiveServer, client: httpx.Client) -> str:
    token = server.token(f"owner-{PROJECT}", "test")
    answer = upload(client, "test", token, *build_wheel(PROJECT, "1.0"))
    assert answer.status_code == 200, answer.text
    return token


def journal_rows(server: LiveServer) -> int:
    with db.reading(server.engine()) as conn:
        return int(conn.execute(select(func.count()).select_from(db.journal)).scalar_one())


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_/oidc/mint-token", {"token": LONE}),
        ("/_/oidc/burn-token", {"token": LONE}),
        (f"/test/api/projects/{PROJECT}/releases/1.0/yank", {"reason": LONE}),
        (f"/test/api/projects/{PROJECT}/status", {"status": "active", "reason": LONE}),
        (f"/test/api/projects/{PROJECT}/releases/1.0/promote", {"to": "prod", "x": [LONE]}),
        (f"/test/api/projects/{PROJECT}/publishers", {"kind": "github", "config": {LONE: "x"}}),
    ],
)
def test_lone_surrogates_are_refused_not_a_traceback(
    server: LiveServer, owner: str, path: str, body: dict[str, Any]
) -> None:
    before = journal_rows(server)
    # A fresh connection each: a 500 would also close it.
    answer = httpx.post(
        server.url + path,
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {owner}", "Accept": "application/json"},
    )
    assert answer.status_code in (400, 422), answer.text
    assert "surrogate" in answer.text, answer.text
    assert journal_rows(server) == before
    assert "UnicodeEncodeError" not in server.log()
