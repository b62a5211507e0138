from __future__ import annotations

import dataclasses

import pytest

from keyless.dists import Policy


def test_pypi_profile_enforces_pypi_policy() -> None:
    policy = Policy.for_profile("pypi")
    assert policy.profile == "pypi"
    assert not policy.allow_local_versions
    assert not policy.allow_private_classifiers
    assert policy.restrict_platform_tags
    assert policy.max_metadata_version == "2.5"


def test_private_profile_relaxes_public_index_rules() -> None:
    policy = Policy.for_profile("private")
    assert policy.profile == "private"
    assert policy.allow_local_versions
    assert policy.allow_private_classifiers
    assert not policy.restrict_platform_tags
    assert policy.max_metadata_version == "2.5"


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy profile 'public'"):
        Policy.for_profile("public")


@pytest.mark.parametrize(
    ("maximum", "accepted"),
    [("2.5", ("1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5")), ("2.6", ("2.5", "2.6"))],
)
def test_metadata_versions_up_to_the_maximum(maximum: str, accepted: tuple[str, ...]) -> None:
    policy = Policy.for_profile("pypi", max_metadata_version=maximum)
    assert set(accepted) <= set(policy.metadata_versions)
    assert policy.metadata_versions[-1] == maximum


def test_unknown_maximum_metadata_version_is_refused() -> None:
    with pytest.raises(ValueError, match="max_metadata_version"):
        Policy.for_profile("pypi", max_metadata_version="3.0")


def test_policy_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Policy.for_profile("pypi").allow_local_versions = True  # type: ignore[misc]
