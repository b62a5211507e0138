"""The JSON management API for owners: yank/unyank releases, set project status.

Authenticated with an API token (same header forms as uploads). Used by `keyless yank`.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..accounts import Identity, InvalidCredentials
from ..projects import ProjectError
from .common import (
    BadJSONBody,
    error,
    index_or_none,
    read_json_object,
    services,
    token_from_headers,
    unknown_index,
)


async def read_json_body(request: Request) -> dict[str, Any]:
    """The owner APIs' JSON object (an empty body is `{}`); raises ProjectError."""
    try:
        return await read_json_object(request, "a JSON object", allow_empty=True)
    except BadJSONBody as exc:
        raise ProjectError(exc.message, exc.status) from None


def text_field(document: dict[str, Any], key: str) -> str:
    value = document.get(key, "")
    if not isinstance(value, str):
        raise ProjectError(f"{key!r} must be a string.")
    return value


async def identity_of(request: Request) -> Identity:
    return await run_in_threadpool(
        services(request).accounts.authenticate, token_from_headers(request)
    )


async def _run(request: Request, action: str) -> Response:
    index = index_or_none(request)
    if index is None:
        return unknown_index(request)
    admin = services(request).projects
    try:
        identity = await identity_of(request)
        if identity.index_id is not None and identity.index_id != index.id:
            raise ProjectError(f"This API token is for another index, not {index.name!r}.", 403)
        document = await read_json_body(request)
        project = request.path_params["project"]
        if action == "status":
            result = await run_in_threadpool(
                admin.set_status,
                identity,
                project,
                text_field(document, "status"),
                text_field(document, "reason"),
            )
        else:
            result = await run_in_threadpool(
                lambda: admin.set_yanked(
                    identity,
                    project,
                    request.path_params["version"],
                    yanked=action == "yank",
                    reason=text_field(document, "reason"),
                )
            )
    except InvalidCredentials as exc:
        return error(request, 403, exc.reason)
    except ProjectError as exc:
        return error(request, exc.status, exc.message)
    return JSONResponse(result)


async def yank(request: Request) -> Response:
    return await _run(request, "yank")


async def unyank(request: Request) -> Response:
    return await _run(request, "unyank")


async def status(request: Request) -> Response:
    return await _run(request, "status")


routes = [
    Route("/{index}/api/projects/{project}/releases/{version}/yank", yank, methods=["POST"]),
    Route("/{index}/api/projects/{project}/releases/{version}/unyank", unyank, methods=["POST"]),
    Route("/{index}/api/projects/{project}/status", status, methods=["POST"]),
]
