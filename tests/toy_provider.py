"""A toy kind of publisher, to prove that a provider is one module plus one registration.

Registered only by the tests that ask for it (tests/test_provider_registry.py): in-process with
``monkeypatch.setitem(PROVIDERS, …)``, undone after the test; in a `keyless serve` process by
running keyless through this module (``python -m tests.toy_provider ARGS…``, which registers
it and then runs ``keyless ARGS…``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import PROVIDERS, FieldSpec, GoogleProvider

TOY_ISSUER = "https://toy-ci.example.test"


class ToyProvider(GoogleProvider):
    """A CI whose tokens name a team; Google's claim checks stand in for its own."""

    kind: str = "toy"
    title: str = "Toy CI"
    short_title: str = "Toy"
    fields: tuple[FieldSpec, ...] = (
        FieldSpec("team", "Toy team", True, "The team whose builds may publish."),
    )
    default_issuer: str | None = TOY_ISSUER

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        team = str(config.get("team") or "").strip()
        if not team:
            raise PublisherConfigError({"team": "required: the team whose builds publish"})
        return {"team": team}

    def issuer(self, config: Mapping[str, Any]) -> str:
        return TOY_ISSUER

    def lookup_key(self, config: Mapping[str, Any]) -> str:
        return f"toy:{config.get('team', '')}"

    def lookup_key_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> str | None:
        team = claims.get("team")
        return f"toy:{team}" if isinstance(team, str) and team else None

    def summary(self, config: Mapping[str, Any]) -> str:
        return f"Toy team {config.get('team', '')}"

    def recognises(self, claims: Mapping[str, Any]) -> bool:
        return claims.get("iss") == TOY_ISSUER


def main(argv: list[str]) -> int:
    """`keyless ARGS…` with the toy registered; as `start_server`'s ``prefix`` it is handed
    ``python -m keyless ARGS…`` and drops the first three words."""
    if argv[1:3] == ["-m", "keyless"]:
        argv = argv[3:]
    PROVIDERS[ToyProvider.kind] = ToyProvider()
    from keyless.cli.main import main as keyless

    return keyless(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
