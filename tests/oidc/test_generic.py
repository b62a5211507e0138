"""Generic OIDC issuers: Buildkite, CircleCI, Forgejo — an issuer plus a claim template."""

from __future__ import annotations

from typing import Any

import pytest

from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import PROVIDERS, Mismatch
from tests.oidc.conftest import GITHUB, recorded

generic = PROVIDERS["generic"]
BUILDKITE = "https://agent.buildkite.com"
CIRCLECI = "https://oidc.circleci.com/org/5b2f2b0c-8ad1-4c38-9f6c-2f0c6d1b7a31"
FORGEJO = "https://codeberg.example.org/api/actions"
PROJECT_ID = "b3a9d1e4-5c7f-4a0b-8e2d-6f1c9a7b3d50"


def buildkite(**overrides: Any) -> dict[str, Any]:
    return generic.validate_config(
        {
            "issuer": BUILDKITE,
            "subject_claim": "pipeline_slug",
            "subject": "fastwidget-release",
            "claims": "organization_slug=acme-inc\nbuild_tag=glob:v*",
            **overrides,
        }
    )


def circleci(**overrides: Any) -> dict[str, Any]:
    return generic.validate_config(
        {
            "issuer": CIRCLECI,
            "subject_claim": "oidc.circleci.com/project-id",
            "subject": PROJECT_ID,
            "claims": {
                "oidc.circleci.com/vcs-origin": "github.com/acme/fastwidget",
                "oidc.circleci.com/ssh-rerun": "false",
            },
            "ref": "refs/tags/v*",
            "ref_claim": "oidc.circleci.com/vcs-ref",
            **overrides,
        }
    )


def forgejo(**overrides: Any) -> dict[str, Any]:
    return generic.validate_config(
        {
            "issuer": FORGEJO,
            "subject_claim": "repository",
            "subject": "tools/fastwidget",
            "claims": {"workflow_ref": "glob:tools/fastwidget/.forgejo/workflows/release.yml@*"},
            "pin": "repository_owner",
            "ref": "refs/tags/v*",
            **overrides,
        }
    )


def messages(found: list[Mismatch]) -> list[str]:
    return [m.message for m in found]


def test_recorded_runs_match_their_publishers() -> None:
    assert generic.check(buildkite(), {}, recorded("buildkite")) == []
    assert generic.check(circleci(), {}, recorded("circleci")) == []
    assert generic.check(forgejo(), {}, recorded("forgejo")) == []


def test_identifying_claim_is_exact() -> None:
    found = generic.check(forgejo(subject="Tools/fastwidget"), {}, recorded("forgejo"))
    assert messages(found) == [
        "repository: the token says 'tools/fastwidget', the publisher expects "
        "'Tools/fastwidget' (names differ only in case; this claim is compared exactly)"
    ]


def test_a_missing_identifying_claim_is_refused() -> None:
    claims = recorded("buildkite")
    del claims["pipeline_slug"]
    assert messages(generic.check(buildkite(), {}, claims)) == [
        "pipeline_slug: the token has no 'pipeline_slug' claim, the publisher expects "
        "'fastwidget-release'"
    ]


def test_required_claims_exact_and_glob() -> None:
    claims = recorded("buildkite")
    claims["organization_slug"] = "acme-evil"
    claims["build_tag"] = None  # a branch build
    assert messages(generic.check(buildkite(), {}, claims)) == [
        "build_tag: the token says None, the publisher expects a value matching 'v*'",
        "organization_slug: the token says 'acme-evil', the publisher expects 'acme-inc'",
    ]


def test_boolean_claims_compare_as_json_text() -> None:
    # CircleCI marks SSH debug reruns; a publisher can refuse them.
    claims = recorded("circleci")
    claims["oidc.circleci.com/ssh-rerun"] = True
    assert messages(generic.check(circleci(), {}, claims)) == [
        "oidc.circleci.com/ssh-rerun: the token says True, the publisher expects 'false'"
    ]


def test_ref_constraint_on_a_configured_claim() -> None:
    claims = recorded("circleci")
    claims["oidc.circleci.com/vcs-ref"] = "refs/heads/feature"
    assert messages(generic.check(circleci(), {}, claims)) == [
        "oidc.circleci.com/vcs-ref: the token says 'refs/heads/feature', the publisher accepts "
        "only refs matching 'refs/tags/v*'"
    ]


def test_issuer_must_match() -> None:
    claims = recorded("buildkite")
    claims["iss"] = "https://agent.buildkite.com.evil.example"
    assert [m.claim for m in generic.check(buildkite(), {}, claims)] == ["iss"]


def test_pins_are_the_configured_claims_and_are_enforced() -> None:
    claims = recorded("forgejo")
    assert generic.pins(claims, forgejo()) == {"repository_owner": "tools"}
    assert generic.check(forgejo(), {"repository_owner": "tools"}, claims) == []
    claims["repository_owner"] = "tools2"
    found = generic.check(forgejo(), {"repository_owner": "tools"}, claims)
    assert [m.claim for m in found] == ["repository_owner"]
    assert "was pinned to 'tools' on its first use" in found[0].message


def test_stale_pins_of_claims_no_longer_pinned_are_ignored() -> None:
    assert (
        generic.check(forgejo(pin=""), {"repository_owner": "someone"}, recorded("forgejo")) == []
    )


def test_pins_without_config_offer_every_scalar_claim() -> None:
    pins = generic.pins(recorded("buildkite"))
    assert pins["organization_slug"] == "acme-inc"
    assert pins["build_number"] == "1293"
    assert "exp" not in pins
    assert "iat" not in pins


def test_lookup_keys() -> None:
    for cfg, name in ((buildkite(), "buildkite"), (circleci(), "circleci"), (forgejo(), "forgejo")):
        claims = recorded(name)
        keys = generic.lookup_keys_from_claims(claims["iss"], claims)
        assert generic.lookup_key(cfg) in keys
        assert not any("=" + str(claims.get("exp")) in key for key in keys)
    assert generic.lookup_key(buildkite()) == (
        "generic:https://agent.buildkite.com:pipeline_slug=fastwidget-release"
    )


def test_lookup_keys_are_per_issuer() -> None:
    claims = recorded("buildkite")
    keys = generic.lookup_keys_from_claims("https://other.example.com", claims)
    assert generic.lookup_key(buildkite()) not in keys


def test_lookup_key_from_claims_is_the_sub_key() -> None:
    claims = recorded("forgejo")
    cfg = forgejo(subject_claim="sub", subject=claims["sub"])
    assert generic.lookup_key_from_claims(FORGEJO, claims) == generic.lookup_key(cfg)


def test_describe_best_effort() -> None:
    described = generic.describe(recorded("buildkite"))
    assert described["repository"] == "acme-inc/fastwidget-release"
    assert described["sha"] == "9f3182061f1e2cca4702c368cbc039b7dc9d4485"
    described = generic.describe(recorded("circleci"))
    assert described["repository"] == "github.com/acme/fastwidget"
    assert described["ref"] == "refs/tags/v1.4.2"


def test_summary_and_specificity() -> None:
    assert generic.summary(buildkite()) == (
        "OIDC issuer https://agent.buildkite.com, pipeline_slug=fastwidget-release, "
        "build_tag=glob:v*, organization_slug=acme-inc"
    )
    assert generic.specificity(buildkite()) == 2
    assert generic.specificity(circleci()) == 3


def test_validate_config_normalizes() -> None:
    assert buildkite(pin="agent_id, build_number  step_key") == {
        "issuer": BUILDKITE,
        "subject_claim": "pipeline_slug",
        "subject": "fastwidget-release",
        "claims": {"organization_slug": "acme-inc", "build_tag": "glob:v*"},
        "pin": ["agent_id", "build_number", "step_key"],
        "ref": "",
        "ref_claim": "ref",
    }
    assert generic.validate_config({"issuer": BUILDKITE, "subject": "x"})["subject_claim"] == "sub"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("issuer", "", "required"),
        ("issuer", "http://ci.example.com", "must use https"),
        ("issuer", "https://ci.example.com/?tenant=1", "query or fragment"),
        ("issuer", GITHUB, "use a GitHub Actions publisher for this issuer"),
        ("issuer", "https://gitlab.com/", "use a GitLab CI/CD publisher"),
        ("subject", "", "required"),
        ("subject_claim", "exp", "changes with every token"),
        ("subject_claim", "a:b", "not a claim name"),
        ("claims", "organization_slug", "write one 'name=value' per line"),
        ("claims", "build_tag=glob:*", "constrains nothing"),
        ("claims", {"jti": "x"}, "changes with every token"),
        ("claims", 42, "must be 'name=value' lines or a mapping"),
        ("pin", "iat", "changes with every token"),
        ("ref", "*", "would accept every ref"),
    ],
)
def test_invalid_config(field: str, value: Any, problem: str) -> None:
    with pytest.raises(PublisherConfigError) as caught:
        buildkite(**{field: value})
    assert list(caught.value.errors) == [field]
    assert problem in caught.value.errors[field]


def test_http_issuer_is_allowed_on_localhost() -> None:
    assert buildkite(issuer="http://127.0.0.1:9000")["issuer"] == "http://127.0.0.1:9000"
