"""Publisher matching: the most specific wins, errors name the candidates and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from keyless.oidc.errors import TokenError
from keyless.oidc.keys import JWKSCache
from keyless.oidc.matching import Candidate, match_publisher
from keyless.oidc.providers import PROVIDERS
from keyless.oidc.verify import token_replay_key, unverified_claims, verify_token
from tests.oidc.conftest import AUDIENCE, GITHUB, NOW, SigningKey, recorded, stamped

github = PROVIDERS["github"]
SAMPLE = {"owner": "pypa", "repository": "sampleproject", "workflow": "release.yml"}


def candidate(
    id: int, label: str = "", pinned: dict[str, str] | None = None, **config: str
) -> Candidate:
    kind = config.pop("kind", "github")
    provider = PROVIDERS.get(kind)
    settings = {**SAMPLE, **config} if kind == "github" else config
    return Candidate(
        id=id,
        kind=kind,
        config=provider.validate_config(settings) if provider else settings,
        pinned=pinned or {},
        label=label or f"the publisher for 'demo' on index 'prod' (#{id})",
    )


def refused(candidates: list[Candidate], claims: dict[str, Any]) -> str:
    with pytest.raises(TokenError) as caught:
        match_publisher(candidates, claims)
    assert caught.value.code == "invalid-publisher"
    return caught.value.description


def test_the_only_matching_candidate_is_chosen() -> None:
    only = candidate(7)
    assert match_publisher([only], recorded("github_push_tag")) is only


def test_a_publisher_with_an_environment_beats_a_generic_one() -> None:
    general, specific = candidate(1), candidate(2, environment="pypi")
    claims = recorded("github_release_environment")
    assert match_publisher([general, specific], claims) is specific
    assert match_publisher([specific, general], claims) is specific
    # Without the environment in the token only the general one matches.
    assert match_publisher([general, specific], recorded("github_push_tag")) is general


def test_a_ref_constraint_also_counts_as_more_specific() -> None:
    general, constrained = candidate(1), candidate(2, ref="refs/tags/v*")
    assert match_publisher([general, constrained], recorded("github_push_tag")) is constrained


def test_ties_go_to_the_lowest_id() -> None:
    newer, older = candidate(9, environment="pypi"), candidate(3, environment="PYPI")
    assert match_publisher([newer, older], recorded("github_release_environment")) is older


def test_mismatches_name_the_candidate_by_its_label() -> None:
    claims = recorded("github_release_environment")
    claims["environment"] = "release"
    described = refused(
        [candidate(1, "the publisher for 'demo' on index 'prod'", environment="pypi")], claims
    )
    assert described == (
        "valid token, but no trusted publisher matches it: environment: the token says "
        "'release', the publisher for 'demo' on index 'prod' expects 'pypi'"
    )


def test_every_candidates_mismatches_are_listed() -> None:
    claims = recorded("github_push_tag")
    described = refused(
        [
            candidate(1, "the publisher for 'demo' on index 'prod'", environment="pypi"),
            candidate(2, "the publisher for 'demo' on index 'test'", workflow="test.yml"),
        ],
        claims,
    )
    assert "the publisher for 'demo' on index 'prod' expects 'pypi'" in described
    assert "the publisher for 'demo' on index 'test' expects 'pypa/sampleproject/" in described


def test_no_candidates_names_the_tokens_identity_and_how_to_register() -> None:
    assert refused([], recorded("github_release_environment")) == (
        "valid token, but no trusted publisher on this index matches GitHub repository "
        "'pypa/sampleproject'; to publish from it, a project owner registers a GitHub Actions "
        "publisher with owner 'pypa', repository 'sampleproject', workflow 'release.yml', "
        "environment 'pypi'"
    )


@pytest.mark.parametrize(
    ("name", "identity"),
    [
        ("gitlab_com_tag", "GitLab project 'python-tools/fastwidget' on 'https://gitlab.com'"),
        (
            "google_service_account",
            "Google service account 'publisher@fastwidget-ci.iam.gserviceaccount.com'",
        ),
        ("buildkite", "issuer 'https://agent.buildkite.com', sub 'organization:acme-inc:"),
        ("github_enterprise_server", "GitHub repository 'platform/build-tools' (issuer "),
    ],
)
def test_no_candidates_for_other_providers(name: str, identity: str) -> None:
    described = refused([], recorded(name))
    assert described.startswith(
        f"valid token, but no trusted publisher on this index matches {identity}"
    )
    assert "to publish from it, a project owner registers" in described


def test_a_reusable_workflow_token_suggests_the_callers_workflow() -> None:
    assert "workflow 'release.yml'" in refused([], recorded("github_reusable_workflow"))


def test_a_candidate_of_unknown_kind_never_matches() -> None:
    odd = Candidate(id=1, kind="travis", config={}, pinned={}, label="the publisher #1")
    assert refused([odd], recorded("github_push_tag")) == (
        "valid token, but no trusted publisher matches it: the publisher #1 is of unknown kind "
        "'travis'"
    )


def test_token_values_cannot_forge_the_candidate_label() -> None:
    claims = recorded("github_release_environment")
    claims["environment"] = "\x00publisher\x00"
    described = refused([candidate(1, "LABEL", environment="pypi")], claims)
    assert described.count("LABEL") == 1
    assert "'\\x00publisher\\x00'" in described


# --- no leaking of other publishers ---------------------------------------------------------

# Everything the index holds, across projects; the index picks candidates by lookup key.
INDEX: list[tuple[str, dict[str, str]]] = [
    ("github", {**SAMPLE, "environment": "pypi"}),
    ("github", {"owner": "secret-org", "repository": "secret-repo", "workflow": "hidden.yml"}),
    (
        "github",
        {"owner": "pypa", "repository": "pip", "workflow": "x.yml", "environment": "covert"},
    ),
    (
        "gitlab",
        {"namespace": "pypa", "project": "sampleproject", "workflow_filepath": ".private.yml"},
    ),
    ("google", {"email": "secret@internal.iam.gserviceaccount.com"}),
    (
        "generic",
        {
            "issuer": "https://agent.buildkite.com",
            "subject_claim": "pipeline_slug",
            "subject": "fastwidget-release",
            "claims": "organization_slug=hush-hush",
        },
    ),
]


def index_candidates(claims: dict[str, Any]) -> list[Candidate]:
    """What the index does: the token's lookup keys select the candidates."""
    found = []
    for number, (kind, settings) in enumerate(INDEX, start=1):
        provider = PROVIDERS[kind]
        config = provider.validate_config(settings)
        wanted = {
            key
            for each in PROVIDERS.values()
            for key in each.lookup_keys_from_claims(claims["iss"], claims)
        }
        if provider.lookup_key(config) in wanted:
            found.append(Candidate(number, kind, config, {}, f"publisher #{number}"))
    return found


@pytest.mark.parametrize(
    "name", ["github_push_tag", "gitlab_com_tag", "google_service_account", "circleci"]
)
def test_errors_never_reveal_other_publishers(name: str) -> None:
    claims = recorded(name)
    claims["environment"] = "elsewhere"
    described = refused(index_candidates(claims), claims)
    for secret in ("secret", "hidden", "covert", "private", "hush"):
        assert secret not in described


def test_lookup_finds_the_buildkite_publisher_by_its_identifying_claim() -> None:
    claims = recorded("buildkite")
    candidates = index_candidates(claims)
    assert [c.id for c in candidates] == [6]
    # Found, and its own constraint is reported to the pipeline it identifies.
    assert "'hush-hush'" in refused(candidates, claims)


# --- the whole flow, as the index runs it ---------------------------------------------------


def test_end_to_end(rsa_key: SigningKey, keys: JWKSCache) -> None:
    token = rsa_key.sign(stamped(recorded("github_release_environment")))
    iss = unverified_claims(token)["iss"]
    claims = verify_token(token, issuer=iss, audience=AUDIENCE, keys=keys, now=NOW)
    key = github.lookup_key_from_claims(iss, claims)
    assert key == "github:pypa/sampleproject"
    chosen = match_publisher([candidate(1), candidate(2, environment="pypi")], claims)
    assert chosen.id == 2
    assert github.pins(claims, chosen.config) == {"repository_owner_id": "647025"}
    assert token_replay_key(token, claims) == f"jti:{GITHUB}:b1c7e1e5-7f0d-4a55-8a43-1c2f0e9d6b10"
