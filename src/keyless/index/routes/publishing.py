"""The JSON API for trusted publishers and the audit trail (owners, with an API token)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyless.oidc.errors import PublisherConfigError

from .. import publishers
from ..accounts import Identity, InvalidCredentials
from ..indexes import IndexInfo
from ..projects import ProjectError
from .common import error, index_or_none, services
from .manage import identity_of, read_json_body, text_field


async def _owner_context(request: Request) -> tuple[IndexInfo, Identity]:
    index = index_or_none(request)
    if index is None:
        raise ProjectError(f"No index named {request.path_params['index']!r} here.", 404)
    identity = await identity_of(request)
    if identity.user_id is None:
        raise ProjectError(
            "Tokens minted for trusted publishers can only upload; use an owner's API token.",
            403,
        )
    if identity.index_id != index.id:
        raise ProjectError(f"This API token is for another index, not {index.name!r}.", 403)
    return index, identity


def _actor(identity: Identity) -> publishers.Actor:
    return publishers.Actor(username=identity.username, user_id=identity.user_id, token=identity)


def _config(document: dict[str, Any]) -> tuple[str, dict[str, str]]:
    kind = text_field(document, "kind")
    config = document.get("config", {})
    if not isinstance(config, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in config.items()
    ):
        raise ProjectError('\'config\' must be an object of strings, e.g. {"owner": "octo"}.')
    return kind, config


async def _answer(request: Request, work: Any) -> Response:
    try:
        return JSONResponse(await work())
    except InvalidCredentials as exc:
        return error(request, 403, exc.reason)
    except PublisherConfigError as exc:
        return JSONResponse(
            {
                "message": "The publisher's settings need fixing: "
                + "; ".join(f"{k}: {v}" for k, v in exc.errors.items()),
                "errors": exc.errors,
            },
            status_code=400,
        )
    except ProjectError as exc:
        return error(request, exc.status, exc.message)


async def list_project_publishers(request: Request) -> Response:
    async def work() -> Any:
        index, identity = await _owner_context(request)
        project = request.path_params["project"]
        publishers = services(request).publishers
        await run_in_threadpool(publishers.check_owner, index.id, project, _actor(identity))
        return await run_in_threadpool(publishers.list_publishers, index.id, project)

    return await _answer(request, work)


async def add_project_publisher(request: Request) -> Response:
    async def work() -> Any:
        index, identity = await _owner_context(request)
        kind, config = _config(await read_json_body(request))
        return await run_in_threadpool(
            services(request).publishers.add_publisher,
            index.id,
            [request.path_params["project"]],
            kind,
            config,
            _actor(identity),
        )

    return await _answer(request, work)


async def remove_project_publisher(request: Request) -> Response:
    async def work() -> Any:
        index, identity = await _owner_context(request)
        try:
            publisher_id = int(request.path_params["publisher"])
        except ValueError:
            raise ProjectError("The publisher id must be a number.", 404) from None
        await run_in_threadpool(
            services(request).publishers.remove_publisher,
            index.id,
            publisher_id,
            _actor(identity),
        )
        return {"removed": publisher_id}

    return await _answer(request, work)


async def add_pending_publisher(request: Request) -> Response:
    async def work() -> Any:
        index, identity = await _owner_context(request)
        document = await read_json_body(request)
        kind, config = _config(document)
        return await run_in_threadpool(
            services(request).publishers.add_pending_publisher,
            index.id,
            text_field(document, "project"),
            kind,
            config,
            _actor(identity),
        )

    return await _answer(request, work)


async def project_audit(request: Request) -> Response:
    async def work() -> Any:
        index, identity = await _owner_context(request)
        project = request.path_params["project"]
        publishers = services(request).publishers
        await run_in_threadpool(publishers.check_owner, index.id, project, _actor(identity))
        return await run_in_threadpool(publishers.audit_trail, index.id, project)

    return await _answer(request, work)


routes = [
    Route("/{index}/api/projects/{project}/publishers", list_project_publishers, methods=["GET"]),
    Route("/{index}/api/projects/{project}/publishers", add_project_publisher, methods=["POST"]),
    Route(
        "/{index}/api/projects/{project}/publishers/{publisher}",
        remove_project_publisher,
        methods=["DELETE"],
    ),
    Route("/{index}/api/pending-publishers", add_pending_publisher, methods=["POST"]),
    Route("/{index}/api/projects/{project}/audit", project_audit, methods=["GET"]),
]
