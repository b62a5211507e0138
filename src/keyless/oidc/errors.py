"""Exceptions of the Trusted Publishing layer.

``TokenError`` carries PyPI's wire error code, so the index can answer a refused mint request
with ``{"code": e.code, "description": e.description}`` without interpreting anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

TokenErrorCode = Literal[
    "invalid-payload",
    "invalid-token",
    "invalid-publisher",
    "invalid-reuse-token",
    "not-enabled",
    "invalid-pending-publisher",
]

# The same codes at run time, read off the type so the two lists cannot drift apart.
TOKEN_ERROR_CODES: Final[frozenset[str]] = frozenset(get_args(TokenErrorCode))


class TokenError(Exception):
    """A mint request refused; ``code`` is PyPI's error code, ``description`` what the user reads.

    Clients (twine, uv, the GitHub action) print every code/description pair verbatim, so the
    description is the user's only clue: it names the claim or check that failed and what was
    expected.
    """

    code: TokenErrorCode
    description: str

    def __init__(self, code: TokenErrorCode, description: str) -> None:
        # A typo in a code would reach clients as an unknown code; catch it where it is made.
        if code not in TOKEN_ERROR_CODES:
            raise ValueError(f"unknown token error code {code!r}")
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class PublisherConfigError(ValueError):
    """Per-field problems with a publisher's configuration.

    ``errors`` maps a field name to the message for that field (for CLI and web forms); every
    problem found is reported at once, so a user fixes the whole form in one go.
    """

    errors: dict[str, str]

    def __init__(self, errors: Mapping[str, str]) -> None:
        if not errors:
            raise ValueError("PublisherConfigError needs at least one error")
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))
