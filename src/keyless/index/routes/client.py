"""The release client this server runs, for CI jobs to install pinned by sha256.

`GET /+client/` describes it (JSON: version, wheel and requirements URLs with their sha256);
`GET /+client/{version}/requirements.txt` is the file for
`python -m pip install --require-hashes -r`, and `GET /+client/{version}/{wheel}` the wheel it
names. `+` cannot begin an index name (config.INDEX_NAME), so these never shadow an index. A
version other than the running one is a 404 that names the one served: a workflow pinned to
an older client must be written again (`keyless init --force`).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..client_dist import (
    CLIENT_PATH,
    ClientUnavailable,
    ClientWheel,
    client_description,
    client_folder,
    client_requirements,
    client_wheel,
)
from .common import error, public_base

PREFIX = CLIENT_PATH.rstrip("/")


async def _wheel(request: Request) -> ClientWheel | Response:
    try:
        return await run_in_threadpool(client_wheel)  # built on the first request, then kept
    except ClientUnavailable as exc:
        return error(request, 503, str(exc))


async def describe(request: Request) -> Response:
    try:
        described = await run_in_threadpool(client_description, public_base(request))
    except ClientUnavailable as exc:
        return error(request, 503, str(exc))
    return JSONResponse(described)


async def _served(request: Request) -> ClientWheel | Response:
    wheel = await _wheel(request)
    if isinstance(wheel, Response):
        return wheel
    asked = request.path_params["version"]
    if asked != wheel.version:
        return error(
            request,
            404,
            f"this index serves keyless {wheel.version}, not {asked}: see {PREFIX}/ "
            "(a workflow pinned to another version: write it again with `keyless init`).",
        )
    return wheel


async def requirements_file(request: Request) -> Response:
    wheel = await _served(request)
    if isinstance(wheel, Response):
        return wheel
    wheel_url = f"{client_folder(public_base(request), wheel)}/{wheel.filename}"
    return Response(client_requirements(wheel, wheel_url), media_type="text/plain")


async def wheel_file(request: Request) -> Response:
    wheel = await _served(request)
    if isinstance(wheel, Response):
        return wheel
    if request.path_params["filename"] != wheel.filename:
        return error(request, 404, f"the client's wheel is {wheel.filename}.")
    return Response(wheel.data, media_type="application/zip")


routes = [
    Route(f"{PREFIX}/", describe, methods=["GET", "HEAD"]),
    Route(f"{PREFIX}/{{version}}/requirements.txt", requirements_file, methods=["GET", "HEAD"]),
    Route(f"{PREFIX}/{{version}}/{{filename}}", wheel_file, methods=["GET", "HEAD"]),
]
