"""`keyless publish` end to end: a real TLS keyless server, the CI emulator's real OIDC tokens,
the command run as a job step — and, outside CI, with a plain API token next to twine."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from keyless.ci.emulator import Emulator, JobClaims
from keyless.index.accounts import hash_token
from keyless.publish import (
    IndexClient,
    RecordingReporter,
    TrustedPublishingCredentials,
    UploadOptions,
    discover,
    new_http_client,
    publish,
)
from keyless.publish.reporter import FileResult
from keyless.store import db
from keyless.store.db import open_database
from tests.builders import build_wheel, write_dist
from tests.conftest import AUDIENCE, LiveServer, make_project
from tests.index.test_clients import twine_upload

from .conftest import (
    add_github_publisher,
    audit,
    github_job,
    job_env,
    publish_in_job,
    run_publish,
    simple_hashes,
    write_release,
)

MASK = re.compile(r"^::add-mask::(keyless-\S+)$", re.MULTILINE)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def sha256s(paths: list[Path]) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_a_release_without_any_api_token_and_its_no_op_repeat(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, tp_http, "e2e-demo")
    add_github_publisher(tp_server, tp_http, ci, "e2e-demo", environment="pypi")
    paths = write_release(tmp_path / "dist", "e2e-demo", "1.0.0")

    first = publish_in_job(
        ci, github_job("e2e-demo"), tp_server, tmp_path, "--trusted-publishing", "always"
    )
    assert first.returncode == 0, output(first)
    hashes = simple_hashes(tp_http, "e2e-demo")
    assert {name: hashes[name] for name in sha256s(paths)} == sha256s(paths)

    # The minted token was masked for GitHub's log, and is printed nowhere else.
    minted = MASK.findall(first.stdout)
    assert len(minted) == 1
    assert output(first).count(minted[0]) == 1
    # One stream in CI (GitHub reads commands from stdout): messages and groups stay in order.
    assert "Trusted Publishing (GitHub Actions)" in first.stdout
    assert "published: 2 uploaded" in first.stdout
    assert first.stdout.index("::group::Checking") < first.stdout.index("::group::Credentials")
    # ...and burned when done.
    from tests.index.uploading import upload

    burned = upload(tp_http, "prod", minted[0], *build_wheel("e2e-demo", "9.9.9"))
    assert burned.status_code == 403

    trail = audit(tp_server, tp_http, "e2e-demo")
    assert [row["action"] for row in trail].count("mint_token") == 1
    uploads = [row for row in trail if row["action"] == "file_upload"]
    order = [row["details"]["filename"] for row in uploads if row["details"]["version"] == "1.0.0"]
    assert order == ["e2e_demo-1.0.0-py3-none-any.whl", "e2e_demo-1.0.0.tar.gz"]  # sdist last
    assert all(row["details"]["trusted_publishers"] for row in uploads[-2:])

    assert tp_server.tls is not None
    with new_http_client(ca_file=tp_server.tls.ca, environ={}) as http:
        client = IndexClient(tp_server.upload_url("prod"), http=http)
        assert client.version_exists("e2e-demo", "1.0.0")
        assert not client.version_exists("e2e-demo", "1.0.1")

    again = publish_in_job(ci, github_job("e2e-demo"), tp_server, tmp_path, "--json")
    assert again.returncode == 0, output(again)
    document = json.loads(again.stdout)
    assert document["ok"] is True
    assert [(f["filename"], f["status"]) for f in document["files"]] == [
        (p.name, "exists") for p in paths
    ]
    for entry in document["files"]:
        assert entry["sha256"] == sha256s(paths)[entry["filename"]]
        assert entry["size"] == (tmp_path / "dist" / entry["filename"]).stat().st_size
        assert entry["url"].startswith(tp_server.url)
    assert "::add-mask::" in again.stderr  # stdout is the JSON's alone


def test_changed_bytes_under_a_published_name_fail_loudly(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, tp_http, "changed-demo")
    add_github_publisher(tp_server, tp_http, ci, "changed-demo")
    published = write_release(tmp_path / "a" / "dist", "changed-demo", "1.0.0")
    first = publish_in_job(ci, github_job("changed-demo"), tp_server, tmp_path / "a")
    assert first.returncode == 0, output(first)

    rebuilt = write_release(tmp_path / "b" / "dist", "changed-demo", "1.0.0", summary="changed")
    second = publish_in_job(ci, github_job("changed-demo"), tp_server, tmp_path / "b")
    assert second.returncode == 1, output(second)
    wheel = rebuilt[0].name
    old, new = sha256s(published)[wheel], sha256s(rebuilt)[wheel]
    assert old != new
    text = output(second)
    assert f"{wheel} is already on the index with DIFFERENT content" in text
    assert old in text
    assert new in text
    assert "bump the version" in text
    assert "::error title=keyless publish%3A " in second.stdout  # a GitHub annotation
    assert "NOT published" in second.stdout
    # Nothing changed on the index; the sdist was held back with its wheel.
    assert simple_hashes(tp_http, "changed-demo")[wheel] == old


@pytest.mark.parametrize(
    ("case", "claims", "expected"),
    [
        (
            "missing id-token permission",
            {"id_token": False},
            ["`id-token: write` permission is missing", "permissions:", "id-token: write"],
        ),
        (
            "fork pull request",
            {"event": "pull_request", "fork_pr": True, "environment": None},
            [
                "GitHub gives pull requests from forks no OIDC token",
                "publish from a tag or release",
            ],
        ),
        (
            "wrong environment",
            {"environment": "staging"},
            [
                "invalid-publisher",
                "environment: the token says 'staging'",
                "environment: staging",
                "--environment staging",
            ],
        ),
        (
            "wrong workflow",
            {"workflow": "nightly.yml"},
            [
                "invalid-publisher",
                "job_workflow_ref: octo-org/refused-demo/.github/workflows/nightly.yml",
                "check the workflow file name",
                "--workflow nightly.yml",
            ],
        ),
    ],
)
def test_a_job_that_cannot_publish_is_told_the_cause_and_the_fix(
    refused_project: None,
    tp_server: LiveServer,
    tp_http: httpx.Client,
    ci: Emulator,
    tmp_path: Path,
    case: str,
    claims: dict[str, Any],
    expected: list[str],
) -> None:
    write_release(tmp_path / "dist", "refused-demo", "2.0.0")
    result = publish_in_job(ci, github_job("refused-demo", **claims), tp_server, tmp_path)
    assert result.returncode == 1, case
    text = output(result)
    for phrase in expected:
        assert phrase in text, f"{case}: {phrase!r} not in\n{text}"
    assert "::error title=keyless publish::" in result.stdout
    assert "Traceback" not in text
    assert not any("2.0.0" in name for name in simple_hashes(tp_http, "refused-demo"))


@pytest.fixture(scope="module")
def refused_project(tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator) -> None:
    make_project(tp_server, tp_http, "refused-demo")
    add_github_publisher(tp_server, tp_http, ci, "refused-demo", environment="pypi")


class ExpireAfterFirstFile(RecordingReporter):
    """When the first file is done, the index expires the upload token in use (as if a long
    release outlived it)."""

    def __init__(self, server: LiveServer) -> None:
        super().__init__()
        self.server = server
        self.expired: list[str] = []

    def file_done(self, result: FileResult) -> None:
        super().file_done(result)
        if not self.expired:
            token = [m for m in self.of("mask") if m.startswith("keyless-")][-1]
            engine = open_database(self.server.database)
            with db.writing(engine) as conn:
                conn.execute(
                    update(db.api_tokens)
                    .where(db.api_tokens.c.token_hash == hash_token(token))
                    .values(expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
                )
            self.expired.append(token)


@pytest.mark.parametrize("session", [False, True], ids=["legacy", "session"])
def test_a_token_expired_mid_release_is_reminted(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path, session: bool
) -> None:
    import ssl

    name = f"expiry-demo-{'session' if session else 'legacy'}"
    make_project(tp_server, tp_http, name)
    add_github_publisher(tp_server, tp_http, ci, name)
    paths = [
        *write_release(tmp_path, name, "1.0.0"),
        write_dist(tmp_path, *build_wheel(name, "1.0.0", tag="py2-none-any")),
    ]
    claims = github_job(name)
    reporter = ExpireAfterFirstFile(tp_server)
    assert tp_server.tls is not None
    verify = ssl.create_default_context(cafile=str(tp_server.tls.ca))
    with httpx.Client(verify=verify, timeout=30) as http:
        found = discover(tp_server.upload_url("prod"), http)
        assert found is not None
        credentials = TrustedPublishingCredentials(
            found,
            http=http,
            reporter=reporter,
            oidc_token=lambda audience: ci.token(audience, claims),
        )
        try:
            result = publish(
                paths,
                tp_server.upload_url("prod"),
                credentials=credentials,
                reporter=reporter,
                http=http,
                options=UploadOptions(parallel=1),
                session=session,
            )
        finally:
            credentials.close()
    assert result.ok, result.to_json()
    assert result.upload_api == ("session" if session else "legacy")
    assert [f.status for f in result.files] == ["uploaded"] * 3
    assert [f.filename for f in result.files][1].endswith(".tar.gz")
    assert credentials.mint_count == 2
    assert any("refused the upload token" in w and "expired" in w for w in reporter.of("warning"))
    trail = audit(tp_server, tp_http, name)
    assert [row["action"] for row in trail].count("mint_token") == 2
    if session:
        return  # a session's files are added when it is published, with the token of then
    token_ids = [row["details"]["token_id"] for row in trail if row["action"] == "file_upload"]
    assert len(set(token_ids[-3:])) == 2  # first file with one token, the rest with the next


def test_an_api_token_outside_ci_stores_what_twine_stores(
    tp_server: LiveServer, tp_http: httpx.Client, tmp_path: Path
) -> None:
    paths = write_release(
        tmp_path / "dist",
        "token-demo",
        "1.2.0",
        summary="Published two ways",
        requires_dist=["httpx>=0.27"],
        project_urls={"Source": "https://example.com/src"},
    )
    env = job_env(tp_server, tmp_path)
    env["KEYLESS_TOKEN"] = tp_server.token("token-owner", "prod")
    # A private CA: not trusted by default, named with --cert.
    untrusted = {k: v for k, v in env.items() if k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}
    refused = run_publish(["--repository-url", tp_server.upload_url("prod")], untrusted, tmp_path)
    assert refused.returncode == 1
    assert "pass its CA with --cert" in refused.stderr
    assert tp_server.tls is not None
    dry = run_publish(
        [
            *("--repository-url", tp_server.upload_url("prod"), "--dry-run", "--json"),
            *("--cert", str(tp_server.tls.ca)),
        ],
        untrusted,
        tmp_path,
    )
    assert dry.returncode == 0, output(dry)
    assert {f["status"] for f in json.loads(dry.stdout)["files"]} == {"would-upload"}
    assert simple_hashes(tp_http, "token-demo") == {}

    ours = run_publish(
        ["--repository-url", tp_server.upload_url("prod"), "--json", *map(str, paths)],
        env,
        tmp_path,
    )
    assert ours.returncode == 0, output(ours)
    assert "using the API token from KEYLESS_TOKEN" in ours.stderr
    assert env["KEYLESS_TOKEN"] not in output(ours)
    assert {f["status"] for f in json.loads(ours.stdout)["files"]} == {"uploaded"}

    twine = twine_upload(tp_server, "test", tp_server.token("token-owner", "test"), paths, env)
    assert twine.returncode == 0, output(twine)

    assert simple_hashes(tp_http, "token-demo", "prod") == sha256s(paths)
    assert simple_hashes(tp_http, "token-demo", "test") == sha256s(paths)
    by_us = tp_http.get("/prod/pypi/token-demo/1.2.0/json").json()["info"]
    by_twine = tp_http.get("/test/pypi/token-demo/1.2.0/json").json()["info"]
    for key in ("name", "version", "summary", "requires_dist", "project_urls", "requires_python"):
        assert by_us[key] == by_twine[key], key


def test_a_gitlab_job_publishes_too(
    tp_server: LiveServer, tp_http: httpx.Client, gitlab_ci: Emulator, tmp_path: Path
) -> None:
    owner = make_project(tp_server, tp_http, "gitlab-e2e")
    answer = tp_http.post(
        "/prod/api/projects/gitlab-e2e/publishers",
        json={
            "kind": "gitlab",
            "config": {
                "namespace": "group",
                "project": "gitlab-e2e",
                "workflow_filepath": ".gitlab-ci.yml",
                "issuer": gitlab_ci.issuer,
            },
        },
        headers={"Authorization": f"Bearer {owner}"},
    )
    assert answer.status_code == 200, answer.text
    paths = write_release(tmp_path / "dist", "gitlab-e2e", "1.0.0")
    claims = JobClaims(provider="gitlab", repo="group/gitlab-e2e", audiences=(AUDIENCE,))
    result = publish_in_job(gitlab_ci, claims, tp_server, tmp_path)
    assert result.returncode == 0, output(result)
    assert "section_start:" in result.stdout  # collapsible sections in GitLab's log
    assert simple_hashes(tp_http, "gitlab-e2e")[paths[0].name] == sha256s(paths)[paths[0].name]


def test_no_dists_is_a_clear_error(tp_server: LiveServer, tmp_path: Path) -> None:
    env = job_env(tp_server, tmp_path)
    env["KEYLESS_TOKEN"] = "keyless-unused"
    result = run_publish(["--repository-url", tp_server.upload_url("prod")], env, tmp_path)
    assert result.returncode == 1
    assert "no wheels or sdists in dist/" in result.stderr
    assert "python -m build" in result.stderr
