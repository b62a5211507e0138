"""What the index client reads out of HTML: an error page's text, a PEP 503 page's links.

A module of its own so that `keyless publish` imports html.parser only when an index answers
in HTML (keyless and PyPI answer JSON: their errors, and their PEP 691 pages).
"""

from __future__ import annotations

import html.parser

_HIDDEN = ("script", "style", "head")


class _TextOnly(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def visible_text(page: str) -> str:
    """The text of an HTML page a reader sees (not its head, scripts or styles), one space
    between pieces."""
    parser = _TextOnly()
    parser.feed(page)
    return " ".join(parser.parts)


def links(page: str) -> list[tuple[str, str]]:
    """Every anchor of an HTML page: (href, its text), in order."""
    parser = _Anchors()
    parser.feed(page)
    return parser.links
