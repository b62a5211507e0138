"""An index's upstream over HTTP: project pages of names the index does not own, and their
files at /{index}/+mirror/{project}/{sha256}/{filename} (index/mirror/ decides what may be
served; this module only maps its answers and refusals to responses)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from urllib.parse import quote

from packaging.utils import NormalizedName, canonicalize_name
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import Refused
from ..indexes import IndexInfo
from ..mirror import MirroredPage
from ..mirror.upstream import UpstreamFile
from ..pages import JSON_TYPE, METADATA_SUFFIX, PageSet, etag_matches, negotiate
from .common import Services, error, index_or_none, services, unknown_index
from .files import SHA256, serve_blob

# Shorter than a local page's: an upstream page changes without this server knowing.
CACHE_CONTROL = "max-age=60, public"
STALE_HEADER = "x-keyless-stale"
SOURCE_HEADER = "x-keyless-source"
IMMUTABLE = {"cache-control": "max-age=31536000, immutable"}  # a file's URL names its hash

log = logging.getLogger("keyless.mirror")


async def project_page(request: Request, index: IndexInfo, name: NormalizedName) -> Response:
    """The upstream's page of `name`, which the index does not have (routes/simple.py)."""
    svc = services(request)
    try:
        found = await run_in_threadpool(svc.mirror.project, index.id, index.name, name)
    except Refused as exc:
        return error(request, exc.status, exc.message)
    return _send(request, found, "upstream")


async def merged_page(
    request: Request, index: IndexInfo, name: NormalizedName, local: PageSet
) -> Response:
    """The index's own project `name`, on its merge list, with the upstream's files too."""
    svc = services(request)
    found = await run_in_threadpool(svc.mirror.merged, index.id, index.name, name, local)
    return _send(request, found, "index+upstream")


async def root_page(request: Request, index: IndexInfo) -> Response:
    """The index's projects and the upstream's other names (routes/simple.py)."""
    svc = services(request)
    local = await run_in_threadpool(svc.catalog.project_names, index.id)
    found = await run_in_threadpool(svc.mirror.root, index.name, local)
    return _send(request, found, "index+upstream")


def _send(request: Request, found: MirroredPage, source: str) -> Response:
    media_type = negotiate(request.headers.get("accept", ""))
    page = found.pages.json if media_type == JSON_TYPE else found.pages.html
    headers = {
        "etag": page.etag,
        "vary": "Accept",
        "cache-control": CACHE_CONTROL,
        SOURCE_HEADER: source,
    }
    if found.stale is not None:
        headers[STALE_HEADER] = found.stale
        headers["cache-control"] = "no-cache"
    if etag_matches(request.headers.get("if-none-match"), page.etag):
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type=media_type, headers=headers)


async def download(request: Request) -> Response:
    """An upstream file at its mirror URL, or its PEP 658 metadata file (the URL + .metadata)."""
    index = index_or_none(request)
    if index is None:
        return unknown_index(request)
    params = request.path_params
    sha256, filename = params["sha256"], params["filename"]
    name = canonicalize_name(params["project"])
    svc = services(request)
    if not svc.mirror.mirrors(index.name) or not SHA256.match(sha256):
        return error(request, 404, f"No mirrored file here: {index.name!r} has no upstream.")
    dist_name = filename.removesuffix(METADATA_SUFFIX)
    try:
        found = await run_in_threadpool(
            svc.mirror.file, index.id, index.name, name, sha256, dist_name
        )
        if dist_name != filename:
            data = await run_in_threadpool(svc.mirror.metadata, index.id, index.name, name, found)
            return Response(
                data,
                media_type="text/plain; charset=utf-8",
                headers={"etag": f'"{found.metadata_sha256}"', **IMMUTABLE},
            )
        return await _file(request, svc, index, name, found)
    except Refused as exc:
        return error(request, exc.status, exc.message)


async def _file(
    request: Request, svc: Services, index: IndexInfo, name: NormalizedName, found: UpstreamFile
) -> Response:
    """The file from the store when it is there, else its first download: fetched, streamed
    to this client and stored on the way. Raises Refused."""
    headers = {"etag": f'"{found.sha256}"', **IMMUTABLE}
    if etag_matches(request.headers.get("if-none-match"), headers["etag"]):
        return Response(status_code=304, headers=headers)
    if await run_in_threadpool(svc.blobs.exists, found.sha256):
        if svc.mirror.download_to_record(index.id, found.filename):  # for `keyless mirror prune`
            await run_in_threadpool(svc.mirror.record_download, index.id, found.filename)
        return await serve_blob(request, found.sha256, found.filename, headers)
    upstream = await svc.mirror.open_download(index.name, found)
    if "content-length" in upstream.headers:
        # The client then sees a cut-off transfer as one (a refused file ends a chunk short).
        headers["content-length"] = upstream.headers["content-length"]
    headers["content-disposition"] = f"attachment; filename*=utf-8''{quote(found.filename)}"
    headers[SOURCE_HEADER] = "upstream"
    return _ClosingStream(
        svc.mirror.store_while_streaming(index.id, name, found, upstream),
        media_type="application/octet-stream",
        headers=headers,
    )


class _ClosingStream(StreamingResponse):
    """A StreamingResponse that closes its generator however the response ends. When the
    client goes away, Starlette cancels the sending, and a generator paused at a `yield` was
    left to the garbage collector: the upstream transfer went on and its temp file stayed
    until then.

    A file refused half-way (its hash, an upstream that stops sending) can only be a cut-off
    transfer, its headers being sent: a line in the log says why, and the response is left
    unfinished, which uvicorn answers by closing the connection (not a traceback)."""

    body_iterator: AsyncGenerator[bytes, None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Refused as exc:
            log.warning("%s cut off: %s", scope["path"], exc.message)
        finally:
            await self.body_iterator.aclose()


routes = [
    Route("/{index}/+mirror/{project}/{sha256}/{filename}", download, methods=["GET", "HEAD"]),
]
