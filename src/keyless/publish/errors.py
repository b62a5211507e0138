"""The one exception the release client raises: what failed, how to fix it, and where."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PublishError(Exception):
    """A publish step failed.

    ``message`` says what happened, ``hint`` how to fix it (None when there is nothing better
    to say than the message), ``context`` where: file, URL, HTTP status. Every URL in it is
    already redacted, so the whole error may be printed as is.
    """

    message: str
    hint: str | None
    context: dict[str, str]

    def __init__(
        self, message: str, *, hint: str | None = None, context: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = dict(context or {})

    def __str__(self) -> str:
        parts = [self.message]
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, as the `--json` documents of the commands carry it: it holds no secret."""
        return {"message": self.message, "hint": self.hint, "context": self.context}

    def with_context(self, **context: str) -> PublishError:
        """This error with more context (existing keys win: the innermost knows best)."""
        merged = {**context, **self.context}
        return PublishError(self.message, hint=self.hint, context=merged)
