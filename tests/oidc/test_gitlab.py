"""GitLab CI/CD publishers, on gitlab.com and a self-managed instance."""

from __future__ import annotations

import base64
import json
from typing import Any

import id as id_library
import pytest

from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import PROVIDERS, Mismatch
from keyless.oidc.providers.gitlab import id_token_variable
from tests.oidc.conftest import recorded

gitlab = PROVIDERS["gitlab"]
SELF_MANAGED = "https://gitlab.example.com"
SHA = "c4e2b7d1a9f08e3c6b5a4d2e1f0a9b8c7d6e5f4a"


def config(**overrides: str) -> dict[str, Any]:
    base = {
        "namespace": "python-tools",
        "project": "fastwidget",
        "workflow_filepath": ".gitlab-ci.yml",
    }
    return gitlab.validate_config({**base, **overrides})


def self_managed(**overrides: str) -> dict[str, Any]:
    base = {
        "namespace": "my-group/platform",
        "project": "my-project",
        "workflow_filepath": "ci/release.yml",
        "issuer": SELF_MANAGED,
    }
    return gitlab.validate_config({**base, **overrides})


def check(
    claims: dict[str, Any], *, pinned: dict[str, str] | None = None, **overrides: str
) -> list[Mismatch]:
    return gitlab.check(config(**overrides), pinned or {}, claims)


def claims_of(found: list[Mismatch]) -> list[str]:
    return [m.claim for m in found]


def test_gitlab_com_tag_pipeline_matches() -> None:
    claims = recorded("gitlab_com_tag")
    assert check(claims) == []
    assert check(claims, environment="pypi") == []


def test_self_managed_instance_matches() -> None:
    assert gitlab.check(self_managed(), {}, recorded("gitlab_self_managed")) == []


def test_namespace_and_project_are_case_insensitive() -> None:
    assert check(recorded("gitlab_com_tag"), namespace="Python-Tools", project="FastWidget") == []


def test_a_different_project_is_refused() -> None:
    found = check(recorded("gitlab_com_tag"), project="slowwidget")
    assert claims_of(found) == ["project_path", "sub", "ci_config_ref_uri"]
    assert found[0].message == (
        "project_path: the token says 'python-tools/fastwidget', the publisher expects "
        "'python-tools/slowwidget'"
    )


def test_sub_must_name_the_project_up_to_a_colon() -> None:
    # 'fastwidget' must not accept a token whose sub is about 'fastwidget-evil'.
    claims = recorded("gitlab_com_tag")
    claims["sub"] = "project_path:python-tools/fastwidget-evil:ref_type:tag:ref:v1.4.2"
    assert [m.message for m in check(claims)] == [
        "sub: the token says 'project_path:python-tools/fastwidget-evil:ref_type:tag:ref:v1.4.2'"
        ", the publisher expects it to start with 'project_path:python-tools/fastwidget'"
    ]


def test_environment_is_case_sensitive() -> None:
    assert [m.message for m in check(recorded("gitlab_com_tag"), environment="PyPI")] == [
        "environment: the token says 'pypi', the publisher expects 'PyPI' (names differ only in "
        "case; this claim is compared exactly)"
    ]


def test_a_missing_environment_is_refused_when_configured() -> None:
    claims = recorded("gitlab_com_tag")
    del claims["environment"]
    assert claims_of(check(claims, environment="pypi")) == ["environment"]


def test_another_pipeline_file_is_refused() -> None:
    found = check(recorded("gitlab_com_tag"), workflow_filepath="ci/publish.yml")
    assert [m.message for m in found] == [
        "ci_config_ref_uri: the token says "
        "'gitlab.com/python-tools/fastwidget//.gitlab-ci.yml@refs/tags/v1.4.2', the publisher "
        "expects 'gitlab.com/python-tools/fastwidget//ci/publish.yml@refs/tags/v1.4.2'"
    ]


def test_the_pipeline_file_must_be_from_the_runs_ref_or_sha() -> None:
    claims = recorded("gitlab_com_tag")
    uri = "gitlab.com/python-tools/fastwidget//.gitlab-ci.yml@"
    claims["ci_config_ref_uri"] = uri + "refs/heads/unprotected"
    assert claims_of(check(claims)) == ["ci_config_ref_uri"]
    claims["ci_config_ref_uri"] = uri + SHA
    assert check(claims) == []


def test_a_self_managed_token_does_not_match_a_gitlab_com_publisher() -> None:
    cfg = self_managed(issuer="https://gitlab.com")
    found = gitlab.check(cfg, {}, recorded("gitlab_self_managed"))
    assert claims_of(found) == ["iss", "ci_config_ref_uri"]
    assert found[0].message == (
        "iss: the token was issued by 'https://gitlab.example.com', the publisher accepts "
        "tokens from 'https://gitlab.com'"
    )


def test_ref_constraint_applies_to_ref_path() -> None:
    claims = recorded("gitlab_self_managed")  # refs/heads/main
    assert gitlab.check(self_managed(ref="refs/heads/main"), {}, claims) == []
    found = gitlab.check(self_managed(ref="refs/tags/*"), {}, claims)
    assert [m.message for m in found] == [
        "ref_path: the token says 'refs/heads/main', the publisher accepts only refs matching "
        "'refs/tags/*'"
    ]


@pytest.mark.parametrize(
    "claim", ["sub", "project_path", "ci_config_ref_uri", "ref_path", "sha", "jti"]
)
def test_required_claims(claim: str) -> None:
    claims = recorded("gitlab_com_tag")
    del claims[claim]
    assert claim in claims_of(check(claims))


def test_namespace_id_is_pinned_and_checked() -> None:
    claims = recorded("gitlab_com_tag")
    assert gitlab.pins(claims) == {"namespace_id": "73024311"}
    assert check(claims, pinned={"namespace_id": "73024311"}) == []
    claims["namespace_id"] = "99"
    found = check(claims, pinned={"namespace_id": "73024311"})
    assert claims_of(found) == ["namespace_id"]
    assert "pinned to '73024311' on its first use" in found[0].message


def test_lookup_keys() -> None:
    assert gitlab.lookup_key(config(namespace="Python-Tools")) == (
        "gitlab:https://gitlab.com:python-tools/fastwidget"
    )
    assert gitlab.lookup_key_from_claims("https://gitlab.com", recorded("gitlab_com_tag")) == (
        "gitlab:https://gitlab.com:python-tools/fastwidget"
    )
    assert gitlab.lookup_key(self_managed()) == gitlab.lookup_key_from_claims(
        SELF_MANAGED, recorded("gitlab_self_managed")
    )
    assert gitlab.lookup_key(self_managed()) != gitlab.lookup_key(
        self_managed(issuer="https://gitlab.com")
    )


def test_describe_publisher_url_summary() -> None:
    assert gitlab.describe(recorded("gitlab_com_tag")) == {
        "identity": "python-tools/fastwidget",
        "repository": "python-tools/fastwidget",
        "workflow": "gitlab.com/python-tools/fastwidget//.gitlab-ci.yml@refs/tags/v1.4.2",
        "ref": "refs/tags/v1.4.2",
        "sha": SHA,
        "environment": "pypi",
        "run_url": "https://gitlab.com/python-tools/fastwidget/-/jobs/7021148711",
        "commit_url": f"https://gitlab.com/python-tools/fastwidget/-/commit/{SHA}",
        "event_name": "push",
    }
    assert gitlab.publisher_url(self_managed()) == (
        "https://gitlab.example.com/my-group/platform/my-project"
    )
    assert gitlab.summary(self_managed(environment="pypi")) == (
        "GitLab my-group/platform/my-project, CI file ci/release.yml, environment pypi, "
        "issuer https://gitlab.example.com"
    )
    assert gitlab.specificity(config(environment="pypi", ref="refs/tags/*")) == 2


def test_validate_config_reports_every_problem() -> None:
    with pytest.raises(PublisherConfigError) as caught:
        gitlab.validate_config(
            {
                "namespace": "group..sub",
                "project": "widget.git",
                "workflow_filepath": "/.gitlab-ci.yml",
                "environment": "prod;rm",
                "ref": "*",
                "issuer": "gitlab.example.com",
            }
        )
    assert set(caught.value.errors) == {
        "namespace",
        "project",
        "workflow_filepath",
        "environment",
        "ref",
        "issuer",
    }
    assert caught.value.errors["project"] == "must not end with '.git' or '.atom'"
    assert "without a leading '/'" in caught.value.errors["workflow_filepath"]


def test_validate_config_defaults_and_normalizes_the_issuer() -> None:
    assert config()["issuer"] == "https://gitlab.com"
    assert self_managed(issuer="https://gitlab.example.com/")["issuer"] == SELF_MANAGED
    assert config(environment="review/${CI_COMMIT_REF_SLUG}")["environment"] == (
        "review/${CI_COMMIT_REF_SLUG}"
    )


@pytest.mark.parametrize(
    ("audience", "variable"),
    [
        ("keyless", "KEYLESS_ID_TOKEN"),
        ("keyless-test", "KEYLESS_TEST_ID_TOKEN"),
        ("keyless:prod", "KEYLESS_PROD_ID_TOKEN"),
        ("http://test.audience", "HTTP___TEST_AUDIENCE_ID_TOKEN"),
        ("1abc", "_ABC_ID_TOKEN"),  # a leading digit is replaced too
    ],
)
def test_the_id_token_variable_is_where_the_id_library_looks(
    audience: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one home of the rule, checked against the client that reads the variable in a real
    # GitLab job: `keyless publish` and twine's Trusted Publishing both ask the `id` library.
    assert id_token_variable(audience) == variable
    payload = base64.urlsafe_b64encode(json.dumps({"aud": audience}).encode()).decode()
    token = f"e30.{payload.rstrip('=')}.c2ln"
    for name in ("GITHUB_ACTIONS", "GOOGLE_SERVICE_ACCOUNT_NAME", "BUILDKITE", "CIRCLECI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv(id_token_variable(audience), token)
    assert id_library.detect_credential(audience) == token
