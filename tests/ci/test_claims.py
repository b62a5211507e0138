"""Claim sets shaped like the ones GitHub Actions and GitLab CI issue."""

from __future__ import annotations

import re
from typing import Any

import pytest

from keyless.ci import EmulatorError, JobClaims
from keyless.ci.claims import parse_claim

ISSUER = "http://127.0.0.1:8790"
NOW = 1_700_000_000


def github(**fields: Any) -> dict[str, Any]:
    return JobClaims(repo="octo-org/hello-world", **fields).claims(ISSUER, "keyless", NOW)


def test_github_claim_set_is_realistic() -> None:
    claims = github(workflow="release.yml", ref="refs/tags/v1.0.0", owner_id=65, repo_id=74)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == "keyless"  # one string, never a list
    assert claims["sub"] == "repo:octo-org/hello-world:ref:refs/tags/v1.0.0"
    assert claims["repository"] == "octo-org/hello-world"
    assert claims["repository_owner"] == "octo-org"
    # GitHub writes ids as strings.
    assert (claims["repository_owner_id"], claims["repository_id"]) == ("65", "74")
    assert claims["workflow_ref"] == (
        "octo-org/hello-world/.github/workflows/release.yml@refs/tags/v1.0.0"
    )
    assert claims["job_workflow_ref"] == claims["workflow_ref"]
    assert claims["job_workflow_sha"] == claims["workflow_sha"] == claims["sha"]
    assert re.fullmatch(r"[0-9a-f]{40}", claims["sha"])
    assert (claims["ref_type"], claims["ref_protected"]) == ("tag", "false")
    assert claims["event_name"] == "push"
    assert claims["runner_environment"] == "github-hosted"
    assert (claims["head_ref"], claims["base_ref"]) == ("", "")
    assert "environment" not in claims
    # As in real tokens: valid from 5 minutes before iat to 5 minutes after.
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW - 300, NOW + 300)
    assert re.fullmatch(r"[0-9a-f-]{36}", claims["jti"])
    for name in ("run_id", "run_number", "run_attempt", "actor_id"):
        assert isinstance(claims[name], str)


def test_identity_repeats_across_runs_but_jti_does_not() -> None:
    first, second = github(), github()
    for name in ("repository_owner_id", "repository_id", "sha", "actor_id"):
        assert first[name] == second[name]
    assert first["jti"] != second["jti"]


def test_environment_sets_claim_and_subject() -> None:
    claims = github(environment="pypi")
    assert claims["environment"] == "pypi"
    assert claims["sub"] == "repo:octo-org/hello-world:environment:pypi"


def test_pull_request_subject_and_refs() -> None:
    claims = github(event="pull_request")
    assert claims["sub"] == "repo:octo-org/hello-world:pull_request"
    assert claims["ref"] == "refs/pull/1/merge"
    assert (claims["head_ref"], claims["base_ref"]) == ("feature", "main")
    target = github(event="pull_request_target")
    assert target["ref"] == "refs/heads/main"
    assert target["sub"] == "repo:octo-org/hello-world:ref:refs/heads/main"


def test_reusable_workflow_names_the_callee_in_job_workflow_ref() -> None:
    callee = "octo-org/shared/.github/workflows/publish.yml@refs/heads/main"
    claims = github(workflow="release.yml", reusable_workflow=callee)
    assert claims["job_workflow_ref"] == callee
    assert claims["workflow_ref"] == (
        "octo-org/hello-world/.github/workflows/release.yml@refs/heads/main"
    )
    assert claims["job_workflow_sha"] != claims["workflow_sha"]
    pinned = "a" * 40
    assert (
        github(reusable_workflow=f"octo-org/shared/.github/workflows/p.yml@{pinned}")[
            "job_workflow_sha"
        ]
        == pinned
    )


def test_extra_overrides_and_drop_removes() -> None:
    claims = github(
        extra={"aud": ["keyless", "other"], "repository": "evil/repo", "new": 1},
        drop=frozenset({"jti", "nbf"}),
    )
    assert claims["aud"] == ["keyless", "other"]
    assert claims["repository"] == "evil/repo"
    assert claims["new"] == 1
    assert "jti" not in claims
    assert "nbf" not in claims


def test_lifetime() -> None:
    assert github(lifetime=3600)["exp"] == NOW + 3600


def test_gitlab_claim_set() -> None:
    job = JobClaims(
        provider="gitlab", repo="my-group/sub/my-project", ref="refs/tags/v2.0", environment="prod"
    )
    claims = job.claims(ISSUER, "keyless", NOW)
    assert claims["sub"] == "project_path:my-group/sub/my-project:ref_type:tag:ref:v2.0"
    assert claims["namespace_path"] == "my-group/sub"
    assert claims["project_path"] == "my-group/sub/my-project"
    assert (claims["ref"], claims["ref_type"], claims["ref_path"]) == (
        "v2.0",
        "tag",
        "refs/tags/v2.0",
    )
    assert claims["ci_config_ref_uri"] == (
        "127.0.0.1:8790/my-group/sub/my-project//.gitlab-ci.yml@refs/tags/v2.0"
    )
    assert claims["ci_config_sha"] == claims["sha"]
    assert claims["environment"] == "prod"
    assert claims["pipeline_source"] == "push"
    # GitLab: valid from 5 seconds before iat, for the length of the job.
    assert (claims["nbf"], claims["exp"]) == (NOW - 5, NOW + 3600)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"repo": "no-slash"}, "not OWNER/REPO"),
        ({"repo": "a/b", "workflow": ".github/workflows/x.yml"}, "no folder"),
        ({"repo": "a/b", "workflow": "x.txt"}, r"\.yml or \.yaml"),
        ({"repo": "a/b", "ref": "main"}, "full ref"),
        ({"repo": "a/b", "sha": "abc"}, "40 lowercase hex"),
        ({"repo": "a/b", "event": "pushed"}, "not one of"),
        ({"repo": "a/b", "fork_pr": True, "event": "push"}, "fork_pr needs"),
        ({"repo": "a/b", "reusable_workflow": "x.yml@main"}, "reusable workflow"),
        ({"repo": "a/b", "lifetime": 0}, "positive"),
        ({"repo": "a/b", "provider": "jenkins"}, "provider must be"),
        ({"repo": "a/b", "provider": "gitlab", "event": "release"}, "pipeline source"),
        ({"repo": "a/b", "audiences": "keyless"}, "audiences"),
    ],
)
def test_impossible_jobs_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(EmulatorError, match=message):
        JobClaims(**fields)


def test_fork_pr_defaults_to_pull_request_event() -> None:
    assert JobClaims(repo="a/b", fork_pr=True).event_name == "pull_request"


def test_json_round_trip() -> None:
    job = JobClaims(
        repo="a/b",
        environment="pypi",
        audiences=("x", "y"),
        extra={"k": [1]},
        drop=frozenset({"jti"}),
    )
    assert JobClaims.from_json(job.to_json()) == job
    with pytest.raises(EmulatorError, match="unknown job fields"):
        JobClaims.from_json({**job.to_json(), "bogus": 1})


def test_parse_claim() -> None:
    assert parse_claim("environment=pypi") == ("environment", "pypi")
    assert parse_claim("a=b=c") == ("a", "b=c")
    assert parse_claim("aud:=[1, 2]") == ("aud", [1, 2])
    assert parse_claim("exp:=0") == ("exp", 0)
    for bad in ("novalue", "=x", "x:=nope"):
        with pytest.raises(EmulatorError):
            parse_claim(bad)
