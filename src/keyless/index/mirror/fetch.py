"""Asking the upstream for a page: a project's or the root (its list of projects).

A page is fetched with the validators of the copy kept (`If-None-Match`, `If-Modified-Since`),
so revalidating it costs a 304; its body is read up to a bound, parsed (upstream.py) and, for a
project, rendered for this server. Every failure is a MirrorRefused that names the upstream and
what was asked of it. Which page is asked for, when, and what is kept in memory and served
stale while the upstream is down is the `Mirror`'s (`__init__.py`); the timeout, credentials and
bounded read here serve its file downloads too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx
from packaging.utils import NormalizedName, canonicalize_name

from keyless.config import IndexSettings

from ..pages import PageSet
from .refused import MirrorRefused, answered, unreachable
from .upstream import ACCEPT, MAX_PAGE_BYTES, MalformedPage, UpstreamPage, parse_page, parse_root

# PyPI's root page lists every project (over half a million names: tens of MB).
MAX_ROOT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class CachedPage:
    page: UpstreamPage
    pages: PageSet  # rendered for this server: file URLs point here
    fetched: float  # time.monotonic() of the last fetch or revalidation
    etag: str | None
    last_modified: str | None


Rows = tuple[tuple[str, NormalizedName], ...]  # a root page's (name as listed, normalized)


@dataclass(frozen=True)
class CachedRoot:
    names: Rows  # unique
    fetched: float
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class Fetched:
    body: bytes
    url: str  # after redirects: what relative links resolve against
    content_type: str
    etag: str | None
    last_modified: str | None


def fetch_page(
    client: httpx.Client,
    settings: IndexSettings,
    name: str,
    cached: CachedPage | None,
    render: Callable[[UpstreamPage], PageSet],
) -> CachedPage:
    """The upstream's page of `name`, fetched or revalidated (`cached`), read and rendered
    for this server by `render`. Raises MirrorRefused (404, 502, 504)."""
    fetched = _get(client, settings, f"{settings.upstream}{name}/", repr(name), cached)
    if fetched is None:
        assert cached is not None  # a 304 answers only the validators sent
        return CachedPage(
            cached.page, cached.pages, time.monotonic(), cached.etag, cached.last_modified
        )
    try:
        page = parse_page(fetched.body, fetched.content_type, fetched.url, name)
    except MalformedPage as exc:
        raise MirrorRefused(
            f"The upstream {settings.upstream}'s page for {name!r} is refused: {exc}.", 502
        ) from None
    pages = render(page)
    return CachedPage(page, pages, time.monotonic(), fetched.etag, fetched.last_modified)


def _get(
    client: httpx.Client,
    settings: IndexSettings,
    url: str,
    what: str,
    cached: CachedPage | CachedRoot | None,
    limit: int = MAX_PAGE_BYTES,
) -> Fetched | None:
    """A page of the upstream, or None when it answers 304 to the cached copy's validators.
    Raises MirrorRefused (404, 502, 504) saying what went wrong with `what`."""
    upstream = settings.upstream
    headers = {"accept": ACCEPT}
    if cached is not None and cached.etag:
        headers["if-none-match"] = cached.etag
    if cached is not None and cached.last_modified:
        headers["if-modified-since"] = cached.last_modified
    try:
        with client.stream(
            "GET", url, headers=headers, auth=auth_for(settings, url), timeout=timeout_of(settings)
        ) as response:
            if response.status_code == 304 and cached is not None:
                return None
            if response.status_code == 404:
                raise MirrorRefused(
                    f"No project named {what} on index {settings.name!r} "
                    f"nor on its upstream {upstream}.",
                    404,
                )
            if response.status_code != 200:
                raise answered(upstream, response.status_code, what)
            body = read_bounded(response, limit)
            fetched = Fetched(
                body=body or b"",
                url=str(response.url),
                content_type=response.headers.get("content-type", ""),
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
    except httpx.HTTPError as exc:
        raise unreachable(upstream, what, exc) from None
    if body is None:
        raise MirrorRefused(
            f"The upstream {upstream} sent a page for {what} larger than {limit} bytes; refused.",
            502,
        )
    return fetched


def fetch_root(
    client: httpx.Client, settings: IndexSettings, cached: CachedRoot | None
) -> CachedRoot:
    """The upstream's list of projects, fetched or revalidated (`cached`). Raises
    MirrorRefused (404, 502, 504)."""
    what = "its list of projects"
    fetched = _get(client, settings, str(settings.upstream), what, cached, MAX_ROOT_BYTES)
    if fetched is None:
        assert cached is not None
        return CachedRoot(cached.names, time.monotonic(), cached.etag, cached.last_modified)
    try:
        names = parse_root(fetched.body, fetched.content_type)
    except MalformedPage as exc:
        raise MirrorRefused(
            f"The upstream {settings.upstream}'s root page is refused: {exc}.", 502
        ) from None
    unique = {canonicalize_name(name): name for name in names}
    rows = tuple((name, normalized) for normalized, name in unique.items())
    return CachedRoot(rows, time.monotonic(), fetched.etag, fetched.last_modified)


def timeout_of(settings: IndexSettings) -> httpx.Timeout:
    # Between two reads, not for the whole transfer: a large file takes what it takes.
    return httpx.Timeout(settings.upstream_timeout)


def auth_for(settings: IndexSettings, url: str) -> tuple[str, str] | None:
    """The upstream's credentials, for URLs on the upstream's own host only: files kept
    elsewhere (a CDN) must not receive them."""
    if not settings.upstream_credentials:
        return None
    upstream = urlparse(str(settings.upstream))
    target = urlparse(url)
    if (target.scheme, target.netloc) != (upstream.scheme, upstream.netloc):
        return None
    user, _, password = settings.upstream_credentials.partition(":")
    return user, password


def read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it passes `limit` bytes."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
