"""The simple repository API: /{index}/simple/ and /{index}/simple/{project}/."""

from __future__ import annotations

from packaging.utils import canonicalize_name
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..pages import JSON_TYPE, PageSet, etag_matches, negotiate
from .common import error, index_or_none, services, unknown_index


def _send(request: Request, pages: PageSet) -> Response:
    media_type = negotiate(request.headers.get("accept", ""))
    page = pages.json if media_type == JSON_TYPE else pages.html
    headers = {"etag": page.etag, "vary": "Accept", "cache-control": "max-age=60, public"}
    if etag_matches(request.headers.get("if-none-match"), page.etag):
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type=media_type, headers=headers)


async def root(request: Request) -> Response:
    index = index_or_none(request)
    if index is None:
        return unknown_index(request)
    return _send(request, services(request).pages.root(index.id, index.name))


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
    pages = services(request).pages.project(index.id, index.name, normalized)
    if pages is None:
        return error(request, 404, f"No project named {raw!r} on index {index.name!r}.")
    return _send(request, pages)


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
    Route("/{index}/simple/", root),
    Route("/{index}/simple", root_slash),
    Route("/{index}/simple/{project}/", project),
    Route("/{index}/simple/{project}", project_slash),
]
