"""Trusted Publishing endpoints.

PyPI's, at the host root (what uv, twine, pdm and the GitHub action call today):
`GET /_/oidc/audience`, `POST /_/oidc/mint-token` (and the legacy `/_/oidc/github/mint-token`),
`POST /_/oidc/burn-token`. PEP 807's, per index: `GET /.well-known/pytp/{sha256 of the upload
path}` pointing at `/_/oidc/{index}/audience` and `/_/oidc/{index}/mint-token`, so each index
can be its own trust boundary with its own audience.

keyless' own, next to PEP 807's: `POST /_/oidc/{index}/dry-run` with
`{"token": "<OIDC token>", "project": "<name>"}` asks whether that index's mint would accept
the token and its upload token could upload to the project — `keyless doctor`'s question.
It mints nothing and does not use the token up; see `TrustedPublishing.dry_run`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyless.oidc.errors import TokenError

from ..accounts import hash_token
from ..indexes import IndexInfo
from ..trusted import NotAProjectName, RequestInfo
from .common import BadJSONBody, public_base, read_json_object, services

PYTP_TYPE = "application/vnd.pypi.pytp.v1+json"


def upload_path_key(path: str) -> str:
    """PEP 807's discovery key: the sha256 of the upload URL's path."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


def _failure(code: str, description: str, message: str = "Token request failed") -> JSONResponse:
    # PyPI's shape: clients print every code/description pair.
    return JSONResponse(
        {"message": message, "errors": [{"code": code, "description": description}]},
        status_code=422,
    )


async def _token_from_body(request: Request) -> object:
    """`{"token": ...}` from the raw body, whatever the Content-Type (uv sends none)."""
    try:
        document = await read_json_object(request, 'JSON: {"token": "<OIDC token>"}')
    except BadJSONBody as exc:
        raise TokenError("invalid-payload", exc.message) from None
    return document.get("token")


def _disabled() -> JSONResponse:
    return JSONResponse({"message": "Trusted publishing functionality not enabled"}, 403)


async def audience(request: Request) -> Response:
    settings = services(request).settings.trusted_publishing
    if not settings.enabled:
        return _disabled()
    return JSONResponse({"audience": settings.audience})


async def _mint(
    request: Request, audience: str, indexes: list[IndexInfo], pep807: bool
) -> Response:
    svc = services(request)
    client = request.client.host if request.client else "-"
    info = RequestInfo(client_ip=client, user_agent=request.headers.get("user-agent", ""))
    try:
        token = await _token_from_body(request)
        minted = await run_in_threadpool(svc.trusted.mint, token, audience, indexes, info)
    except TokenError as exc:
        svc.metrics.count_mint(exc.code)
        return _failure(exc.code, exc.description)
    svc.metrics.count_mint("ok")
    if pep807:
        return JSONResponse({"token": minted.token, "expires": minted.expires})
    return JSONResponse({"success": True, "token": minted.token, "expires": minted.expires})


async def mint_token(request: Request) -> Response:
    """Root endpoint: every index that uses the server's own audience."""
    svc = services(request)
    host_audience = svc.settings.trusted_publishing.audience
    indexes = [
        index
        for name, index in svc.indexes.items()
        if svc.settings.audience_for(name) == host_audience
    ]
    return await _mint(request, host_audience, indexes, pep807=False)


async def burn_token(request: Request) -> Response:
    """Revoke a minted token early (uv does this after every trusted upload). Idempotent."""
    try:
        token = await _token_from_body(request)
    except TokenError as exc:
        return _failure(exc.code, exc.description)
    if not isinstance(token, str) or not token:
        return _failure("invalid-payload", 'The request body must be JSON: {"token": "..."}.')
    await run_in_threadpool(services(request).accounts.revoke_token_by_hash, hash_token(token))
    return JSONResponse({"success": True})


def _pytp_index(request: Request) -> IndexInfo | Response:
    """The index a per-index PEP 807 endpoint's path names; or the answer refusing the request:
    406 when it does not accept PEP 807's media type, 404 (no body) for an unknown index."""
    if not _accepts_pytp(request):
        return _not_acceptable()
    index = services(request).indexes.get(request.path_params["index"])
    if index is None:
        return Response(status_code=404)
    return index


def _accepts_pytp(request: Request) -> bool:
    accept = request.headers.get("accept", "").strip()
    return not accept or any(
        part.split(";")[0].strip() in (PYTP_TYPE, "*/*", "application/*")
        for part in accept.split(",")
    )


def _not_acceptable() -> Response:
    return JSONResponse({"message": f"Send 'Accept: {PYTP_TYPE}'."}, status_code=406)


async def discovery(request: Request) -> Response:
    if not _accepts_pytp(request):
        return _not_acceptable()
    svc = services(request)
    index_name = svc.pytp_keys.get(request.path_params["key"])
    if index_name is None or not svc.settings.trusted_publishing.enabled:
        return Response(status_code=404)  # PEP 807: no body when this upload URL has no TP
    base = public_base(request)
    return JSONResponse(
        {
            "audience-endpoint": f"{base}/_/oidc/{index_name}/audience",
            "mint-token-endpoint": f"{base}/_/oidc/{index_name}/mint-token",
        },
        media_type=PYTP_TYPE,
    )


async def index_audience(request: Request) -> Response:
    index = _pytp_index(request)
    if isinstance(index, Response):
        return index
    if not services(request).settings.trusted_publishing.enabled:
        return _disabled()
    return JSONResponse(
        {"audience": services(request).settings.audience_for(index.name)}, media_type=PYTP_TYPE
    )


async def index_mint_token(request: Request) -> Response:
    index = _pytp_index(request)
    if isinstance(index, Response):
        return index
    audience_value = services(request).settings.audience_for(index.name)
    return await _mint(request, audience_value, [index], pep807=True)


DRY_RUN_SHAPE = 'JSON: {"token": "<OIDC token>", "project": "<project name>"}'


async def index_dry_run(request: Request) -> Response:
    """200 with the answer, yes or no (`DryRunAnswer.to_dict`); 422 for a body that is not
    the question; 404 for an unknown index."""
    index = _pytp_index(request)
    if isinstance(index, Response):
        return index
    try:
        document = await read_json_object(request, DRY_RUN_SHAPE)
    except BadJSONBody as exc:
        return _failure("invalid-payload", exc.message, "Dry run request failed")
    token, project = document.get("token"), document.get("project")
    if not isinstance(token, str) or not token or not isinstance(project, str):
        return _failure(
            "invalid-payload",
            f"The request body must be {DRY_RUN_SHAPE}.",
            "Dry run request failed",
        )
    svc = services(request)
    audience_value = svc.settings.audience_for(index.name)
    try:
        answer = await run_in_threadpool(svc.trusted.dry_run, token, audience_value, index, project)
    except NotAProjectName as exc:
        return _failure("invalid-payload", str(exc), "Dry run request failed")
    return JSONResponse(answer.to_dict(), media_type=PYTP_TYPE)


def pytp_keys(index_names: list[str], url_prefix: str) -> dict[str, str]:
    """Discovery key -> index name, for each index's upload path."""
    return {upload_path_key(f"{url_prefix}/{name}/legacy/"): name for name in index_names}


routes: list[Any] = [
    Route("/_/oidc/audience", audience, methods=["GET"]),
    Route("/_/oidc/mint-token", mint_token, methods=["POST"]),
    Route("/_/oidc/github/mint-token", mint_token, methods=["POST"]),
    Route("/_/oidc/burn-token", burn_token, methods=["POST"]),
    Route("/.well-known/pytp/{key}", discovery, methods=["GET"]),
    Route("/_/oidc/{index}/audience", index_audience, methods=["GET"]),
    Route("/_/oidc/{index}/mint-token", index_mint_token, methods=["POST"]),
    Route("/_/oidc/{index}/dry-run", index_dry_run, methods=["POST"]),
]
