"""Error messages in the HTTP reason phrase, as PyPI sends them.

twine shows only `<status> <reason>` for a failed upload unless run with --verbose, and its
--skip-existing reads the reason too; PyPI therefore puts the message in the status line
(`HTTP/1.1 400 File already exists ...`). ASGI has no field for a reason phrase, so a handler
sets it in a context variable and uvicorn's status-line lookup, which runs in the same task
when the response starts, reads it. Installed by `keyless serve`; without it the message is
still in the body.
"""

from __future__ import annotations

import contextvars
import re
from http import HTTPStatus

_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar("keyless_reason", default=None)
_UNSAFE = re.compile(r"[^\x20-\x7e]")
MAX_REASON = 400


def set_reason(message: str) -> None:
    """Use `message` as the reason phrase of the response this task sends next."""
    _reason.set(_UNSAFE.sub(" ", message)[:MAX_REASON])


def _take() -> str | None:
    reason = _reason.get()
    if reason is not None:
        _reason.set(None)
    return reason


class _StatusLines(dict[int, bytes]):
    """uvicorn (httptools) looks up whole status lines by code; answer with our reason."""

    def __getitem__(self, status: int) -> bytes:
        reason = _take()
        if reason is None:
            return super().__getitem__(status)
        return f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")


class _Phrases(dict[int, bytes]):
    """uvicorn (h11) looks up reason phrases by code."""

    def __getitem__(self, status: int) -> bytes:
        reason = _take()
        return super().__getitem__(status) if reason is None else reason.encode("ascii")


def install() -> bool:
    """Teach uvicorn's HTTP implementations to send our reason phrases; False if unsupported."""
    installed = False
    try:
        from uvicorn.protocols.http import httptools_impl

        httptools_impl.STATUS_LINE = _StatusLines(httptools_impl.STATUS_LINE)
        installed = True
    except (ImportError, AttributeError):
        pass
    try:
        from uvicorn.protocols.http import h11_impl

        h11_impl.STATUS_PHRASES = _Phrases(h11_impl.STATUS_PHRASES)
        installed = True
    except (ImportError, AttributeError):
        pass
    return installed


def standard_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
