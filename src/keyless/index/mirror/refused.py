"""The refusal every part of the mirror raises (pages, files, first downloads), and the words of
those that mean the upstream failed, said once for a page, a file and a metadata file alike."""

from __future__ import annotations

import httpx

from ..errors import Refused


class MirrorRefused(Refused):
    """A mirrored page or file that cannot be served; the message names the upstream."""


def answered(upstream: str | None, status: int, what: str) -> MirrorRefused:
    """The upstream answered `status` (neither 200 nor what the caller handles itself) when
    asked for `what` (e.g. "'name'", "the metadata of 'file.whl'"): a 502."""
    return MirrorRefused(
        f"The upstream {upstream} answered {status} for {what}; try again later.", 502
    )


def unreachable(upstream: str | None, what: str, exc: httpx.HTTPError) -> MirrorRefused:
    """Asking the upstream for `what` failed before an answer: a 504 when it was too slow, a
    502 otherwise."""
    if isinstance(exc, httpx.TimeoutException):
        return MirrorRefused(
            f"The upstream {upstream} did not answer in time for {what}; try again later.", 504
        )
    return MirrorRefused(
        f"The upstream {upstream} cannot be reached for {what} "
        f"({type(exc).__name__}); try again later.",
        502,
    )
