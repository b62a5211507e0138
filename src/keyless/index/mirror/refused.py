"""The refusal every part of the mirror raises (pages, files, first downloads)."""

from __future__ import annotations

from ..errors import Refused


class MirrorRefused(Refused):
    """A mirrored page or file that cannot be served; the message names the upstream."""
