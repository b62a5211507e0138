"""Distribution files and their PEP 658 metadata, at one content-addressed URL for all indexes.

The bytes come from the blob store's `serve`: a stream read in chunks off the event loop, with
single HTTP ranges (RFC 9110 §14) for resumed downloads, or a redirect when the backend serves
files itself. This module never sees where a blob is kept.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from keyless.store.blobs import BlobRedirect, BlobStream

from ..catalog import Lookup
from ..pages import METADATA_SUFFIX, etag_matches
from .common import error, services

SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
# Bytes per read of a blob: each is one trip to a worker thread, and this is what a response
# holds in memory at a time.
CHUNK = 256 * 1024
# One range, as resuming clients send it: `bytes=FIRST-[LAST]` or `bytes=-SUFFIX_LENGTH`.
SINGLE_RANGE = re.compile(r"^bytes=(?:(\d+)-(\d*)|-(\d+))\Z")


async def download(request: Request) -> Response:
    sha256, filename = request.path_params["sha256"], request.path_params["filename"]
    if not SHA256.match(sha256):
        return error(request, 404, "No such file: the path must be /files/<sha256>/<filename>.")
    want_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename[: -len(METADATA_SUFFIX)] if want_metadata else filename
    found = await run_in_threadpool(
        services(request).catalog.file, sha256, dist_name, want_metadata
    )
    return await serve(request, found, sha256, dist_name, want_metadata)


async def serve(
    request: Request, found: Lookup, sha256: str, dist_name: str, want_metadata: bool
) -> Response:
    """Answer with the file (or its metadata) `found` says is offered: the published files'
    route above, and a PEP 694 stage's (routes/stage.py)."""
    if not found.known:
        return error(request, 404, f"No file {dist_name!r} with sha256 {sha256} here.")
    if not found.offered:
        return error(request, 403, f"{dist_name!r} belongs to a quarantined project.")
    # The bytes behind a hash never change, so clients may cache them forever.
    etag = f'"{found.metadata_sha256 if want_metadata else sha256}"'
    headers = {"etag": etag, "cache-control": "max-age=31536000, immutable"}
    if want_metadata:
        if found.metadata_sha256 is None:
            return error(request, 404, f"{dist_name!r} has no separate metadata file (PEP 658).")
        if found.metadata is None:
            return error(request, 404, f"The metadata of {dist_name!r} is missing from the store.")
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if found.metadata is not None:
        return Response(found.metadata, media_type="text/plain; charset=utf-8", headers=headers)
    return await serve_blob(request, sha256, dist_name, headers)


async def serve_blob(
    request: Request, sha256: str, dist_name: str, headers: dict[str, str]
) -> Response:
    """The stored blob `sha256` as the file `dist_name`, with ranges (also mirror.py's)."""
    served = await run_in_threadpool(services(request).blobs.serve, sha256)
    if served is None:
        return error(request, 404, f"The bytes of {dist_name!r} are missing from the store.")
    if isinstance(served, BlobRedirect):
        return RedirectResponse(served.url, status_code=307)
    quoted = quote(dist_name)
    headers["content-disposition"] = (
        f'attachment; filename="{dist_name}"'
        if quoted == dist_name
        else f"attachment; filename*=utf-8''{quoted}"
    )
    wanted = _wanted_range(request, headers["etag"], served.size)
    if wanted is None:
        served.close()
        refused = error(
            request,
            416,
            f"The range {request.headers['range']!r} is outside {dist_name!r}, "
            f"which has {served.size} bytes.",
        )
        refused.headers["content-range"] = f"bytes */{served.size}"
        return refused
    return BlobResponse(served, wanted, headers, head_only=request.method == "HEAD")


def _wanted_range(request: Request, etag: str, size: int) -> tuple[int, int] | None:
    """The bytes to send, as (first, end) with `end` exclusive; None if not satisfiable.

    A Range header this server does not take (several ranges, another unit, bad syntax) is
    ignored, which RFC 9110 allows: the whole file is sent. So is one sent with an If-Range
    that does not name the current ETag (the client holds other bytes; blobs have no date).
    """
    everything = (0, size)
    header = request.headers.get("range")
    if header is None:
        return everything
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return everything
    match = SINGLE_RANGE.match(header.strip())
    if match is None:
        return everything
    first, last, suffix = match.groups()
    if suffix is not None:
        length = min(int(suffix), size)
        return (size - length, size) if length > 0 else None
    start = int(first)
    if last and int(last) < start:
        return everything  # an invalid range: ignored, as one of another syntax
    if start >= size:
        return None
    end = min(int(last) + 1, size) if last else size
    return start, end


class BlobResponse(Response):
    """A blob's bytes `wanted[0]` to `wanted[1]`: 200 for all of them, 206 for a part."""

    def __init__(
        self,
        stream: BlobStream,
        wanted: tuple[int, int],
        headers: dict[str, str],
        head_only: bool,
    ) -> None:
        self.stream = stream
        self.start, self.end = wanted
        self.head_only = head_only
        partial = wanted != (0, stream.size)
        self.status_code = 206 if partial else 200
        self.background = None
        self.media_type = "application/octet-stream"
        self.body = b""
        headers = {
            **headers,
            "accept-ranges": "bytes",
            "content-length": str(self.end - self.start),
        }
        if partial:
            headers["content-range"] = f"bytes {self.start}-{self.end - 1}/{stream.size}"
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            position = self.start
            if self.head_only or position == self.end:
                await send({"type": "http.response.body", "body": b""})
                return
            while position < self.end:
                chunk = await run_in_threadpool(
                    self.stream.read, position, min(CHUNK, self.end - position)
                )
                if not chunk:  # the blob is shorter than it said: end the response early
                    raise OSError(f"blob ended at {position} of {self.end} bytes")
                position += len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": position < self.end}
                )
        finally:
            self.stream.close()


routes = [Route("/files/{sha256}/{filename}", download, methods=["GET", "HEAD"])]
