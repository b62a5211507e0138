"""Choosing the publisher a verified token matches, among the index's candidates.

The index finds candidates by the token's lookup key (``Provider.lookup_key_from_claims``), so
the candidates are publishers of the same repository/project/identity as the token. Errors may
therefore name the candidates' expectations, but never anything about other publishers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keyless.oidc.errors import TokenError
from keyless.oidc.providers import PROVIDERS, provider_for_claims


@dataclass(frozen=True)
class Candidate:
    """A publisher the token might match, as the index's database holds it."""

    id: int
    kind: str
    config: Mapping[str, Any]
    pinned: Mapping[str, str]
    # Names the publisher in error texts, e.g. "the publisher for 'demo' on index 'prod'".
    label: str


def match_publisher(candidates: Sequence[Candidate], claims: Mapping[str, Any]) -> Candidate:
    """The candidate the verified ``claims`` match (see `match_publishers`)."""
    return match_publishers(candidates, claims)[0]


def match_publishers(
    candidates: Sequence[Candidate], claims: Mapping[str, Any]
) -> tuple[Candidate, list[Candidate]]:
    """(the best match, every match) among the candidates for the verified ``claims``.

    The best is the most specific candidate when several match; every match is returned too,
    since one token may publish to all the projects of the publishers it matches.

    Ties in specificity go to the lowest id (the oldest publisher), so the choice is stable.

    Raises ``TokenError("invalid-publisher", ...)``: with candidates, listing every mismatch of
    every candidate ("environment: the token says 'release', the publisher for 'demo' on index
    'prod' expects 'pypi'"); without, naming what the token identifies as and how to register
    a publisher for it.
    """
    if not candidates:
        guessed = provider_for_claims(claims)
        raise TokenError(
            "invalid-publisher",
            f"valid token, but no trusted publisher on this index matches "
            f"{guessed.identity(claims)}; {guessed.registration_hint(claims)}",
        )

    matched: list[tuple[int, Candidate]] = []
    problems: list[str] = []
    for candidate in candidates:
        provider = PROVIDERS.get(candidate.kind)
        if provider is None:
            # A row the server cannot interpret must never match; say so instead of crashing.
            problems.append(f"{candidate.label} is of unknown kind {candidate.kind!r}")
            continue
        mismatches = provider.check(candidate.config, candidate.pinned, claims)
        if mismatches:
            problems.extend(found.for_publisher(candidate.label) for found in mismatches)
        else:
            matched.append((provider.specificity(candidate.config), candidate))

    if matched:
        best = min(matched, key=lambda pair: (-pair[0], pair[1].id))[1]
        return best, [candidate for _, candidate in matched]
    raise TokenError(
        "invalid-publisher",
        "valid token, but no trusted publisher matches it: " + "; ".join(problems),
    )
