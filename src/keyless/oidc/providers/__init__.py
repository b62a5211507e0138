"""Publisher providers: one module per kind, one contract (``Provider``).

``PROVIDERS`` maps a publisher's ``kind`` to its provider. Each provider validates its config,
names its issuer and lookup key, and checks a verified token's claims against a publisher —
returning every mismatch rather than stopping at the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from keyless.oidc.providers._common import FieldSpec, Mismatch, Provider
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
    "default_issuers",
    "provider_for_claims",
]

# The registry: every kind of publisher keyless knows, in the order the web form's tabs show
# them. Everything else about a kind comes from its provider: the CLI's `keyless publisher add
# <kind>` options, the web form's tab and fields, the settings' issuer kinds and default
# issuers, the generic provider's "use a dedicated publisher" refusal, `provider_for_claims`.
PROVIDERS: Final[dict[str, Provider]] = {
    provider.kind: provider
    for provider in (GitHubProvider(), GitLabProvider(), GoogleProvider(), GenericProvider())
}


def provider_for_claims(claims: Mapping[str, Any]) -> Provider:
    """The provider whose tokens these claims look like (the generic one when none fits).

    Used to describe a token that no publisher matched; matching itself never guesses.
    """
    for provider in PROVIDERS.values():
        if provider.recognises(claims):
            return provider
    return PROVIDERS["generic"]


def default_issuers() -> dict[str, str]:
    """Issuer URL -> kind, for every provider with an issuer all servers trust by default."""
    return {
        provider.default_issuer: kind
        for kind, provider in PROVIDERS.items()
        if provider.default_issuer is not None
    }
