"""GitHub Actions publishers: config validation and the claim-check table, on recorded claims."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import PROVIDERS, Mismatch
from tests.oidc.conftest import GITHUB, recorded

github = PROVIDERS["github"]
SHA = "621e4974ca25ce531773def586ba3ed8e736b3fc"
EMULATOR = "http://127.0.0.1:8765"


def config(**overrides: str) -> dict[str, Any]:
    base = {"owner": "pypa", "repository": "sampleproject", "workflow": "release.yml"}
    return github.validate_config({**base, **overrides})


def check(
    claims: dict[str, Any], *, pinned: dict[str, str] | None = None, **overrides: str
) -> list[Mismatch]:
    return github.check(config(**overrides), pinned or {}, claims)


def messages(found: list[Mismatch]) -> list[str]:
    return [m.message for m in found]


def on_ref(claims: dict[str, Any], ref: str) -> dict[str, Any]:
    """The same run, but on another ref (all ref-bearing claims follow)."""
    for name in ("workflow_ref", "job_workflow_ref"):
        claims[name] = claims[name].rsplit("@", 1)[0] + f"@{ref}"
    claims["ref"] = ref
    return claims


# --- recorded runs that match ---------------------------------------------------------------


def test_push_of_a_tag_matches() -> None:
    assert check(recorded("github_push_tag")) == []


def test_release_in_an_environment_matches_with_and_without_the_environment() -> None:
    claims = recorded("github_release_environment")
    assert check(claims, environment="pypi") == []
    assert check(claims) == []  # no environment configured: any environment passes


# --- repository and owner -------------------------------------------------------------------


@pytest.mark.parametrize(("repository"), ["SampleProject", "SAMPLEPROJECT", "sampleProject"])
def test_repository_case_variants_are_accepted_silently(repository: str) -> None:
    assert check(recorded("github_push_tag"), repository=repository) == []


def test_token_spelling_the_repository_in_another_case_is_accepted() -> None:
    claims = recorded("github_push_tag")
    claims["repository"] = "pypa/SampleProject"
    claims["job_workflow_ref"] = claims["job_workflow_ref"].replace(
        "sampleproject", "SampleProject"
    )
    assert check(claims) == []


def test_a_different_repository_is_refused() -> None:
    found = check(recorded("github_push_tag"), repository="sampleproject2")
    assert found[0] == Mismatch(
        "repository",
        "repository: the token says 'pypa/sampleproject', the publisher expects "
        "'pypa/sampleproject2'",
    )
    assert {m.claim for m in found} == {"repository", "job_workflow_ref"}


def test_owner_is_compared_exactly_and_a_case_difference_is_named() -> None:
    found = check(recorded("github_push_tag"), owner="PyPA")
    assert messages(found) == [
        "repository_owner: the token says 'pypa', the publisher expects 'PyPA' (names differ "
        "only in case; this claim is compared exactly)"
    ]


def test_a_different_owner_is_refused_without_a_case_note() -> None:
    claims = recorded("github_push_tag")
    claims["repository_owner"] = "pypa-fork"
    assert messages(check(claims)) == [
        "repository_owner: the token says 'pypa-fork', the publisher expects 'pypa'"
    ]


def test_owner_id_is_pinned_on_first_use() -> None:
    claims = recorded("github_push_tag")
    assert github.pins(claims) == {"repository_owner_id": "647025"}
    assert check(claims, pinned={"repository_owner_id": "647025"}) == []


def test_a_changed_owner_id_is_refused() -> None:
    # The account 'pypa' was deleted and someone registered the name again.
    claims = recorded("github_push_tag")
    claims["repository_owner_id"] = "99887766"
    found = check(claims, pinned={"repository_owner_id": "647025"})
    assert [m.claim for m in found] == ["repository_owner_id"]
    assert found[0].message == (
        "repository_owner_id: the token says '99887766', but the publisher was pinned to owner "
        "id '647025' on its first use: the owner id changed, so the GitHub account 'pypa' is "
        "not the one that published before (deleted and re-created, or renamed and its name "
        "taken by someone else?) — a project owner must confirm the publisher again"
    )


def test_owner_id_given_by_the_admin_is_checked() -> None:
    claims = recorded("github_push_tag")
    assert check(claims, owner_id="647025") == []
    found = check(claims, owner_id="1")
    assert [m.claim for m in found] == ["repository_owner_id"]
    assert "expects owner id '1'" in found[0].message


# --- workflow -------------------------------------------------------------------------------


def test_a_different_workflow_is_refused() -> None:
    assert messages(check(recorded("github_push_tag"), workflow="publish.yml")) == [
        "job_workflow_ref: the token says "
        "'pypa/sampleproject/.github/workflows/release.yml@refs/tags/v4.0.0', the publisher "
        "expects 'pypa/sampleproject/.github/workflows/publish.yml@refs/tags/v4.0.0'"
    ]


def test_the_workflow_file_name_is_case_sensitive() -> None:
    assert [m.claim for m in check(recorded("github_push_tag"), workflow="Release.yml")] == [
        "job_workflow_ref"
    ]


def test_the_workflow_ref_must_end_with_the_runs_ref() -> None:
    claims = recorded("github_push_tag")
    claims["job_workflow_ref"] = "pypa/sampleproject/.github/workflows/release.yml@refs/heads/x"
    assert [m.claim for m in check(claims)] == ["job_workflow_ref"]


def test_the_workflow_ref_may_end_with_the_sha_when_there_is_no_ref() -> None:
    # Deployments: GitHub gives an empty ref and names the workflow by commit.
    claims = recorded("github_push_tag")
    claims["ref"] = ""
    claims["job_workflow_ref"] = f"pypa/sampleproject/.github/workflows/release.yml@{SHA}"
    assert check(claims) == []


def test_a_workflow_in_another_repository_is_refused() -> None:
    claims = recorded("github_push_tag")
    claims["job_workflow_ref"] = "evil/sampleproject/.github/workflows/release.yml@refs/tags/v4.0.0"
    assert [m.claim for m in check(claims)] == ["job_workflow_ref"]


# --- environment ----------------------------------------------------------------------------


def test_environment_is_compared_case_insensitively() -> None:
    assert check(recorded("github_release_environment"), environment="PyPI") == []


def test_a_different_environment_is_refused() -> None:
    claims = recorded("github_release_environment")
    claims["environment"] = "release"
    assert messages(check(claims, environment="pypi")) == [
        "environment: the token says 'release', the publisher expects 'pypi'"
    ]


def test_a_token_without_environment_is_refused_when_one_is_configured() -> None:
    assert messages(check(recorded("github_push_tag"), environment="pypi")) == [
        "environment: the token has no environment, the publisher expects 'pypi' (the "
        "publishing job needs `environment: pypi`)"
    ]


# --- ref constraint -------------------------------------------------------------------------


def test_ref_inside_the_constraint_is_accepted() -> None:
    assert check(recorded("github_push_tag"), ref="refs/tags/v*") == []


def test_ref_outside_the_constraint_is_refused() -> None:
    claims = on_ref(recorded("github_push_tag"), "refs/heads/main")
    assert messages(check(claims, ref="refs/tags/v*")) == [
        "ref: the token says 'refs/heads/main', the publisher accepts only refs matching "
        "'refs/tags/v*'"
    ]


def test_the_ref_constraint_is_case_sensitive() -> None:
    claims = on_ref(recorded("github_push_tag"), "refs/tags/V4.0.0")
    assert [m.claim for m in check(claims, ref="refs/tags/v*")] == ["ref"]


# --- events ---------------------------------------------------------------------------------


def test_pull_request_target_is_refused() -> None:
    assert messages(check(recorded("github_pull_request_target"))) == [
        "event_name: the workflow was triggered by 'pull_request_target', which is refused: "
        "such runs act on pull requests, including ones from forks, and must not publish"
    ]


def test_the_same_run_from_a_push_is_accepted() -> None:
    claims = recorded("github_pull_request_target")
    claims["event_name"] = "push"
    assert check(claims) == []


# --- reusable workflows ---------------------------------------------------------------------

REUSABLE = "octo-org/shared-workflows/.github/workflows/pypi-publish.yml"


def check_reusable(claims: dict[str, Any], **overrides: str) -> list[Mismatch]:
    settings = {
        "owner": "octo-org",
        "repository": "widgets",
        "workflow": "release.yml",
        "environment": "pypi",
        **overrides,
    }
    return github.check(github.validate_config(settings), {}, claims)


def test_a_reusable_workflow_call_matches_when_both_sides_are_configured() -> None:
    claims = recorded("github_reusable_workflow")
    assert check_reusable(claims, reusable_workflow=f"{REUSABLE}@refs/tags/v1") == []
    assert check_reusable(claims, reusable_workflow=REUSABLE) == []


def test_a_reusable_workflow_call_is_refused_when_not_configured_and_says_why() -> None:
    assert messages(check_reusable(recorded("github_reusable_workflow"))) == [
        f"job_workflow_ref: the token says '{REUSABLE}@refs/tags/v1', the publisher expects "
        "'octo-org/widgets/.github/workflows/release.yml@refs/tags/v2.3.1' (the workflow calls "
        f"the reusable workflow '{REUSABLE}@refs/tags/v1'; to publish from it, set it as the "
        "publisher's reusable workflow)"
    ]


def test_the_reusable_workflows_pinned_ref_is_enforced() -> None:
    found = check_reusable(
        recorded("github_reusable_workflow"), reusable_workflow=f"{REUSABLE}@refs/tags/v2"
    )
    assert messages(found) == [
        f"job_workflow_ref: the token says '{REUSABLE}@refs/tags/v1', the publisher expects the "
        f"reusable workflow '{REUSABLE}@refs/tags/v2'"
    ]


def test_the_caller_side_is_enforced_too() -> None:
    found = check_reusable(
        recorded("github_reusable_workflow"), workflow="nightly.yml", reusable_workflow=REUSABLE
    )
    assert [m.claim for m in found] == ["workflow_ref"]


def test_another_reusable_workflow_is_refused() -> None:
    claims = recorded("github_reusable_workflow")
    claims["job_workflow_ref"] = "mallory/shared-workflows/.github/workflows/pypi-publish.yml@x"
    found = check_reusable(claims, reusable_workflow=REUSABLE)
    assert [m.claim for m in found] == ["job_workflow_ref"]


def test_a_configured_reusable_workflow_refuses_a_direct_run() -> None:
    # The caller's own job publishing (no reusable workflow) is not what was configured.
    claims = recorded("github_reusable_workflow")
    claims["job_workflow_ref"] = claims["workflow_ref"]
    found = check_reusable(claims, reusable_workflow=REUSABLE)
    assert [m.claim for m in found] == ["job_workflow_ref"]


# --- required claims and the issuer ---------------------------------------------------------


@pytest.mark.parametrize(
    "claim",
    [
        "repository",
        "repository_owner",
        "repository_owner_id",
        "job_workflow_ref",
        "event_name",
        "ref",
        "sha",
        "jti",
    ],
)
def test_required_claims_must_be_present(claim: str) -> None:
    claims = recorded("github_push_tag")
    del claims[claim]
    found = check(claims)
    assert claim in {m.claim for m in found}
    assert (
        f"{claim}: the token has no '{claim}' claim, which GitHub Actions tokens always carry "
        "(is this token from GitHub Actions?)"
    ) in messages(found)


def test_a_token_from_another_issuer_is_refused() -> None:
    claims = recorded("github_push_tag")
    claims["iss"] = EMULATOR
    assert messages(check(claims)) == [
        f"iss: the token was issued by '{EMULATOR}', the publisher accepts tokens from '{GITHUB}'"
    ]


def test_a_publisher_for_the_ci_emulator_accepts_the_emulators_tokens() -> None:
    claims = recorded("github_push_tag")
    claims["iss"] = EMULATOR
    assert check(claims, issuer=EMULATOR) == []
    assert messages(check(recorded("github_push_tag"), issuer=EMULATOR)) == [
        f"iss: the token was issued by '{GITHUB}', the publisher accepts tokens from '{EMULATOR}'"
    ]


def test_github_enterprise_server() -> None:
    ghes = "https://ghe.example.com/_services/token"
    cfg = github.validate_config(
        {
            "owner": "platform",
            "repository": "build-tools",
            "workflow": "publish.yaml",
            "issuer": ghes,
        }
    )
    claims = recorded("github_enterprise_server")
    assert github.check(cfg, {}, claims) == []
    assert github.issuer(cfg) == ghes
    assert github.publisher_url(cfg) == "https://ghe.example.com/platform/build-tools"
    assert github.describe(claims)["commit_url"] == (
        "https://ghe.example.com/platform/build-tools/commit/"
        "3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
    )
    assert github.summary(cfg) == (
        f"GitHub platform/build-tools, workflow publish.yaml, issuer {ghes}"
    )


# --- lookup keys ----------------------------------------------------------------------------


def test_lookup_key_is_lowercase_and_matches_the_tokens() -> None:
    cfg = config(owner="PyPA", repository="SampleProject")
    assert github.lookup_key(cfg) == "github:pypa/sampleproject"
    assert github.lookup_key_from_claims(GITHUB, recorded("github_push_tag")) == (
        "github:pypa/sampleproject"
    )
    assert github.lookup_keys_from_claims(GITHUB, recorded("github_push_tag")) == [
        "github:pypa/sampleproject"
    ]


def test_lookup_keys_keep_other_issuers_apart() -> None:
    # An emulator token for pypa/sampleproject must not even find GitHub.com's publisher.
    claims = recorded("github_push_tag")
    assert github.lookup_key(config(issuer=EMULATOR)) == (f"github:{EMULATOR}:pypa/sampleproject")
    assert github.lookup_key_from_claims(EMULATOR, claims) != github.lookup_key(config())


def test_a_token_without_repository_has_no_lookup_key() -> None:
    claims = recorded("github_push_tag")
    del claims["repository"]
    assert github.lookup_key_from_claims(GITHUB, claims) is None
    assert github.lookup_keys_from_claims(GITHUB, claims) == []


# --- audit, display -------------------------------------------------------------------------


def test_describe_for_the_audit_trail() -> None:
    assert github.describe(recorded("github_release_environment")) == {
        "identity": "pypa/sampleproject",
        "repository": "pypa/sampleproject",
        "workflow": "pypa/sampleproject/.github/workflows/release.yml@refs/tags/v4.0.0",
        "ref": "refs/tags/v4.0.0",
        "sha": SHA,
        "environment": "pypi",
        "run_url": "https://github.com/pypa/sampleproject/actions/runs/9385512877/attempts/2",
        "commit_url": f"https://github.com/pypa/sampleproject/commit/{SHA}",
        "event_name": "release",
    }


def test_describe_off_github_com_prefers_the_claims_server_url() -> None:
    # A GitHub-type issuer that is not an Enterprise Server (the CI emulator rehearsing a
    # github.com job) links to github.com unless the token names its server.
    claims = recorded("github_push_tag")
    claims["iss"] = EMULATOR
    assert github.describe(claims)["commit_url"] == (
        f"https://github.com/pypa/sampleproject/commit/{SHA}"
    )
    claims["server_url"] = "http://127.0.0.1:8766/"
    assert github.describe(claims)["commit_url"] == (
        f"http://127.0.0.1:8766/pypa/sampleproject/commit/{SHA}"
    )
    assert github.describe(claims)["run_url"] == (
        "http://127.0.0.1:8766/pypa/sampleproject/actions/runs/9385470134/attempts/1"
    )


def test_publisher_url_and_summary() -> None:
    cfg = config(environment="pypi", ref="refs/tags/v*")
    assert github.publisher_url(cfg) == "https://github.com/pypa/sampleproject"
    assert github.publisher_url(config(issuer=EMULATOR)) is None
    assert github.summary(cfg) == (
        "GitHub pypa/sampleproject, workflow release.yml, environment pypi, refs refs/tags/v*"
    )


def test_specificity_counts_constraints() -> None:
    assert github.specificity(config()) == 0
    assert github.specificity(config(environment="pypi")) == 1
    assert github.specificity(config(environment="pypi", ref="refs/tags/*")) == 2


# --- config validation ----------------------------------------------------------------------


def test_validate_config_normalizes() -> None:
    assert config(environment=" pypi ") == {
        "owner": "pypa",
        "repository": "sampleproject",
        "workflow": "release.yml",
        "environment": "pypi",
        "ref": "",
        "reusable_workflow": "",
        "owner_id": "",
        "issuer": GITHUB,
    }


def test_validate_config_reports_every_problem_at_once() -> None:
    with pytest.raises(PublisherConfigError) as caught:
        github.validate_config(
            {
                "owner": "-pypa",
                "repository": "pypa/sampleproject",
                "workflow": "release",
                "environment": "prod;rm",
                "ref": "*",
                "reusable_workflow": "shared/publish.yml",
                "owner_id": "pypa",
                "issuer": "http://ghe.example.com/_services/token",
                "enviroment": "pypi",
            }
        )
    assert caught.value.errors == {
        "enviroment": "not a field of a GitHub Actions publisher",
        "owner": "not a GitHub user or organization name (letters, digits and '-', not "
        "starting with '-', at most 39 characters)",
        "repository": "the repository's name only, without the owner",
        "workflow": "must end with .yml or .yaml",
        "environment": "must not contain control characters or any of ' \" ` , ; \\",
        "ref": "'*' would accept every ref; leave it empty for no constraint, or give a "
        "pattern such as 'refs/tags/v*'",
        "reusable_workflow": "must look like 'org/repo/.github/workflows/publish.yml', "
        "optionally followed by '@refs/tags/v1' or '@<40-character commit sha>'",
        "owner_id": "must be GitHub's numeric id of the owner, e.g. '2009'",
        "issuer": "must use https (plain http is accepted only for localhost, 127.0.0.1 and ::1)",
    }


def test_required_fields() -> None:
    with pytest.raises(PublisherConfigError) as caught:
        github.validate_config({})
    assert set(caught.value.errors) == {"owner", "repository", "workflow"}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("workflow", ".github/workflows/release.yml", "file name only"),
        ("workflow", "release.json", "must end with .yml or .yaml"),
        ("environment", "x" * 256, "too long"),
        ("ref", "**", "would accept every ref"),
        ("ref", "?*", "would accept every ref"),
        ("ref", "v*", "give the full ref"),
        ("reusable_workflow", f"{REUSABLE}@v1", "give the full ref after '@'"),
        ("issuer", "https://user:pw@ghe.example.com", "user name or password"),
        ("issuer", "ftp://ghe.example.com", "must be an https URL"),
        ("issuer", "http://localhost.evil.example:8080", "must use https"),
    ],
)
def test_invalid_fields(field: str, value: str, problem: str) -> None:
    with pytest.raises(PublisherConfigError) as caught:
        config(**{field: value})
    assert list(caught.value.errors) == [field]
    assert problem in caught.value.errors[field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issuer", "http://127.0.0.1:8765"),
        ("issuer", "http://localhost:8765"),
        ("issuer", "http://[::1]:8765"),
        ("issuer", "https://ghe.example.com/_services/token"),
        ("reusable_workflow", f"{REUSABLE}@{SHA}"),
        ("reusable_workflow", f"{REUSABLE}@refs/heads/main"),
        ("environment", "x" * 255),
        ("ref", "refs/tags/v[0-9]*"),
    ],
)
def test_valid_fields(field: str, value: str) -> None:
    assert config(**{field: value})[field] == value


def test_fields_describe_the_form() -> None:
    assert [f.name for f in github.fields if f.required] == ["owner", "repository", "workflow"]
    assert all(f.help for f in github.fields)
    help_text = {f.name: f.help for f in github.fields}
    assert "case" in help_text["owner"]
    assert "case" in help_text["environment"]


# --- a property: only the owner's/repository's case may differ ------------------------------


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20))
def test_any_other_repository_name_is_refused(name: str) -> None:
    if name.lower() == "sampleproject" or name in (".", ".."):
        return
    assert "repository" in {m.claim for m in check(recorded("github_push_tag"), repository=name)}
