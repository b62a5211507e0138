"""The one shape of a refusal the index's use cases raise and its handlers answer with."""

from __future__ import annotations


class Refused(Exception):
    """A request the index will not carry out: `.message` says what to fix, `.status` is the
    HTTP status (4xx) to answer with. Each use case has its own subclass for readers' sake."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
