"""Publisher providers: one module per kind, one contract (``Provider``).

``PROVIDERS`` maps a publisher's ``kind`` to its provider. Each provider validates its config,
names its issuer and lookup key, and checks a verified token's claims against a publisher —
returning every mismatch rather than stopping at the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from keyless.oidc.providers._common import FieldSpec, Mismatch, Provider, same_issuer
from keyless.oidc.providers.generic import GenericProvider
from keyless.oidc.providers.github import GITHUB_ISSUER, GitHubProvider
from keyless.oidc.providers.gitlab import GITLAB_ISSUER, GitLabProvider
from keyless.oidc.providers.google import GOOGLE_ISSUER, GoogleProvider

__all__ = [
    "GITHUB_ISSUER",
    "GITLAB_ISSUER",
    "GOOGLE_ISSUER",
    "PROVIDERS",
    "FieldSpec",
    "GenericProvider",
    "GitHubProvider",
    "GitLabProvider",
    "GoogleProvider",
    "Mismatch",
    "Provider",
    "provider_for_claims",
]

PROVIDERS: Final[dict[str, Provider]] = {
    provider.kind: provider
    for provider in (GitHubProvider(), GitLabProvider(), GoogleProvider(), GenericProvider())
}


def provider_for_claims(claims: Mapping[str, Any]) -> Provider:
    """The provider whose tokens these claims look like (the generic one when none fits).

    Used to describe a token that no publisher matched; matching itself never guesses.
    """
    iss = claims.get("iss")
    iss = iss if isinstance(iss, str) else ""
    # GitHub-shaped tokens also come from Enterprise Server and the CI emulator.
    if same_issuer(iss, GITHUB_ISSUER) or ("job_workflow_ref" in claims and "repository" in claims):
        return PROVIDERS["github"]
    if same_issuer(iss, GITLAB_ISSUER) or (
        "project_path" in claims and "ci_config_ref_uri" in claims
    ):
        return PROVIDERS["gitlab"]
    if same_issuer(iss, GOOGLE_ISSUER):
        return PROVIDERS["google"]
    return PROVIDERS["generic"]
