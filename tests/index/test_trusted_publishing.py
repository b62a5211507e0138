"""Trusted Publishing end to end: the CI emulator's real OIDC tokens, a TLS server, real clients."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import update

from keyless.ci.emulator import Emulator, JobClaims
from keyless.store import db
from keyless.store.db import open_database
from tests.builders import build_sdist, build_wheel
from tests.conftest import (
    AUDIENCE,
    TEST_AUDIENCE,
    LiveServer,
    client_env,
    make_project,
    run_keyless,
    trust,
)

from .test_clients import pip_install_target
from .uploading import upload


@pytest.fixture(scope="module")
def client(tp_server: LiveServer) -> Iterator[httpx.Client]:
    with tp_server.client() as client:
        yield client


def keyless(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run_keyless(
        *args,
        "--data",
        str(server.data_dir),
        "--config",
        str(server.data_dir.parent / "keyless.toml"),
    )


def add_github_publisher(
    server: LiveServer, emulator: Emulator, project: str, index: str = "prod", **fields: str
) -> int:
    options = {"owner": "octo-org", "repository": "demo", "workflow": "release.yml", **fields}
    args = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    result = keyless(
        server,
        "publisher",
        "add",
        "--index",
        index,
        "--project",
        project,
        "--json",
        "github",
        "--issuer",
        emulator.issuer,
        *args,
    )
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["id"])


def job(**changes: Any) -> JobClaims:
    base = JobClaims(
        repo="octo-org/demo",
        workflow="release.yml",
        ref="refs/tags/v1.0.0",
        environment="pypi",
        event="release",
        owner_id=4242,
    )
    return replace(base, **changes)


def mint(client: httpx.Client, jwt_token: str, path: str = "/_/oidc/mint-token") -> httpx.Response:
    return client.post(path, content=json.dumps({"token": jwt_token}))


def failure(answer: httpx.Response) -> tuple[str, str]:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["message"] == "Token request failed"
    error = body["errors"][0]
    return error["code"], error["description"]


# ------------------------------------------------------------------ protocol and happy path


def test_audience_and_discovery(client: httpx.Client) -> None:
    assert client.get("/_/oidc/audience").json() == {"audience": AUDIENCE}
    for index, audience in (("prod", AUDIENCE), ("test", TEST_AUDIENCE)):
        key = hashlib.sha256(f"/{index}/legacy/".encode()).hexdigest()
        found = client.get(
            f"/.well-known/pytp/{key}", headers={"Accept": "application/vnd.pypi.pytp.v1+json"}
        )
        assert found.status_code == 200, found.text
        endpoints = found.json()
        assert endpoints["mint-token-endpoint"].endswith(f"/_/oidc/{index}/mint-token")
        assert client.get(endpoints["audience-endpoint"]).json() == {"audience": audience}
    unknown = client.get(f"/.well-known/pytp/{'0' * 64}")
    assert unknown.status_code == 404
    assert unknown.content == b""
    assert (
        client.get(f"/.well-known/pytp/{key}", headers={"Accept": "text/html"}).status_code == 406
    )


def test_uv_publishes_with_trusted_publishing_and_pip_installs(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, client, "uv-tp-demo")
    add_github_publisher(tp_server, emulator, "uv-tp-demo", environment="pypi")
    dist = tmp_path / "dist"
    dist.mkdir()
    for filename, data in (build_wheel("uv-tp-demo", "1.0.0"), build_sdist("uv-tp-demo", "1.0.0")):
        (dist / filename).write_bytes(data)
    assert tp_server.tls is not None
    env = trust(client_env(tmp_path), tp_server.tls.ca)
    command = [
        sys.executable,
        "-m",
        "uv",
        "publish",
        "--trusted-publishing",
        "always",
        "--publish-url",
        tp_server.upload_url("prod"),
        *map(str, dist.iterdir()),
    ]
    published = emulator.run(command, job(), env=env, capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stdout + published.stderr

    target = tmp_path / "site"
    pip_install_target(
        target, env, "--index-url", tp_server.simple_url("prod"), "uv-tp-demo==1.0.0"
    )

    trail = client.get(
        "/prod/api/projects/uv-tp-demo/audit",
        headers={"Authorization": f"Bearer {tp_server.token('owner-uv-tp-demo', 'prod')}"},
    ).json()
    assert [row["action"] for row in trail].count("mint_token") == 1
    trusted_uploads = [
        row["details"]
        for row in trail
        if row["action"] == "file_upload" and row["details"].get("trusted_publishers")
    ]
    assert sorted(d["filename"] for d in trusted_uploads) == sorted(p.name for p in dist.iterdir())
    minted = next(row for row in trail if row["action"] == "mint_token")["details"]
    assert minted["repository"] == "octo-org/demo"
    assert minted["environment"] == "pypi"
    assert minted["ref"] == "refs/tags/v1.0.0"
    assert minted["client_ip"] == "127.0.0.1"
    assert "uv" in minted["user_agent"]
    assert minted["commit_url"] == f"https://github.com/octo-org/demo/commit/{minted['sha']}"

    # The read APIs say which files a trusted publisher uploaded (and which not).
    page = client.get(
        "/prod/simple/uv-tp-demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()
    marks = {f["filename"]: f.get("_trusted-publisher") for f in page["files"]}
    assert marks["uv_tp_demo-0.0.1.tar.gz"] is None
    assert marks["uv_tp_demo-1.0.0.tar.gz"][0]["summary"].startswith("GitHub octo-org/demo")
    release = client.get("/prod/pypi/uv-tp-demo/1.0.0/json").json()
    assert all(f["uploaded_via_trusted_publisher"] for f in release["urls"])


def test_id_library_detects_the_credential_and_the_token_mints(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    make_project(tp_server, client, "id-tp-demo")
    add_github_publisher(tp_server, emulator, "id-tp-demo")
    detected = emulator.run(
        [sys.executable, "-c", f"import id; print(id.detect_credential({AUDIENCE!r}))"],
        job(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert detected.returncode == 0, detected.stderr
    answer = mint(client, detected.stdout.strip())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    assert body["token"].startswith("keyless-")
    assert 14 * 60 <= body["expires"] - time.time() <= 15 * 60 + 5


def test_a_fork_pull_request_gets_no_token_and_publishes_nothing(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, client, "fork-demo")
    add_github_publisher(tp_server, emulator, "fork-demo", repository="forked")
    filename, data = build_wheel("fork-demo", "6.6.6")
    (tmp_path / filename).write_bytes(data)
    assert tp_server.tls is not None
    env = trust(client_env(tmp_path), tp_server.tls.ca)
    command = [
        *(sys.executable, "-m", "uv", "publish", "--trusted-publishing", "always"),
        *("--publish-url", tp_server.upload_url("prod"), str(tmp_path / filename)),
    ]
    claims = job(repo="octo-org/forked", event="pull_request", fork_pr=True, environment=None)
    attempt = emulator.run(command, claims, env=env, capture_output=True, text=True, timeout=120)
    assert attempt.returncode != 0
    # GitHub grants a fork's pull request no OIDC token at all; uv says what is missing.
    assert "missing ACTIONS_ID_TOKEN_REQUEST_URL" in attempt.stderr
    assert "6.6.6" not in client.get("/prod/simple/fork-demo/").text


def test_publishers_through_the_json_api(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    owner = make_project(tp_server, client, "api-pub-demo")
    headers = {"Authorization": f"Bearer {owner}"}
    base = "/prod/api/projects/api-pub-demo/publishers"
    bad = client.post(
        base,
        json={
            "kind": "github",
            "config": {
                "owner": "octo-org",
                "repository": "x",
                "workflow": "dir/release.txt",
                "issuer": emulator.issuer,
            },
        },
        headers=headers,
    )
    assert bad.status_code == 400
    assert "workflow" in bad.json()["errors"]
    added = client.post(
        base,
        json={
            "kind": "github",
            "config": {
                "owner": "octo-org",
                "repository": "api-pub",
                "workflow": "release.yml",
                "issuer": emulator.issuer,
            },
        },
        headers=headers,
    )
    assert added.status_code == 200, added.text
    listed = client.get(base, headers=headers).json()
    assert [p["id"] for p in listed] == [added.json()["id"]]
    stranger = {"Authorization": f"Bearer {tp_server.token('pub-stranger', 'prod')}"}
    assert client.get(base, headers=stranger).status_code == 403
    assert client.delete(f"{base}/{added.json()['id']}", headers=stranger).status_code == 403
    assert client.delete(f"{base}/{added.json()['id']}", headers=headers).status_code == 200
    assert client.get(base, headers=headers).json() == []


def test_removing_a_publisher_by_an_id_that_names_none(
    tp_server: LiveServer, client: httpx.Client
) -> None:
    owner = make_project(tp_server, client, "api-pub-ids")
    base = "/prod/api/projects/api-pub-ids/publishers"
    huge = 2**64  # past any database integer: once an OverflowError, a 500
    for publisher, message in (
        ("abc", "The publisher id must be a number."),
        ("-1", "No publisher with id -1 on this index."),
        (str(huge), f"No publisher with id {huge} on this index."),
    ):
        answer = client.delete(f"{base}/{publisher}", headers={"Authorization": f"Bearer {owner}"})
        assert answer.status_code == 404, answer.text
        assert message in answer.text


# ------------------------------------------------------------------- the minted token's limits


@pytest.fixture(scope="module")
def scoped(tp_server: LiveServer, client: httpx.Client, emulator: Emulator) -> dict[str, Any]:
    make_project(tp_server, client, "scope-demo")
    make_project(tp_server, client, "scope-other")
    publisher = add_github_publisher(tp_server, emulator, "scope-demo", repository="scoped")
    return {"publisher": publisher}


def minted_token(client: httpx.Client, emulator: Emulator, claims: JobClaims) -> str:
    answer = mint(client, emulator.token(AUDIENCE, claims))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def test_minted_token_uploads_only_to_linked_projects(
    client: httpx.Client, emulator: Emulator, scoped: dict[str, Any]
) -> None:
    token = minted_token(client, emulator, job(repo="octo-org/scoped"))
    assert upload(client, "prod", token, *build_wheel("scope-demo", "1.0")).status_code == 200
    other = upload(client, "prod", token, *build_wheel("scope-other", "1.0"))
    assert other.status_code == 403
    assert "isn't allowed to upload to project 'scope-other'" in other.text
    new = upload(client, "prod", token, *build_wheel("scope-brand-new", "1.0"))
    assert new.status_code == 400
    assert "Non-user identities cannot create new projects" in new.text
    wrong_index = upload(client, "test", token, *build_wheel("scope-demo", "1.0"))
    assert wrong_index.status_code == 403
    # Upload-only: it cannot yank.
    yank = client.post(
        "/prod/api/projects/scope-demo/releases/1.0/yank",
        json={"reason": "x"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert yank.status_code == 403


def test_minted_token_fails_after_expiry(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator, scoped: dict[str, Any]
) -> None:
    token = minted_token(client, emulator, job(repo="octo-org/scoped"))
    engine = open_database(tp_server.database)
    from keyless.index.accounts import hash_token

    with db.writing(engine) as conn:
        conn.execute(
            update(db.api_tokens)
            .where(db.api_tokens.c.token_hash == hash_token(token))
            .values(expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    refused = upload(client, "prod", token, *build_wheel("scope-demo", "1.1"))
    assert refused.status_code == 403
    assert "Invalid API Token: token is expired" in refused.text


def test_minted_token_fails_after_burn(
    client: httpx.Client, emulator: Emulator, scoped: dict[str, Any]
) -> None:
    token = minted_token(client, emulator, job(repo="octo-org/scoped"))
    for _ in range(2):  # idempotent
        burned = client.post("/_/oidc/burn-token", content=json.dumps({"token": token}))
        assert burned.json() == {"success": True}
    assert upload(client, "prod", token, *build_wheel("scope-demo", "1.2")).status_code == 403


def test_minted_token_fails_after_the_publisher_is_removed(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    make_project(tp_server, client, "removed-demo")
    publisher = add_github_publisher(tp_server, emulator, "removed-demo", repository="removed")
    token = minted_token(client, emulator, job(repo="octo-org/removed"))
    result = keyless(tp_server, "publisher", "remove", "--index", "prod", str(publisher))
    assert result.returncode == 0, result.stderr
    refused = upload(client, "prod", token, *build_wheel("removed-demo", "1.0"))
    assert refused.status_code == 403
    assert "trusted publisher it was minted for has been removed" in refused.text


# --------------------------------------------------------------------------- the attack suite


@pytest.fixture(scope="module")
def attack_target(tp_server: LiveServer, client: httpx.Client, emulator: Emulator) -> None:
    make_project(tp_server, client, "attack-demo")
    add_github_publisher(
        tp_server,
        emulator,
        "attack-demo",
        repository="attacked",
        environment="pypi",
        ref="refs/tags/v*",
    )
    # Pin the owner id by a first, legitimate use.
    minted_token(client, emulator, job(repo="octo-org/attacked"))


def forge(claims: dict[str, Any], kid: str) -> str:
    """Signed properly, but with a key the issuer never had."""
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": kid})


def claims_of(emulator: Emulator, **changes: Any) -> tuple[dict[str, Any], str]:
    genuine = emulator.token(AUDIENCE, job(repo="octo-org/attacked"))
    header = jwt.get_unverified_header(genuine)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    claims.update(changes)
    return claims, header["kid"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """A JWT with no signature at all (`alg: none`)."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def hmac_signed(claims: dict[str, Any], kid: str, secret: bytes) -> str:
    """HS256 keyed with `secret` — the classic confusion attack uses the issuer's public key."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.usefixtures("attack_target")
@pytest.mark.parametrize(
    ("case", "expected_code", "expected_text"),
    [
        ("bad-signature", "invalid-token", ""),
        ("unknown-kid", "invalid-token", "not-a-known-key"),
        ("alg-none", "invalid-token", ""),
        ("hs256-with-public-key", "invalid-token", ""),
        ("expired", "invalid-token", "expired"),
        ("not-yet-valid", "invalid-token", ""),
        ("wrong-audience", "invalid-token", "audience"),
        ("list-audience", "invalid-token", "audience"),
        ("untrusted-issuer", "invalid-payload", "does not trust"),
        ("other-repository", "invalid-publisher", "octo-org/elsewhere"),
        ("owner-id-changed", "invalid-publisher", "repository_owner_id"),
        ("wrong-workflow", "invalid-publisher", "workflow"),
        ("wrong-environment", "invalid-publisher", "environment: the token says 'release'"),
        ("ref-outside-constraint", "invalid-publisher", "refs/heads/main"),
        ("pull-request-target", "invalid-publisher", "pull_request_target"),
    ],
)
def test_attacks_are_refused(
    client: httpx.Client, emulator: Emulator, case: str, expected_code: str, expected_text: str
) -> None:
    now = int(time.time())
    if case == "bad-signature":
        claims, kid = claims_of(emulator)
        token = forge(claims, kid)
    elif case == "unknown-kid":
        claims, _ = claims_of(emulator)
        token = forge(claims, "not-a-known-key")
    elif case == "alg-none":
        claims, kid = claims_of(emulator)
        token = unsigned(claims, {"alg": "none", "typ": "JWT", "kid": kid})
    elif case == "hs256-with-public-key":
        claims, kid = claims_of(emulator)
        jwks = httpx.get(f"{emulator.issuer}/.well-known/jwks").json()
        public = jwt.PyJWK(jwks["keys"][0]).key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        token = hmac_signed(claims, kid, public)
    elif case == "expired":
        token = emulator.token(
            AUDIENCE, job(repo="octo-org/attacked", extra={"iat": now - 900, "exp": now - 120})
        )
    elif case == "not-yet-valid":
        token = emulator.token(
            AUDIENCE, job(repo="octo-org/attacked", extra={"nbf": now + 600, "iat": now + 600})
        )
    elif case == "wrong-audience":
        token = emulator.token("pypi", job(repo="octo-org/attacked"))
    elif case == "list-audience":
        token = emulator.token(AUDIENCE, job(repo="octo-org/attacked", extra={"aud": [AUDIENCE]}))
    elif case == "untrusted-issuer":
        claims, kid = claims_of(emulator, iss="https://ci.attacker.example")
        token = forge(claims, kid)
    elif case == "other-repository":
        token = emulator.token(AUDIENCE, job(repo="octo-org/elsewhere"))
    elif case == "owner-id-changed":
        token = emulator.token(AUDIENCE, job(repo="octo-org/attacked", owner_id=999999))
    elif case == "wrong-workflow":
        token = emulator.token(AUDIENCE, job(repo="octo-org/attacked", workflow="evil.yml"))
    elif case == "wrong-environment":
        token = emulator.token(AUDIENCE, job(repo="octo-org/attacked", environment="release"))
    elif case == "ref-outside-constraint":
        token = emulator.token(AUDIENCE, job(repo="octo-org/attacked", ref="refs/heads/main"))
    else:
        token = emulator.token(AUDIENCE, job(repo="octo-org/attacked", event="pull_request_target"))
    code, description = failure(mint(client, token))
    assert code == expected_code, description
    assert expected_text in description


@pytest.mark.usefixtures("attack_target")
def test_a_replayed_token_is_refused(client: httpx.Client, emulator: Emulator) -> None:
    token = emulator.token(AUDIENCE, job(repo="octo-org/attacked"))
    assert mint(client, token).status_code == 200
    code, _ = failure(mint(client, token))
    assert code == "invalid-reuse-token"


@pytest.mark.usefixtures("attack_target")
def test_a_token_valid_for_ages_is_exchanged_once(client: httpx.Client, emulator: Emulator) -> None:
    # A correctly signed `exp` far beyond any date (1e300 s): remembered, not a crash.
    claims = job(repo="octo-org/attacked").claims(emulator.issuer, AUDIENCE, None)
    token = emulator.key.sign({**claims, "exp": 1e300})
    assert mint(client, token).status_code == 200
    code, _ = failure(mint(client, token))
    assert code == "invalid-reuse-token"


@pytest.mark.usefixtures("attack_target")
def test_repository_case_variants_match(client: httpx.Client, emulator: Emulator) -> None:
    answer = mint(client, emulator.token(AUDIENCE, job(repo="octo-org/ATTACKED")))
    assert answer.status_code == 200, answer.text


@pytest.mark.usefixtures("attack_target")
def test_errors_do_not_reveal_other_projects_publishers(
    client: httpx.Client, emulator: Emulator
) -> None:
    code, description = failure(mint(client, emulator.token(AUDIENCE, job(repo="someone/else"))))
    assert code == "invalid-publisher"
    assert "attack-demo" not in description
    assert "attacked" not in description


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"token": 5}',
        b'{"token": "not.a.jwt"}',
        b'{"nope": 1}',
        b'{"token": "' + b"a" * (70 * 1024) + b'"}',
    ],
)
def test_malformed_mint_requests(client: httpx.Client, body: bytes) -> None:
    code, description = failure(client.post("/_/oidc/mint-token", content=body))
    assert code == "invalid-payload"
    assert description


# ----------------------------------------------------------- per-index audience and pending


def test_each_index_is_its_own_trust_boundary(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    make_project(tp_server, client, "boundary-demo", index="test")
    add_github_publisher(tp_server, emulator, "boundary-demo", index="test", repository="boundary")
    claims = job(repo="octo-org/boundary")
    # A token for the server's audience cannot reach the `test` index...
    code, _ = failure(mint(client, emulator.token(AUDIENCE, claims)))
    assert code == "invalid-publisher"
    # ...one for the test index's audience, through its PEP 807 endpoint, can.
    answer = client.post(
        "/_/oidc/test/mint-token",
        content=json.dumps({"token": emulator.token(TEST_AUDIENCE, claims)}),
        headers={"Accept": "application/vnd.pypi.pytp.v1+json"},
    )
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"token", "expires"}
    token = answer.json()["token"]
    assert upload(client, "test", token, *build_wheel("boundary-demo", "1.0")).status_code == 200


def add_pending_publisher(
    server: LiveServer, ci: Emulator, project: str, owner: str, repository: str
) -> int:
    """With `keyless publisher add --pending`: GitHub octo-org/`repository`'s release.yml may
    create `project` (not there yet) on prod, for the new user `owner`; the publisher's id."""
    server.user(owner)
    result = keyless(
        server,
        *("publisher", "add", "--index", "prod", "--pending", project, "--owner-user", owner),
        *("--json", "github", "--issuer", ci.issuer, "--owner", "octo-org"),
        *("--repository", repository, "--workflow", "release.yml"),
    )
    assert result.returncode == 0, result.stderr
    publisher: int = json.loads(result.stdout)["id"]
    return publisher


def test_pending_publisher_creates_the_project_on_first_publish(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    add_pending_publisher(tp_server, emulator, "Brand-New-Demo", "future-owner", "brand-new")
    assert client.get("/prod/simple/brand-new-demo/").status_code == 404
    token = minted_token(client, emulator, job(repo="octo-org/brand-new"))
    assert upload(client, "prod", token, *build_wheel("brand-new-demo", "1.0")).status_code == 200
    owner_token = tp_server.token("future-owner", "prod")
    yank = client.post(
        "/prod/api/projects/brand-new-demo/releases/1.0/yank",
        json={"reason": "owner works"},
        headers={"Authorization": f"Bearer {owner_token}"},
    )
    assert yank.status_code == 200, yank.text


def test_the_jwt_is_never_stored(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    make_project(tp_server, client, "nojwt-demo")
    add_github_publisher(tp_server, emulator, "nojwt-demo", repository="nojwt")
    token = emulator.token(AUDIENCE, job(repo="octo-org/nojwt"))
    minted = mint(client, token).json()["token"]
    stored = tp_server.database_bytes()
    assert b"nojwt-demo" in stored  # what is searched holds the rows
    assert token.encode() not in stored
    assert token.split(".")[2].encode() not in stored
    assert minted.encode() not in stored
    assert minted not in tp_server.log()


def test_uv_publishes_from_a_gitlab_job(
    tp_server: LiveServer, client: httpx.Client, gitlab_ci: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, client, "gitlab-tp-demo")
    result = keyless(
        tp_server,
        *("publisher", "add", "--index", "prod", "--project", "gitlab-tp-demo", "gitlab"),
        *("--issuer", gitlab_ci.issuer, "--namespace", "group/sub", "--project", "demo"),
        *("--workflow-filepath", ".gitlab-ci.yml", "--environment", "production"),
    )
    assert result.returncode == 0, result.stderr
    filename, data = build_wheel("gitlab-tp-demo", "1.0.0")
    (tmp_path / filename).write_bytes(data)
    assert tp_server.tls is not None
    env = trust(client_env(tmp_path), tp_server.tls.ca)
    command = [
        *(sys.executable, "-m", "uv", "publish", "--trusted-publishing", "always"),
        *("--publish-url", tp_server.upload_url("prod"), str(tmp_path / filename)),
    ]
    claims = JobClaims(
        provider="gitlab", repo="group/sub/demo", environment="production", audiences=(AUDIENCE,)
    )
    published = gitlab_ci.run(command, claims, env=env, capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stdout + published.stderr
    page = client.get(
        "/prod/simple/gitlab-tp-demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()
    uploaded = next(f for f in page["files"] if f["filename"] == filename)
    assert uploaded["_trusted-publisher"][0]["kind"] == "gitlab"

    # The same job in another environment is refused, and told why.
    other = replace(claims, environment="staging")
    code, description = failure(mint(client, gitlab_ci.token(AUDIENCE, other)))
    assert code == "invalid-publisher"
    assert "environment: the token says 'staging'" in description


def test_one_publisher_for_several_projects_via_the_legacy_endpoint(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    for name in ("multi-one", "multi-two"):
        make_project(tp_server, client, name)
    result = keyless(
        tp_server,
        *("publisher", "add", "--index", "prod", "--project", "multi-one", "--project"),
        *("multi-two", "github", "--issuer", emulator.issuer, "--owner", "octo-org"),
        *("--repository", "multi", "--workflow", "release.yml"),
    )
    assert result.returncode == 0, result.stderr
    listed = keyless(tp_server, "publisher", "list", "--index", "prod", "--json")
    assert listed.returncode == 0, listed.stderr
    projects_of = {
        tuple(row["projects"]) for row in json.loads(listed.stdout) if "multi" in row["summary"]
    }
    assert projects_of == {("multi-one", "multi-two")}
    only_two = keyless(tp_server, "publisher", "list", "--index", "prod", "--project", "Multi_Two")
    assert "multi-one, multi-two" in only_two.stdout
    assert "multi-" not in only_two.stdout.replace("multi-one, multi-two", "")
    # Older clients call the GitHub-specific path; it is the same exchange.
    answer = mint(
        client, emulator.token(AUDIENCE, job(repo="octo-org/multi")), "/_/oidc/github/mint-token"
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    for name in ("multi-one", "multi-two"):
        assert upload(client, "prod", token, *build_wheel(name, "1.0")).status_code == 200

    audit = keyless(tp_server, "audit", "--index", "prod", "multi-two")
    assert audit.returncode == 0, audit.stderr
    assert "mint_token" in audit.stdout
    assert "repository=octo-org/multi" in audit.stdout
    assert token not in audit.stdout


def test_an_expired_pending_publisher_matches_nothing(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator
) -> None:
    publisher = add_pending_publisher(tp_server, emulator, "late-demo", "late-owner", "late")
    with db.writing(open_database(tp_server.database)) as conn:
        conn.execute(
            update(db.publishers)
            .where(db.publishers.c.id == publisher)
            .values(expires=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        )
    code, _ = failure(mint(client, emulator.token(AUDIENCE, job(repo="octo-org/late"))))
    assert code == "invalid-publisher"
    assert client.get("/prod/simple/late-demo/").status_code == 404


def test_issuer_keys_are_cached_in_the_database_for_every_worker(
    tp_server: LiveServer, client: httpx.Client, emulator: Emulator, scoped: dict[str, Any]
) -> None:
    minted_token(client, emulator, job(repo="octo-org/scoped"))
    with db.reading(open_database(tp_server.database)) as conn:
        row = conn.execute(
            db.jwks_cache.select().where(db.jwks_cache.c.issuer == emulator.issuer)
        ).one()
    published = httpx.get(f"{emulator.issuer}/.well-known/jwks").json()
    assert {k["kid"] for k in row.jwks["keys"]} == {k["kid"] for k in published["keys"]}


def test_yank_as_rollback_from_the_release_url(tp_server: LiveServer, client: httpx.Client) -> None:
    """`keyless yank` takes the same upload URL a release job uses, over TLS."""
    owner = make_project(tp_server, client, "rollback-demo")
    assert tp_server.tls is not None
    command = [
        *(sys.executable, "-m", "keyless", "yank", "rollback-demo", "0.0.1"),
        *("--reason", "broken build", "--repository-url", tp_server.upload_url("prod")),
        *("--cert", str(tp_server.tls.ca)),
    ]
    done = subprocess.run(
        command,
        env={**client_env(tp_server.data_dir), "KEYLESS_TOKEN": owner},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    page = client.get(
        "/prod/simple/rollback-demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()
    assert {f["yanked"] for f in page["files"]} == {"broken build"}
