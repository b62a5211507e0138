"""Per-index upload policy: what PyPI forbids by policy rather than by standard."""

from __future__ import annotations

from dataclasses import dataclass

# Metadata versions in the order they were published; a policy admits a prefix of this list.
METADATA_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6")
DEFAULT_MAX_METADATA_VERSION = "2.5"
PROFILES: tuple[str, ...] = ("pypi", "private")


@dataclass(frozen=True)
class Policy:
    """Switches for the rules that are PyPI policy rather than packaging standards.

    ``pypi`` mirrors PyPI, so a release that passes here also passes on PyPI; ``private`` relaxes
    the rules that only make sense for a public index.
    """

    profile: str
    allow_local_versions: bool
    allow_private_classifiers: bool
    restrict_platform_tags: bool
    max_metadata_version: str = DEFAULT_MAX_METADATA_VERSION

    def __post_init__(self) -> None:
        if self.max_metadata_version not in METADATA_VERSIONS:
            raise ValueError(
                f"max_metadata_version must be one of {', '.join(METADATA_VERSIONS)}, "
                f"not {self.max_metadata_version!r}"
            )

    @property
    def metadata_versions(self) -> tuple[str, ...]:
        """The Metadata-Version values this policy accepts."""
        return METADATA_VERSIONS[: METADATA_VERSIONS.index(self.max_metadata_version) + 1]

    @classmethod
    def for_profile(
        cls, profile: str, *, max_metadata_version: str = DEFAULT_MAX_METADATA_VERSION
    ) -> Policy:
        """The policy of a named profile.

        Raises ``ValueError`` for an unknown profile or metadata version.
        """
        if profile == "pypi":
            return cls(
                profile="pypi",
                allow_local_versions=False,
                allow_private_classifiers=False,
                restrict_platform_tags=True,
                max_metadata_version=max_metadata_version,
            )
        if profile == "private":
            return cls(
                profile="private",
                allow_local_versions=True,
                allow_private_classifiers=True,
                restrict_platform_tags=False,
                max_metadata_version=max_metadata_version,
            )
        raise ValueError(f"unknown policy profile {profile!r}; expected one of {PROFILES}")
