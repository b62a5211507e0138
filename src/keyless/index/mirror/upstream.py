"""Reading an upstream index's project page (PEP 691 JSON, else PEP 503 HTML) into plain data.

An upstream page is untrusted input: it is bounded in size, must say what it is (its content
type), and every file it lists must carry a sha256 (what the mirror checks the bytes against)
and an http(s) URL. A page that breaks these rules is refused whole, not half-used: a page
missing files would make pip believe the project has none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from ..pages import HTML_TYPE, JSON_TYPE

HTML_TYPES = (HTML_TYPE, "text/html")
# What a mirror asks for: JSON when the upstream offers it (PEP 691), HTML otherwise.
ACCEPT = f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.1"
# The largest page read (PyPI's largest project pages are a few MB).
MAX_PAGE_BYTES = 32 * 1024 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
# A distribution's filename as it may appear in our own URLs (no path, no query).
FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*\Z")


class MalformedPage(ValueError):
    """The upstream's page cannot be used; the message says why."""


@dataclass(frozen=True)
class UpstreamFile:
    filename: str
    url: str  # absolute, on the upstream (or where it keeps its files)
    sha256: str
    requires_python: str | None
    yanked: bool | str  # PEP 592: False, True, or the reason
    metadata_sha256: str | None  # PEP 658/714: the separate metadata file's hash, if offered
    size: int | None
    upload_time: str | None


@dataclass(frozen=True)
class UpstreamPage:
    name: str
    files: tuple[UpstreamFile, ...]
    versions: tuple[str, ...]
    status: tuple[str, str | None]  # PEP 792: (status, reason)

    def file(self, sha256: str, filename: str) -> UpstreamFile | None:
        return next((f for f in self.files if f.sha256 == sha256 and f.filename == filename), None)


def parse_page(body: bytes, content_type: str, page_url: str, name: str) -> UpstreamPage:
    """The page `page_url` answered with `body` of `content_type`; raises MalformedPage."""
    media = content_type.split(";")[0].strip().lower()
    if media == JSON_TYPE:
        return _parse_json(body, page_url, name)
    if media in HTML_TYPES:
        return _parse_html(body, page_url, name)
    raise MalformedPage(f"its content type is {media or 'missing'!r}, not a simple-API page")


def parse_root(body: bytes, content_type: str) -> list[str]:
    """The project names an upstream's root page lists; raises MalformedPage."""
    media = content_type.split(";")[0].strip().lower()
    if media == JSON_TYPE:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise MalformedPage("its JSON root page is not valid JSON") from None
        projects = document.get("projects") if isinstance(document, dict) else None
        if not isinstance(projects, list):
            raise MalformedPage("its JSON root page has no 'projects' list (PEP 691)")
        return [
            p["name"] for p in projects if isinstance(p, dict) and isinstance(p.get("name"), str)
        ]
    if media in HTML_TYPES:
        parser = _Links()
        try:
            parser.feed(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise MalformedPage("its HTML root page is not UTF-8") from None
        parser.close()
        return [name for _, words in parser.anchors if (name := "".join(words).strip())]
    raise MalformedPage(f"its content type is {media or 'missing'!r}, not a simple-API page")


def _parse_json(body: bytes, page_url: str, name: str) -> UpstreamPage:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedPage("its JSON page is not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        raise MalformedPage("its JSON page has no 'files' list (PEP 691)")
    files = []
    for entry in document["files"]:
        if not isinstance(entry, dict):
            raise MalformedPage("its JSON page lists a file that is not an object")
        hashes = entry.get("hashes")
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        metadata = entry.get("core-metadata", entry.get("dist-info-metadata", False))
        metadata_sha256 = metadata.get("sha256") if isinstance(metadata, dict) else None
        yanked = entry.get("yanked", False)
        size = entry.get("size")
        files.append(
            _file(
                filename=entry.get("filename"),
                href=entry.get("url"),
                sha256=sha256,
                page_url=page_url,
                requires_python=_optional_str(entry.get("requires-python")),
                yanked=yanked if isinstance(yanked, str) else bool(yanked),
                metadata_sha256=metadata_sha256 if isinstance(metadata_sha256, str) else None,
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                upload_time=_optional_str(entry.get("upload-time")),
            )
        )
    versions = document.get("versions")
    status = document.get("project-status")
    return UpstreamPage(
        name=name,
        files=tuple(files),
        versions=tuple(v for v in versions if isinstance(v, str))
        if isinstance(versions, list)
        else (),
        status=_status(status.get("status"), status.get("reason"))
        if isinstance(status, dict)
        else ("active", None),
    )


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[dict[str, str | None], list[str]]] = []
        self.meta: dict[str, str] = {}
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._text = []
            self.anchors.append((dict(attrs), self._text))
        elif tag == "meta":
            values = dict(attrs)
            if values.get("name") and values.get("content") is not None:
                self.meta[str(values["name"])] = str(values["content"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def _parse_html(body: bytes, page_url: str, name: str) -> UpstreamPage:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPage("its HTML page is not UTF-8") from None
    parser = _Links()
    parser.feed(text)
    parser.close()
    files = []
    for attrs, words in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = urldefrag(href)
        algorithm, _, digest = fragment.partition("=")
        metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        metadata_sha256 = None
        if metadata and metadata.startswith("sha256="):
            metadata_sha256 = metadata.removeprefix("sha256=")
        yanked = attrs.get("data-yanked")
        files.append(
            _file(
                filename=unquote(urlparse(url).path.rsplit("/", 1)[-1]) or "".join(words).strip(),
                href=url,
                sha256=digest if algorithm == "sha256" else None,
                page_url=page_url,
                requires_python=attrs.get("data-requires-python"),
                yanked=False if yanked is None else (yanked or True),
                metadata_sha256=metadata_sha256,
                size=None,
                upload_time=None,
            )
        )
    status = _status(
        parser.meta.get("pypi:project-status", "active"),
        parser.meta.get("pypi:project-status-reason"),
    )
    return UpstreamPage(name=name, files=tuple(files), versions=(), status=status)


def _file(
    *,
    filename: Any,
    href: Any,
    sha256: Any,
    page_url: str,
    requires_python: str | None,
    yanked: bool | str,
    metadata_sha256: str | None,
    size: int | None,
    upload_time: str | None,
) -> UpstreamFile:
    if not isinstance(filename, str) or not FILENAME.match(filename):
        raise MalformedPage(f"it lists a file named {filename!r}, not a distribution's name")
    if not isinstance(sha256, str) or not SHA256.match(sha256):
        raise MalformedPage(f"it gives no sha256 for {filename!r}, so its bytes cannot be checked")
    if not isinstance(href, str):
        raise MalformedPage(f"it gives no URL for {filename!r}")
    url = urljoin(page_url, href)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise MalformedPage(f"the URL of {filename!r} is not an http(s) URL: {url!r}")
    if metadata_sha256 is not None and not SHA256.match(metadata_sha256):
        metadata_sha256 = None  # a metadata file we could not check is not offered
    return UpstreamFile(
        filename=filename,
        url=url,
        sha256=sha256,
        requires_python=requires_python or None,
        yanked=yanked,
        metadata_sha256=metadata_sha256,
        size=size,
        upload_time=upload_time,
    )


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _status(status: Any, reason: Any) -> tuple[str, str | None]:
    known = ("active", "archived", "quarantined", "deprecated")
    return (status if status in known else "active", _optional_str(reason))
