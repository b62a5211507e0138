"""`POST /{index}/api/projects/{project}/releases/{version}/promote` with `{"to": "<index>"}`.

Puts the release's files on the target index too — the same bytes under the same hashes (see
`keyless.index.promote` for the rules and who may do it). Authenticated with an API token for
the TARGET index (or a trusted-publisher token whose scope includes the target project), sent
as for uploads (Basic `__token__:<token>`, or `Bearer`/`token`).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..accounts import InvalidCredentials
from ..pages import file_url
from ..projects import ProjectError
from ..promote import PromoteRejected
from .common import error, index_or_none, public_base, services, unknown_index
from .manage import identity_of, read_json_body


async def promote(request: Request) -> Response:
    source = index_or_none(request)
    if source is None:
        return unknown_index(request)
    svc = services(request)
    try:
        identity = await identity_of(request)
        document = await read_json_body(request)
    except InvalidCredentials as exc:
        return error(request, 403, exc.reason)
    except ProjectError as exc:
        return error(request, exc.status, exc.message)
    to = document.get("to")
    if not isinstance(to, str) or not to:
        return error(
            request, 400, 'The request body must be a JSON object like {"to": "<target index>"}.'
        )
    target = svc.indexes.get(to)
    if target is None:
        names = ", ".join(sorted(svc.indexes))
        return error(request, 400, f"No index named {to!r} to promote to; indexes: {names}.")
    try:
        outcome = await run_in_threadpool(
            svc.promotion.promote,
            source,
            target,
            identity,
            request.path_params["project"],
            request.path_params["version"],
        )
    except PromoteRejected as exc:
        return error(request, exc.status, exc.message)
    base = public_base(request)
    return JSONResponse(outcome.as_json(lambda sha256, name: file_url(base, sha256, name)))


routes = [
    Route("/{index}/api/projects/{project}/releases/{version}/promote", promote, methods=["POST"]),
]
