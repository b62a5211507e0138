"""Credentials: discovery (PEP 807, then PyPI's root endpoints), API tokens, Trusted Publishing
with re-minting and burning, and errors that name the cause and the fix."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyless.ci.emulator import Emulator, JobClaims
from keyless.publish import (
    ApiTokenCredentials,
    Discovery,
    PublishError,
    RecordingReporter,
    TrustedPublishingCredentials,
    ambient_oidc_token,
    discover,
    explain_refusal,
    resolve_credentials,
)
from tests.builders import build_wheel
from tests.conftest import AUDIENCE, TEST_AUDIENCE, LiveServer, make_project
from tests.index.uploading import upload

from .conftest import StubIndex, add_github_publisher, audit, github_job


@pytest.fixture
def http(tp_server: LiveServer) -> Iterator[httpx.Client]:
    """A client as `keyless publish` makes it: absolute URLs, the server's CA trusted."""
    assert tp_server.tls is not None
    with httpx.Client(verify=ssl.create_default_context(cafile=str(tp_server.tls.ca))) as client:
        yield client


# ------------------------------------------------------------------------------ discovery


def test_discovery_finds_each_indexs_pep807_endpoints(
    tp_server: LiveServer, http: httpx.Client
) -> None:
    for index, audience in (("prod", AUDIENCE), ("test", TEST_AUDIENCE)):
        found = discover(tp_server.upload_url(index), http)
        assert found is not None
        assert found.source == "pep807"
        assert found.audience == audience
        assert found.mint_url == f"{tp_server.url}/_/oidc/{index}/mint-token"
        assert found.burn_url == f"{tp_server.url}/_/oidc/burn-token"


def test_discovery_falls_back_to_pypis_root_endpoints(
    tp_server: LiveServer, http: httpx.Client
) -> None:
    found = discover(f"{tp_server.url}/not-an-index/legacy/", http)
    assert found is not None
    assert found.source == "pypi-root"
    assert found.audience == AUDIENCE
    assert found.mint_url == f"{tp_server.url}/_/oidc/mint-token"


def test_no_trusted_publishing_is_none(stub: StubIndex) -> None:
    with httpx.Client() as http:
        assert discover(stub.upload_url, http) is None


def test_discovery_never_follows_endpoints_to_another_host(stub: StubIndex) -> None:
    key = hashlib.sha256(b"/x/legacy/").hexdigest()
    stub.routes[f"/.well-known/pytp/{key}"] = (
        200,
        {
            "audience-endpoint": "https://attacker.example/aud",
            "mint-token-endpoint": "https://attacker.example/mint",
        },
    )
    stub.routes["/_/oidc/audience"] = (200, {"audience": "stub"})
    with httpx.Client() as http:
        found = discover(stub.upload_url, http)
    assert found is not None
    assert found.source == "pypi-root"
    assert found.mint_url == f"{stub.url}/_/oidc/mint-token"


def test_an_unreachable_index_says_so() -> None:
    from tests.conftest import free_port

    with httpx.Client() as http, pytest.raises(PublishError, match="cannot reach"):
        discover(f"http://127.0.0.1:{free_port()}/prod/legacy/", http)


# ------------------------------------------------------------------------------ API tokens


@pytest.mark.parametrize(
    ("environ", "origin"),
    [
        ({"KEYLESS_TOKEN": "keyless-a", "UV_PUBLISH_TOKEN": "keyless-b"}, "KEYLESS_TOKEN"),
        ({"UV_PUBLISH_TOKEN": "keyless-b", "TWINE_PASSWORD": "keyless-c"}, "UV_PUBLISH_TOKEN"),
        ({"TWINE_PASSWORD": "keyless-c"}, "TWINE_PASSWORD"),
        ({"TWINE_PASSWORD": "keyless-c", "TWINE_USERNAME": "__token__"}, "TWINE_PASSWORD"),
    ],
)
def test_api_tokens_from_the_environment(environ: dict[str, str], origin: str) -> None:
    reporter = RecordingReporter()
    with httpx.Client() as http:
        found = resolve_credentials(
            "https://h.example/legacy/", mode="auto", http=http, reporter=reporter, environ=environ
        )
    assert isinstance(found, ApiTokenCredentials)
    assert found.origin == origin
    assert found.source == "api-token"
    assert reporter.of("mask") == [found.token()]


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    keyring = pytest.importorskip("keyring")
    monkeypatch.setattr(keyring, "get_password", lambda service, user: None)


@pytest.mark.usefixtures("no_keyring")
def test_a_password_for_another_user_is_not_a_token() -> None:
    reporter = RecordingReporter()
    environ = {"TWINE_PASSWORD": "hunter2", "TWINE_USERNAME": "alice"}
    with httpx.Client() as http, pytest.raises(PublishError) as caught:
        resolve_credentials(
            "https://h.example/legacy/", mode="never", http=http, reporter=reporter, environ=environ
        )
    assert "TWINE_USERNAME is 'alice'" in reporter.of("warning")[0]
    assert "KEYLESS_TOKEN" in (caught.value.hint or "")


def test_a_token_from_the_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    keyring = pytest.importorskip("keyring")
    stored = {("h.example", "__token__"): "keyless-from-keyring"}
    monkeypatch.setattr(keyring, "get_password", lambda service, user: stored.get((service, user)))
    with httpx.Client() as http:
        found = resolve_credentials(
            "https://h.example/prod/legacy/",
            mode="never",
            http=http,
            reporter=RecordingReporter(),
            environ={},
        )
    assert found.token() == "keyless-from-keyring"
    assert isinstance(found, ApiTokenCredentials)
    assert found.origin == "keyring (h.example)"


@pytest.mark.usefixtures("no_keyring")
def test_outside_ci_without_a_token_says_how_to_get_one() -> None:
    with httpx.Client() as http, pytest.raises(PublishError) as caught:
        resolve_credentials(
            "https://u:pw@h.example/legacy/", http=http, reporter=RecordingReporter(), environ={}
        )
    assert "not in a CI job" in caught.value.message
    assert "KEYLESS_TOKEN" in (caught.value.hint or "")
    assert "keyless ci-emulator run" in (caught.value.hint or "")
    assert "pw" not in caught.value.message.replace("provides", "")


def test_always_mode_on_an_index_without_trusted_publishing(stub: StubIndex) -> None:
    environ = {"GITHUB_ACTIONS": "true", "KEYLESS_TOKEN": "ignored-in-always-mode"}
    with httpx.Client() as http, pytest.raises(PublishError) as caught:
        resolve_credentials(
            stub.upload_url, mode="always", http=http, reporter=RecordingReporter(), environ=environ
        )
    assert "offers no Trusted Publishing" in caught.value.message


def test_unknown_mode() -> None:
    with httpx.Client() as http, pytest.raises(PublishError, match="unknown trusted-publishing"):
        resolve_credentials(
            "https://h/legacy/", mode="sometimes", http=http, reporter=RecordingReporter()
        )


# --------------------------------------------------------------- the CI's OIDC token: errors


def test_missing_id_token_permission(ci: Emulator) -> None:
    environ = ci.environment(github_job("perm-demo", id_token=False))
    with pytest.raises(PublishError) as caught:
        ambient_oidc_token(AUDIENCE, environ)
    assert "`id-token: write` permission is missing" in caught.value.message
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in caught.value.message
    assert "permissions:\n      id-token: write" in (caught.value.hint or "")
    assert "job level" in (caught.value.hint or "")


def test_fork_pull_request(ci: Emulator) -> None:
    claims = github_job("fork-demo", event="pull_request", fork_pr=True, environment=None)
    with pytest.raises(PublishError) as caught:
        ambient_oidc_token(AUDIENCE, ci.environment(claims))
    assert "GitHub gives pull requests from forks no OIDC token" in caught.value.message
    assert "publish from a tag or release" in caught.value.message


def test_gitlab_job_without_id_tokens(gitlab_ci: Emulator) -> None:
    claims = JobClaims(provider="gitlab", repo="group/demo", id_token=False)
    with pytest.raises(PublishError) as caught:
        ambient_oidc_token(AUDIENCE, gitlab_ci.environment(claims))
    assert "KEYLESS_ID_TOKEN is not set" in caught.value.message
    assert caught.value.hint is not None
    assert "id_tokens:\n    KEYLESS_ID_TOKEN:\n      aud: keyless" in caught.value.hint


def test_gitlab_job_with_a_token_for_another_audience(gitlab_ci: Emulator) -> None:
    claims = JobClaims(provider="gitlab", repo="group/demo", audiences=("pypi",))
    with pytest.raises(PublishError) as caught:
        ambient_oidc_token(AUDIENCE, gitlab_ci.environment(claims))
    assert "PYPI_ID_TOKEN, for another audience" in caught.value.message
    assert "aud 'keyless'" in caught.value.message


def test_the_id_library_fetches_the_token_in_a_github_job(
    ci: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = ci.environment(github_job("ambient-demo"))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    token = ambient_oidc_token(AUDIENCE)
    assert token is not None
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == AUDIENCE
    assert claims["repository"] == "octo-org/ambient-demo"


def fake_jwt(claims: dict[str, Any]) -> str:
    def part(document: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.sig"


def test_a_refusal_names_the_claims_and_the_fix() -> None:
    jwt = fake_jwt(
        {
            "iss": "https://token.actions.githubusercontent.com",
            "aud": "pypi",
            "repository": "octo-org/demo",
            "workflow_ref": "octo-org/demo/.github/workflows/release.yml@refs/tags/v1",
            "job_workflow_ref": "octo-org/shared/.github/workflows/publish.yml@refs/heads/main",
            "ref": "refs/tags/v1",
            "environment": "release",
            "event_name": "push",
            "sha": "0" * 40,
        }
    )
    body = {
        "message": "Token request failed",
        "errors": [{"code": "invalid-publisher", "description": "environment: no match"}],
    }
    error = explain_refusal(body, jwt, AUDIENCE)
    assert "invalid-publisher: environment: no match" in error.message
    for claim in (
        "repository: octo-org/demo",
        "workflow_ref: octo-org/demo/.github/workflows/release.yml@refs/tags/v1",
        "job_workflow_ref: octo-org/shared/",
        "ref: refs/tags/v1",
        "environment: release",
        "event_name: push",
    ):
        assert claim in error.message
    assert "sha:" not in error.message  # only the claims that decide a match
    hint = error.hint or ""
    assert "reusable workflow octo-org/shared/.github/workflows/publish.yml" in hint
    assert "PyPI cannot publish from reusable workflows" in hint
    assert "audience is 'pypi' but this index expects 'keyless'" in hint
    assert "--workflow release.yml" in hint
    assert "--reusable-workflow octo-org/shared/.github/workflows/publish.yml" in hint
    assert "--environment release" in hint


# ----------------------------------------------------------- minting, re-minting, burning


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def trusted_on_prod(
    tp_server: LiveServer,
    tp_http: httpx.Client,
    http: httpx.Client,
    ci: Emulator,
    project: str,
    **publisher: str,
) -> Discovery:
    """`project` on prod with a GitHub publisher of its own, and prod's Trusted Publishing."""
    make_project(tp_server, tp_http, project)
    add_github_publisher(tp_server, tp_http, ci, project, **publisher)
    found = discover(tp_server.upload_url("prod"), http)
    assert found is not None
    return found


def test_a_token_near_expiry_is_reminted_and_all_are_burned(
    tp_server: LiveServer, tp_http: httpx.Client, http: httpx.Client, ci: Emulator
) -> None:
    found = trusted_on_prod(tp_server, tp_http, http, ci, "remint-clock")
    clock = Clock()
    reporter = RecordingReporter()
    claims = github_job("remint-clock")
    credentials = TrustedPublishingCredentials(
        found,
        http=http,
        reporter=reporter,
        oidc_token=lambda audience: ci.token(audience, claims),
        clock=clock,
    )
    first = credentials.token()
    assert first.startswith("keyless-")
    assert first in reporter.of("mask")
    assert credentials.token() == first  # still fresh: no new mint
    clock.now += 10 * 60 + 1  # a 15-minute token now has < 5 minutes left
    second = credentials.token()
    assert second != first
    assert credentials.mint_count == 2
    assert second in reporter.of("mask")
    assert upload(tp_http, "prod", second, *build_wheel("remint-clock", "1.0")).status_code == 200
    credentials.close()
    refused = upload(tp_http, "prod", second, *build_wheel("remint-clock", "1.1"))
    assert refused.status_code == 403
    assert upload(tp_http, "prod", first, *build_wheel("remint-clock", "1.2")).status_code == 403
    mints = [
        row for row in audit(tp_server, tp_http, "remint-clock") if row["action"] == "mint_token"
    ]
    assert len(mints) == 2


def test_a_failed_remint_keeps_the_token_while_it_is_valid(
    tp_server: LiveServer, tp_http: httpx.Client, http: httpx.Client, ci: Emulator
) -> None:
    found = trusted_on_prod(tp_server, tp_http, http, ci, "remint-fails")
    jwt = ci.token(AUDIENCE, github_job("remint-fails"))
    clock = Clock()
    reporter = RecordingReporter()
    # The same OIDC token every time, as in a GitLab job: the index refuses its reuse.
    credentials = TrustedPublishingCredentials(
        found, http=http, reporter=reporter, oidc_token=lambda audience: jwt, clock=clock
    )
    first = credentials.token()
    clock.now += 11 * 60
    assert credentials.token() == first
    assert "could not renew the upload token" in reporter.of("warning")[0]
    clock.now += 5 * 60
    with pytest.raises(PublishError) as caught:
        credentials.token()
    assert "invalid-reuse-token" in caught.value.message
    credentials.close()


def test_a_wrong_environment_is_refused_with_the_reason(
    tp_server: LiveServer, tp_http: httpx.Client, http: httpx.Client, ci: Emulator
) -> None:
    found = trusted_on_prod(tp_server, tp_http, http, ci, "mint-refused", environment="pypi")
    claims = github_job("mint-refused", environment="staging")
    credentials = TrustedPublishingCredentials(
        found,
        http=http,
        reporter=RecordingReporter(),
        oidc_token=lambda audience: ci.token(audience, claims),
    )
    with pytest.raises(PublishError) as caught:
        credentials.token()
    assert "invalid-publisher" in caught.value.message
    assert "environment: the token says 'staging'" in caught.value.message
    assert "environment: staging" in caught.value.message  # the decoded claim
    assert "--environment staging" in (caught.value.hint or "")


def test_resolve_in_a_github_job_mints_and_masks(
    tp_server: LiveServer,
    tp_http: httpx.Client,
    http: httpx.Client,
    ci: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_project(tp_server, tp_http, "resolve-demo")
    add_github_publisher(tp_server, tp_http, ci, "resolve-demo")
    environ = ci.environment(github_job("resolve-demo"))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KEYLESS_TOKEN", raising=False)
    reporter = RecordingReporter()
    credentials = resolve_credentials(
        tp_server.upload_url("prod"), http=http, reporter=reporter, environ=environ
    )
    try:
        assert credentials.source == "trusted-publishing"
        token = credentials.token()
        assert token in reporter.of("mask")
        assert any("Trusted Publishing (GitHub Actions)" in m for m in reporter.of("info"))
    finally:
        credentials.close()
