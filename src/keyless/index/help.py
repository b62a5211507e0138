"""The help topics keyless' error texts point at, and the one place their URLs are made.

The upload texts are PyPI's, word for word (clients and people searching the web match on
them), links included: "See https://pypi.org/help/#file-name-reuse ...". PyPI's pages describe
PyPI's limits and PyPI's accounts, not this server's, so before a text leaves the server
`local_links` points each such link at the same topic on this server's own help page
(`/help/`, templates/help.html), as an absolute URL a client can print and a user can open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HELP_PATH = "/help/"


@dataclass(frozen=True)
class Topic:
    anchor: str  # the id of its section on /help/
    title: str
    # The page of PyPI's the upload texts link to for this topic, if any.
    pypi_url: str | None = None


TOPICS = (
    Topic("api-tokens", "API tokens"),
    Topic("trusted-publishing", "Trusted Publishing"),
    Topic("file-name-reuse", "File name reuse", "https://pypi.org/help/#file-name-reuse"),
    Topic("project-name", "Project names", "https://pypi.org/help/#project-name"),
    Topic("file-size-limit", "File size limit", "https://pypi.org/help/#file-size-limit"),
    Topic("project-size-limit", "Project size limit", "https://pypi.org/help/#project-size-limit"),
    Topic(
        "description-content-type",
        "Description content type",
        "https://pypi.org/help/#description-content-type",
    ),
    Topic("archives", "Archive rules", "https://docs.pypi.org/archives"),
)

_BY_PYPI_URL = {topic.pypi_url: topic.anchor for topic in TOPICS if topic.pypi_url}
_PYPI_HELP_LINK = re.compile(r"https://(?:docs\.)?pypi\.org/[A-Za-z0-9/#_-]*[A-Za-z0-9_-]")


def help_url(base: str, anchor: str) -> str:
    """The absolute URL of one topic on the help page of the server at `base`."""
    if anchor not in {topic.anchor for topic in TOPICS}:
        raise ValueError(f"no help topic {anchor!r}")  # a typo in keyless, caught by tests
    return f"{base.rstrip('/')}{HELP_PATH}#{anchor}"


def local_links(message: str, base: str) -> str:
    """`message` with each link to a PyPI help topic pointed at this server's own help page."""

    def local(found: re.Match[str]) -> str:
        anchor = _BY_PYPI_URL.get(found.group(0))
        return help_url(base, anchor) if anchor else found.group(0)

    return _PYPI_HELP_LINK.sub(local, message)
