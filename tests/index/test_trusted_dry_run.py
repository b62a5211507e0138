"""The Trusted Publishing dry run (`POST /_/oidc/{index}/dry-run`) against a live TLS server.

It must give the answer the mint-then-upload gives, on every case of a table: each case asks
the dry run first, then mints the very same OIDC token and uploads to the project with what it
got. It must use up nothing, mint nothing, and tell a token nothing about publishers of other
repositories.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from keyless.ci.emulator import Emulator, JobClaims
from keyless.store import db
from keyless.store.db import open_database
from tests.builders import build_sdist
from tests.conftest import AUDIENCE, LiveServer, make_project

from .test_trusted_publishing import add_github_publisher, add_pending_publisher, job
from .uploading import upload


@pytest.fixture(scope="module")
def client(tp_server: LiveServer) -> Iterator[httpx.Client]:
    with tp_server.client() as client:
        yield client


def dry_run(client: httpx.Client, token: str, project: str, index: str = "prod") -> dict[str, Any]:
    answer = client.post(
        f"/_/oidc/{index}/dry-run", content=json.dumps({"token": token, "project": project})
    )
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def mint_and_upload(client: httpx.Client, token: str, project: str) -> tuple[bool, str, str]:
    """(allowed, code, description): what minting `token` and uploading to `project` gives."""
    minted = client.post("/_/oidc/prod/mint-token", content=json.dumps({"token": token}))
    if minted.status_code != 200:
        [error] = minted.json()["errors"]
        return False, error["code"], error["description"]
    uploaded = upload(client, "prod", minted.json()["token"], *build_sdist(project, "9.9.9"))
    return uploaded.status_code == 200, "upload", uploaded.text


def repository(project: str) -> dict[str, str]:
    """The fields of a publisher for octo-org/<project>."""
    return {"repository": project}


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[LiveServer, httpx.Client, Emulator, str], None]
    claims: Callable[[str], JobClaims]
    allowed: bool
    code: str = ""
    # What the refusal must say, and what it must not (about publishers of other repositories).
    says: tuple[str, ...] = ()
    hides: tuple[str, ...] = ()


def linked(**fields: str) -> Callable[[LiveServer, httpx.Client, Emulator, str], None]:
    def setup(server: LiveServer, client: httpx.Client, ci: Emulator, project: str) -> None:
        make_project(server, client, project)
        add_github_publisher(server, ci, project, **{**repository(project), **fields})

    return setup


def pending(server: LiveServer, client: httpx.Client, ci: Emulator, project: str) -> None:
    add_pending_publisher(server, ci, project, "alice", project)


def pending_then_taken(
    server: LiveServer, client: httpx.Client, ci: Emulator, project: str
) -> None:
    pending(server, client, ci, project)
    make_project(server, client, project)  # someone else creates it meanwhile


def archived(server: LiveServer, client: httpx.Client, ci: Emulator, project: str) -> None:
    owner = make_project(server, client, project)
    add_github_publisher(server, ci, project, **repository(project))
    answer = client.post(
        f"/prod/api/projects/{project}/status",
        json={"status": "archived"},
        headers={"Authorization": f"Bearer {owner}"},
    )
    assert answer.status_code == 200, answer.text


def others_only(server: LiveServer, client: httpx.Client, ci: Emulator, project: str) -> None:
    # The project trusts another repository; the token's repository publishes another project.
    make_project(server, client, project)
    add_github_publisher(server, ci, project, repository="secret-repo", workflow="secret.yml")
    make_project(server, client, f"{project}-sibling")
    add_github_publisher(server, ci, f"{project}-sibling", **repository(project))


def none_at_all(server: LiveServer, client: httpx.Client, ci: Emulator, project: str) -> None:
    make_project(server, client, project)
    add_github_publisher(server, ci, project, repository="secret-repo", workflow="secret.yml")


def of(project: str, **changes: Any) -> JobClaims:
    return job(repo=f"octo-org/{project}", **changes)


CASES = [
    Case("dr-match", linked(environment="pypi"), of, True),
    Case(
        "dr-workflow",
        linked(workflow="publish.yml"),
        of,
        False,
        "invalid-publisher",
        says=(
            "workflows/release.yml@",
            "workflows/publish.yml@",
            "the publisher for 'dr-workflow'",
        ),
    ),
    Case(
        "dr-environment",
        linked(environment="pypi"),
        lambda p: of(p, environment="staging"),
        False,
        "invalid-publisher",
        says=("environment: the token says 'staging'", "expects 'pypi'"),
    ),
    Case(
        "dr-ref",
        linked(ref="refs/tags/v*"),
        lambda p: of(p, ref="refs/heads/main"),
        False,
        "invalid-publisher",
        says=("'refs/heads/main'", "'refs/tags/v*'"),
    ),
    Case("dr-pending", pending, of, True),
    Case(
        "dr-taken",
        pending_then_taken,
        of,
        False,
        "invalid-pending-publisher",
        says=("created by someone else",),
    ),
    Case(
        "dr-archived",
        archived,
        of,
        False,
        "project-archived",
        says=("archived",),
    ),
    Case(
        "dr-others",
        others_only,
        of,
        False,
        "invalid-publisher",
        says=("no publisher of 'dr-others' on index 'prod' trusts",),
        hides=("secret",),
    ),
    Case(
        "dr-none",
        none_at_all,
        of,
        False,
        "invalid-publisher",
        says=("no publisher of 'dr-none' on index 'prod' trusts",),
        hides=("secret",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_dry_run_and_the_mint_agree(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator, case: Case
) -> None:
    case.setup(tp_server, client, emulator, case.name)
    token = emulator.token(AUDIENCE, case.claims(case.name))
    answer = dry_run(client, token, case.name)
    allowed, code, description = mint_and_upload(client, token, case.name)

    assert answer["allowed"] is case.allowed, answer
    assert allowed is case.allowed, description  # the table says what the mint does too
    assert answer["index"] == "prod"
    assert answer["project"] == case.name
    if case.allowed:
        assert answer["errors"] == []
        assert answer["pending"] is (case.setup is pending)
        assert f"GitHub octo-org/{case.name}, workflow release.yml" in answer["publisher"]
        return
    [error] = answer["errors"]
    assert error["code"] == case.code
    for text in case.says:
        assert text in error["description"]
    for text in case.hides:
        assert text not in error["description"]
    if code != "upload" and case.name != "dr-none":
        # Refused by the mint itself: the same code and the very same words.
        assert (error["code"], error["description"]) == (code, description)


def counts(server: LiveServer) -> tuple[int, int, int]:
    engine = open_database(server.database)
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(db.api_tokens)).scalar_one(),
            conn.execute(select(func.count()).select_from(db.journal)).scalar_one(),
            conn.execute(select(func.count()).select_from(db.used_oidc_tokens)).scalar_one(),
        )


def test_a_dry_run_mints_records_and_uses_up_nothing(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    linked()(tp_server, client, emulator, "dr-quiet")
    token = emulator.token(AUDIENCE, of("dr-quiet"))
    before = counts(tp_server)
    for _ in range(3):
        assert dry_run(client, token, "dr-quiet")["allowed"] is True
    assert counts(tp_server) == before  # no token row, no audit entry, no replay record
    # The token is still good for the real thing, once.
    assert mint_and_upload(client, token, "dr-quiet")[0] is True
    again = dry_run(client, token, "dr-quiet")
    assert again["allowed"] is False
    assert again["errors"][0]["code"] == "invalid-reuse-token"


def test_a_token_the_index_refuses_is_a_no(
    client: httpx.Client, emulator: Emulator, tmp_path: Path
) -> None:
    # Another issuer (an emulator the server does not trust), and another audience.
    with Emulator(tmp_path / "keys") as stranger:
        untrusted = stranger.token(AUDIENCE, of("dr-match"))
        answer = dry_run(client, untrusted, "dr-match")
    assert answer["allowed"] is False
    assert answer["errors"][0]["code"] == "invalid-payload"
    assert "does not trust tokens from the issuer" in answer["errors"][0]["description"]
    wrong_audience = emulator.token("elsewhere", of("dr-match"))
    answer = dry_run(client, wrong_audience, "dr-match")
    assert answer["errors"][0]["code"] == "invalid-token"
    # The `test` index has its own audience: a `keyless` token is not for it.
    answer = dry_run(client, emulator.token(AUDIENCE, of("dr-match")), "dr-match", index="test")
    assert answer["errors"][0]["code"] == "invalid-token"


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"token": "x"}', b'{"project": "demo"}', b'{"token": "x", "project": "no/pe"}'],
)
def test_malformed_dry_run_requests(client: httpx.Client, body: bytes) -> None:
    answer = client.post("/_/oidc/prod/dry-run", content=body)
    assert answer.status_code == 422, answer.text
    document = answer.json()
    assert document["message"] == "Dry run request failed"
    assert document["errors"][0]["code"] == "invalid-payload"
    assert client.post("/_/oidc/nope/dry-run", content=b"{}").status_code == 404


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "eyJ9.eyJ9.eyJ9"],
)
def test_a_token_that_is_not_one_is_a_no_not_a_crash(
    tp_server: LiveServer, client: httpx.Client, token: str
) -> None:
    answer = dry_run(client, token, "dr-match")
    assert answer["allowed"] is False
    assert answer["errors"][0]["code"] in ("invalid-payload", "invalid-token")
    assert "Traceback" not in tp_server.log()
