"""The stage of a PEP 694 upload session: `/{index}/+stage/{token}/simple/` and its files.

A full simple index (PEP 503/691) — the index's published projects plus the session's
completed files — that pip and uv install from as `--index-url` or `--extra-index-url`,
without credentials: the unguessable token in the URL is the capability. 404 once the session
is published or canceled.
"""

from __future__ import annotations

from packaging.utils import canonicalize_name
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..catalog import Lookup
from ..pages import METADATA_SUFFIX
from ..upload2.stage import Stage
from .common import error, index_or_none, services, unknown_index
from .files import SHA256, serve
from .simple import send_pages

NO_STAGE = "No stage here: the upload session was published or canceled, or never existed."


async def _stage(request: Request) -> tuple[int, str, Stage] | Response:
    index = index_or_none(request)
    if index is None:
        return unknown_index(request)
    stage = await run_in_threadpool(
        services(request).upload_sessions.stage, index, request.path_params["token"]
    )
    if stage is None:
        return error(request, 404, NO_STAGE)
    return index.id, index.name, stage


async def root(request: Request) -> Response:
    found = await _stage(request)
    if isinstance(found, Response):
        return found
    index_id, index_name, stage = found
    pages = await run_in_threadpool(services(request).pages.stage_root, index_id, index_name, stage)
    return send_pages(request, pages)


async def project(request: Request) -> Response:
    found = await _stage(request)
    if isinstance(found, Response):
        return found
    index_id, index_name, stage = found
    raw = request.path_params["project"]
    normalized = canonicalize_name(raw)
    pages_of = services(request).pages
    if raw != normalized:
        prefix = pages_of.stage_prefix(index_name, stage.token)
        return RedirectResponse(f"{prefix}/simple/{normalized}/", status_code=301)
    pages = await run_in_threadpool(pages_of.stage_project, index_id, index_name, stage, normalized)
    if pages is None:
        return error(request, 404, f"No project named {raw!r} on index {index_name!r}.")
    return send_pages(request, pages)


async def download(request: Request) -> Response:
    found = await _stage(request)
    if isinstance(found, Response):
        return found
    stage = found[2]
    sha256, filename = request.path_params["sha256"], request.path_params["filename"]
    want_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename[: -len(METADATA_SUFFIX)] if want_metadata else filename
    staged = stage.staged(sha256, dist_name) if SHA256.match(sha256) else None
    if staged is None:
        return error(request, 404, f"No file {dist_name!r} with sha256 {sha256} on this stage.")
    lookup = Lookup(known=True, offered=True, metadata_sha256=staged.metadata_sha256)
    if want_metadata and staged.metadata_sha256 is not None:
        lookup.metadata = await run_in_threadpool(
            services(request).upload_sessions.staged_metadata, staged.metadata_sha256
        )
    return await serve(request, lookup, sha256, dist_name, want_metadata)


async def slash(request: Request) -> Response:
    return RedirectResponse(
        services(request).pages.url_prefix + request.url.path + "/", status_code=301
    )


STAGE = "/{index}/+stage/{token}"
routes = [
    Route(STAGE + "/simple/", root, methods=["GET"]),
    Route(STAGE + "/simple", slash, methods=["GET"]),
    Route(STAGE + "/simple/{project}/", project, methods=["GET"]),
    Route(STAGE + "/simple/{project}", slash, methods=["GET"]),
    Route(STAGE + "/files/{sha256}/{filename}", download, methods=["GET", "HEAD"]),
]
