"""Exceptions raised by the validation layer."""

from __future__ import annotations

from collections.abc import Sequence


class DistError(ValueError):
    """One problem with an uploaded distribution.

    ``message`` is the exact text to send to the client (PyPI's wording where PyPI has one),
    suitable for both the HTTP reason phrase and the response body.
    """

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidMetadata(DistError):
    """Every metadata problem found in one pass.

    ``errors`` holds one complete, PyPI-style message per problem, ordered so that
    ``errors[0]`` is the one PyPI itself would report; ``message`` is all of them joined with
    newlines (for the response body).
    """

    errors: list[str]

    def __init__(self, errors: Sequence[str]) -> None:
        if not errors:
            raise ValueError("InvalidMetadata needs at least one error")
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))
