"""The legacy upload API (`POST /{index}/legacy/`), as twine, uv, hatch and poetry send it."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyless.store.errors import StorageFull

from ..accounts import InvalidCredentials
from ..multipart import FileTooLarge, FormError, read_upload_form
from ..releases import file_too_large
from ..uploads import UploadRejected
from .common import (
    error,
    index_or_none,
    services,
    storage_full,
    token_from_headers,
    unknown_index,
)

# An upload refused before its body is read (unknown index, bad token, file too large) is
# answered at once: the server closes the connection after the answer, reading little more
# of the body (keyless.index.server, "An early answer").


async def upload(request: Request) -> Response:
    heap = services(request).heap
    heap.upload_started()
    try:
        return await _upload(request)
    finally:  # however it ended: answered, refused, timed out, cut off
        heap.upload_ended()


async def _upload(request: Request) -> Response:
    index = index_or_none(request)
    if index is None:
        return unknown_index(request)
    svc = services(request)
    body = request.stream()
    try:
        identity = await run_in_threadpool(svc.accounts.authenticate, token_from_headers(request))
    except InvalidCredentials as exc:
        return error(request, 403, exc.reason)
    try:
        form = await read_upload_form(
            request.headers.get("content-type", ""),
            body,
            svc.blobs,
            max_file_size=index.max_file_size,
        )
    except FileTooLarge as exc:
        return error(request, 400, file_too_large(exc.project or "(unnamed)", exc.limit))
    except FormError as exc:
        return error(request, exc.status, exc.message)
    except StorageFull as exc:  # the temp file could not be written; it is gone
        return storage_full(request, exc)
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening; the temp file is gone
    try:
        outcome = await run_in_threadpool(svc.uploads.upload, index, identity, form)
    except UploadRejected as exc:
        return error(request, exc.status, exc.message)
    except StorageFull as exc:  # the database could not grow; nothing of the upload stays
        return storage_full(request, exc)
    return JSONResponse(
        {
            "message": "OK" if outcome.created else "OK: this exact file was already uploaded",
            "filename": outcome.filename,
            "sha256": outcome.sha256,
            "project": outcome.project,
        }
    )


routes = [
    Route("/{index}/legacy/", upload, methods=["POST"]),
    # Without the slash too: a redirect would not do, since twine, uv, hatch and pdm do not
    # re-send an upload to a 308's Location (they fail), and it costs the body twice.
    Route("/{index}/legacy", upload, methods=["POST"]),
]
