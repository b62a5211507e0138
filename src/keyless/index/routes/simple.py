"""The simple repository API: /{index}/simple/ and /{index}/simple/{project}/.

The hot path of the whole server (pip and uv fetch a page per dependency per install), so the
two page routes are raw ASGI endpoints: a cached page is answered from precomputed header lists
and bytes, with no Request or Response object and no per-request header building. Anything
else (unknown index or project, a name to redirect, a page not cached yet) takes the ordinary
Starlette path below, which defines the behaviour; the fast path sends exactly what it would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from packaging.utils import canonicalize_name
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..pages import JSON_TYPE, PageSet, Rendered, etag_matches, negotiate
from . import mirror
from .common import Services, error, index_or_none, services, unknown_index

CACHE_CONTROL = "max-age=60, public"

# Accept header -> negotiated type. Clients send a handful of distinct headers; the bound keeps
# made-up ones from growing it.
_NEGOTIATED: dict[bytes, str] = {}
_NEGOTIATED_MAX = 256


def _negotiate(accept: bytes) -> str:
    media_type = _NEGOTIATED.get(accept)
    if media_type is None:
        media_type = negotiate(accept.decode("latin-1"))
        if len(_NEGOTIATED) >= _NEGOTIATED_MAX:
            _NEGOTIATED.clear()
        _NEGOTIATED[accept] = media_type
    return media_type


# More headers of a page, after the common ones: none for a local page; an upstream page's
# say where it comes from (routes/mirror.py). A page is always sent with the same ones.
Extra = tuple[tuple[bytes, bytes], ...]
LOCAL: Extra = ()
UPSTREAM: Extra = ((mirror.SOURCE_HEADER.encode("latin-1"), b"upstream"),)


def _headers(page: Rendered, media_type: str, extra: Extra) -> list[tuple[bytes, bytes]]:
    """The headers Starlette's Response(page.body, media_type=..., headers=...) would send."""
    cached = page.header_cache.get(media_type)
    if cached is None:
        content_type = media_type
        if content_type.startswith("text/") and "charset=" not in content_type.lower():
            content_type += "; charset=utf-8"
        cached = [
            *_not_modified_headers(page, extra),
            (b"content-length", str(len(page.body)).encode("latin-1")),
            (b"content-type", content_type.encode("latin-1")),
        ]
        page.header_cache[media_type] = cached
    return cached


def _not_modified_headers(page: Rendered, extra: Extra) -> list[tuple[bytes, bytes]]:
    cached = page.header_cache.get("")
    if cached is None:
        cached = [
            (b"etag", page.etag.encode("latin-1")),
            (b"vary", b"Accept"),
            (b"cache-control", CACHE_CONTROL.encode("latin-1")),
            *extra,
        ]
        page.header_cache[""] = cached
    return cached


async def answer_cached(scope: Scope, send: Send) -> tuple[int, int] | None:
    """Answer a GET/HEAD of a simple page that is in memory, before any routing.

    Returns (status, body bytes sent), or None — having sent nothing — for any other request,
    which then takes the ordinary route. Only paths the router would give to a `CachedPage`
    qualify (`/{index}/simple/` and `/{index}/simple/{project}/`; no earlier
    route can match them), so the answer is the one the route would have sent.
    """
    if scope["method"] not in ("GET", "HEAD") or scope.get("root_path"):
        return None
    parts = scope["path"].split("/")
    count = len(parts)
    if count == 5:
        _, index_name, simple, project, tail = parts
    elif count == 4:
        _, index_name, simple, tail = parts
        project = None
    else:
        return None
    if simple != "simple" or tail or not index_name:
        return None
    found = _cached(scope["app"].state.services, index_name, project)
    if found is None:
        return None
    return await _send_fast(scope, send, *found)


def _cached(svc: Services, index_name: str, project: str | None) -> tuple[PageSet, Extra] | None:
    """The in-memory pages of an index's root (`project` None) or of a project, local or
    the upstream's (within its TTL), with the headers they add; else None.

    Cached pages are keyed by normalized name: a hit also says the name needs no redirect.
    """
    index = svc.indexes.get(index_name)
    if index is None:
        return None
    if project is None:
        # An index with an upstream merges its root page per request (routes/mirror.py).
        root = None if svc.mirror.mirrors(index_name) else svc.pages.cached_root(index.id)
        return None if root is None else (root, LOCAL)
    if not project or svc.mirror.merges(index_name, project):
        return None  # no name, or one merged with the upstream's files per request (mirror.py)
    pages = svc.pages.cached_project(index.id, project)
    if pages is not None:
        return pages, LOCAL
    # Only pages of names the index did not own when they were kept, dropped when it comes to.
    pages = svc.pages.cached_upstream(index.id, project)
    return None if pages is None else (pages, UPSTREAM)


async def _send_fast(scope: Scope, send: Send, pages: PageSet, extra: Extra) -> tuple[int, int]:
    accept = b""
    if_none_match: bytes | None = None
    seen_accept = False
    for name, value in scope["headers"]:
        # The first of repeated headers counts, as with Starlette's request.headers.get().
        if name == b"accept" and not seen_accept:
            accept, seen_accept = value, True
        elif name == b"if-none-match" and if_none_match is None:
            if_none_match = value
    media_type = _negotiate(accept)
    page = pages.json if media_type == JSON_TYPE else pages.html
    if if_none_match is not None and etag_matches(if_none_match.decode("latin-1"), page.etag):
        # A copy of the cached list: a middleware may add headers to the message in place.
        headers, status, body = list(_not_modified_headers(page, extra)), 304, b""
    else:
        headers, status, body = list(_headers(page, media_type, extra)), 200, page.body
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status, len(body)


def send_pages(request: Request, pages: PageSet) -> Response:
    """The page in the representation the client asks for (also a stage's, routes/stage.py)."""
    media_type = negotiate(request.headers.get("accept", ""))
    page = pages.json if media_type == JSON_TYPE else pages.html
    headers = {"etag": page.etag, "vary": "Accept", "cache-control": CACHE_CONTROL}
    if etag_matches(request.headers.get("if-none-match"), page.etag):
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type=media_type, headers=headers)


def _services(scope: Scope) -> Services:
    return scope["app"].state.services  # type: ignore[no-any-return]


class CachedPage:
    """ASGI endpoint of /{index}/simple/ and /{index}/simple/{project}/: the page from memory,
    else `fallback`, the ordinary Starlette endpoint (Starlette routes an object that is not a
    function to it as ASGI)."""

    def __init__(self, fallback: Callable[[Request], Awaitable[Response]]) -> None:
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        svc = _services(scope)
        params = scope["path_params"]
        found = _cached(svc, params["index"], params.get("project"))
        if found is not None:
            svc.pages.hits += 1
            await _send_fast(scope, send, *found)
            return
        response = await self._fallback(Request(scope, receive))
        await response(scope, receive, send)


async def root(request: Request) -> Response:
    index = index_or_none(request)
    if index is None:
        return unknown_index(request)
    if services(request).mirror.mirrors(index.name):
        return await mirror.root_page(request, index)
    return send_pages(request, services(request).pages.root(index.id, index.name))


async def project(request: Request) -> Response:
    index = index_or_none(request)
    if index is None:
        return unknown_index(request)
    raw = request.path_params["project"]
    normalized = canonicalize_name(raw)
    if raw != normalized:
        return RedirectResponse(
            f"{_prefix(request)}/{index.name}/simple/{normalized}/", status_code=301
        )
    svc = services(request)
    pages = svc.pages.project(index.id, index.name, normalized)
    if pages is None:
        if svc.mirror.mirrors(index.name):
            # Only names the index does not own go upstream (dependency confusion: mirror/).
            return await mirror.project_page(request, index, normalized)
        return error(request, 404, f"No project named {raw!r} on index {index.name!r}.")
    if svc.mirror.merges(index.name, normalized):
        return await mirror.merged_page(request, index, normalized, pages)
    return send_pages(request, pages)


def _prefix(request: Request) -> str:
    # Behind a proxy serving us under a path (public-url), the path we see lacks that prefix;
    # a Location without it would send the client out of keyless.
    return services(request).pages.url_prefix


async def root_slash(request: Request) -> Response:
    return RedirectResponse(_prefix(request) + request.url.path + "/", status_code=301)


async def project_slash(request: Request) -> Response:
    # One hop straight to the canonical URL, whatever was wrong with the one asked for.
    normalized = canonicalize_name(request.path_params["project"])
    return RedirectResponse(
        f"{_prefix(request)}/{request.path_params['index']}/simple/{normalized}/", 301
    )


routes = [
    # Raw ASGI endpoints take any method unless told: GET (and HEAD), as before.
    Route("/{index}/simple/", CachedPage(root), methods=["GET"]),
    Route("/{index}/simple", root_slash),
    Route("/{index}/simple/{project}/", CachedPage(project), methods=["GET"]),
    Route("/{index}/simple/{project}", project_slash),
    # hatch takes any index but PyPI for devpi and reads this page to skip files already
    # uploaded. It follows no redirect, so the page itself is served here.
    Route("/{index}/legacy/+simple/{project}/", CachedPage(project), methods=["GET"]),
]
