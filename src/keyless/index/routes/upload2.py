"""PEP 694's Upload 2.0 API (`/{index}/upload/2.0/`): publishing and file upload sessions.

Implemented: PEP 694 as of python/peps commit f24540568 (2026-07-29). Every handler parses,
calls one use case of `index.upload2` and maps the result or refusal to an answer: JSON of
`application/vnd.pypi.upload.v2+json`, or an RFC 9457 `application/problem+json`. Every
request needs credentials (401 without valid ones, 403 when they may not act now), checked
again by the use case against current rights.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyless.store.errors import StorageFull

from ..accounts import Accounts, Identity, InvalidCredentials
from ..errors import Refused
from ..help import local_links
from ..indexes import IndexInfo
from ..reason import set_reason, standard_phrase
from ..upload2 import FileState, SessionRefused, SessionState
from ..upload2.access import Presented
from ..upload2.files import MECHANISM
from .common import BadJSONBody, public_base, read_json_object, services, token_from_headers

MEDIA_TYPE = "application/vnd.pypi.upload.v2+json"
PROBLEM = "application/problem+json"
META = {"api-version": "2.0"}
JSON_TYPES = (MEDIA_TYPE, "application/json")
T = TypeVar("T")


class Problem(Exception):
    """An answer of this API refusing a request (raised by the parsing steps of handlers)."""

    def __init__(
        self, status: int, detail: str, *, source: str | None = None, headers: Any = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.source, self.headers = status, detail, source, headers


def problem(request: Request, exc: Problem) -> Response:
    detail = local_links(exc.detail, public_base(request))
    set_reason(detail)
    body = {
        "type": "about:blank",
        "status": exc.status,
        "title": standard_phrase(exc.status),
        "detail": detail,
        "meta": META,
        "errors": [{"source": exc.source, "message": detail}],
    }
    return JSONResponse(body, exc.status, headers=exc.headers, media_type=PROBLEM)


def answer(body: dict[str, Any], status: int = 200, headers: Any = None) -> Response:
    return JSONResponse({"meta": META, **body}, status, headers=headers, media_type=MEDIA_TYPE)


# ------------------------------------------------------------------------------- URLs, bodies


def root_url(request: Request, index: str) -> str:
    return f"{public_base(request)}/{index}/upload/2.0/"


def session_url(request: Request, index: str, token: str) -> str:
    return f"{root_url(request, index)}sessions/{token}"


def file_url(request: Request, index: str, token: str, file_token: str) -> str:
    return f"{session_url(request, index, token)}/files/{file_token}"


def stage_url(request: Request, index: str, token: str) -> str:
    return f"{public_base(request)}/{index}/+stage/{token}/simple/"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def session_body(request: Request, state: SessionState) -> dict[str, Any]:
    url = session_url(request, state.index, state.token)
    return {
        "links": {
            "session": url,
            "publish": f"{url}/publish",
            "extend": f"{url}/extend",
            "upload": f"{url}/upload",
            "stage": stage_url(request, state.index, state.token),
        },
        "mechanisms": [MECHANISM],
        "session-token": state.token,
        "expires-at": _when(state.expires),
        "status": state.status,
        "files": {
            f.filename: {
                "status": f.status,
                "link": file_url(request, state.index, state.token, f.token),
                "notices": f.notices,
            }
            for f in state.files
        },
        "notices": state.notices,
    }


def file_body(request: Request, index: str, token: str, state: FileState) -> dict[str, Any]:
    url = file_url(request, index, token, state.token)
    return {
        "links": {
            "file-upload-session": url,
            "complete": f"{url}/complete",
            "extend": f"{url}/extend",
        },
        "status": state.status,
        "expires-at": _when(state.expires),
        "mechanism": {"identifier": MECHANISM, "file_url": f"{url}/bytes"},
        "notices": state.notices,
    }


# ------------------------------------------------------------------------------- parsing


def _index(request: Request) -> IndexInfo:
    index = services(request).indexes.get(request.path_params["index"])
    if index is None:
        names = ", ".join(sorted(services(request).indexes)) or "none"
        raise Problem(404, f"No index named {request.path_params['index']!r}; indexes: {names}.")
    return index


UNAUTHORIZED = {"WWW-Authenticate": 'Basic realm="keyless"'}


@dataclass(frozen=True)
class Caller:
    """A request's API token, authenticated by the use case inside its own transaction.

    Authenticating first, in a transaction of its own, cost every request one more
    transaction (and, before, one more hop to a thread). Answers stay as they were:
    credentials are judged before anything else (the use case's first statement; see
    `refused_first` for the requests refused before it runs), 401 for missing or unknown
    ones, 403 for a token that may no longer act.
    """

    accounts: Accounts
    token: str

    def identity(self) -> Identity:
        with _credentials_refused():
            return self.accounts.authenticate(self.token)

    async def act(self, use_case: Callable[..., T], index: IndexInfo, *args: Any) -> T:
        """`use_case(index, credentials, *args)` on a worker thread."""
        presented = Presented(self.token)

        def run() -> T:
            with _credentials_refused():
                return use_case(index, presented, *args)

        return await run_in_threadpool(run)

    async def refused_first(self, refusal: Problem) -> Problem:
        """`refusal` of the request, unless its credentials are refused: that answer comes
        first, as when they were checked before anything else (an extra hop, on errors only)."""
        await run_in_threadpool(self.identity)
        return refusal


@contextmanager
def _credentials_refused() -> Iterator[None]:
    """InvalidCredentials as this API answers them: 401 unknown, 403 may no longer act."""
    try:
        yield
    except InvalidCredentials as exc:
        if exc.unknown:
            raise Problem(401, exc.reason, headers=UNAUTHORIZED) from None
        raise Problem(403, exc.reason) from None


def _caller(request: Request) -> Caller:
    try:
        token = token_from_headers(request)
    except InvalidCredentials as exc:
        raise Problem(401, exc.reason, headers=UNAUTHORIZED) from None
    return Caller(services(request).accounts, token)


async def _body(request: Request, caller: Caller) -> dict[str, Any]:
    """The JSON request body, of one of this API's media types, for API version 2.0."""
    try:
        return await _json_body(request)
    except Problem as refusal:
        raise await caller.refused_first(refusal) from None


async def _json_body(request: Request) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise Problem(
            415,
            f"Send the request body as {MEDIA_TYPE} (or application/json), not "
            f"{media or 'no Content-Type'}.",
        )
    try:
        body = await read_json_object(request, "a JSON object")
    except BadJSONBody as exc:
        raise Problem(400, exc.message) from None
    meta = body.get("meta")
    if not isinstance(meta, dict) or meta.get("api-version") != "2.0":
        raise Problem(
            400, 'The body\'s "meta" must say {"api-version": "2.0"}.', source="meta.api-version"
        )
    return body


Handler = Callable[[Request, IndexInfo, Caller], Awaitable[Response]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The steps every endpoint shares: the index, the credentials, the refusals' answers."""

    async def run(request: Request) -> Response:
        try:
            index = _index(request)
            return await handler(request, index, _caller(request))
        except Problem as exc:
            return problem(request, exc)
        except SessionRefused as exc:
            headers = None
            if exc.location is not None:
                location = session_url(request, request.path_params["index"], exc.location)
                headers = {"Location": location}
            return problem(
                request, Problem(exc.status, exc.message, source=exc.source, headers=headers)
            )
        except Refused as exc:
            return problem(request, Problem(exc.status, exc.message))
        except StorageFull as exc:
            return problem(request, Problem(507, exc.message))

    return run


def _tokens(request: Request) -> tuple[str, str]:
    return request.path_params["session"], request.path_params.get("file", "")


# ------------------------------------------------------------------------------- sessions


@endpoint
async def create(request: Request, index: IndexInfo, caller: Caller) -> Response:
    body = await _body(request, caller)
    state = await caller.act(
        services(request).upload_sessions.create, index, body.get("name"), body.get("version")
    )
    url = session_url(request, index.name, state.token)
    return answer(session_body(request, state), 201, {"Location": url})


@endpoint
async def session_status(request: Request, index: IndexInfo, caller: Caller) -> Response:
    token, _ = _tokens(request)
    state = await caller.act(services(request).upload_sessions.status, index, token)
    return answer(session_body(request, state))


@endpoint
async def cancel(request: Request, index: IndexInfo, caller: Caller) -> Response:
    token, _ = _tokens(request)
    await caller.act(services(request).upload_sessions.cancel, index, token)
    return Response(status_code=204)


MAX_EXTEND = 366 * 86400


async def _extend(request: Request, index: IndexInfo, caller: Caller) -> Response:
    """The session's extend; a file's `extend` link extends its session (files expire with
    it)."""
    token, _ = _tokens(request)
    seconds = (await _body(request, caller)).get("extend-for")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_EXTEND:
        raise await caller.refused_first(
            Problem(400, '"extend-for" must be a number of seconds, above 0.', source="extend-for")
        )
    state = await caller.act(services(request).upload_sessions.extend, index, token, seconds)
    return answer(session_body(request, state))


extend = endpoint(_extend)
file_extend = endpoint(_extend)


@endpoint
async def publish(request: Request, index: IndexInfo, caller: Caller) -> Response:
    token, _ = _tokens(request)
    await _body(request, caller)
    state = await caller.act(services(request).upload_sessions.publish, index, token)
    url = session_url(request, index.name, token)
    return answer(session_body(request, state), 201, {"Location": url})


# ------------------------------------------------------------------------------- files


@endpoint
async def create_file(request: Request, index: IndexInfo, caller: Caller) -> Response:
    token, _ = _tokens(request)
    body = await _body(request, caller)
    state = await caller.act(
        services(request).upload_files.create,
        index,
        token,
        body.get("filename"),
        body.get("size"),
        body.get("hashes"),
        body.get("mechanism"),
    )
    url = file_url(request, index.name, token, state.token)
    headers = {"Location": url, "Retry-After": "1"}
    return answer(file_body(request, index.name, token, state), 202, headers)


@endpoint
async def file_status(request: Request, index: IndexInfo, caller: Caller) -> Response:
    token, file_token = _tokens(request)
    state = await caller.act(services(request).upload_files.status, index, token, file_token)
    return answer(file_body(request, index.name, token, state))


@endpoint
async def delete_file(request: Request, index: IndexInfo, caller: Caller) -> Response:
    token, file_token = _tokens(request)
    await caller.act(services(request).upload_files.delete, index, token, file_token)
    return Response(status_code=204)


@endpoint
async def complete(request: Request, index: IndexInfo, caller: Caller) -> Response:
    token, file_token = _tokens(request)
    await _body(request, caller)
    state = await caller.act(services(request).upload_files.complete, index, token, file_token)
    url = file_url(request, index.name, token, file_token)
    return answer(file_body(request, index.name, token, state), 201, {"Location": url})


@endpoint
async def file_bytes(request: Request, index: IndexInfo, caller: Caller) -> Response:
    """`http-post-bytes`: the body is the file, streamed to the blob store as it arrives."""
    token, file_token = _tokens(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/octet-stream":
        raise await caller.refused_first(
            Problem(415, "Send the file's bytes as application/octet-stream.")
        )
    svc = services(request)
    expected = await caller.act(svc.upload_files.expect_bytes, index, token, file_token)
    too_many = Problem(
        400,
        f"More bytes than the file's declared size ({expected.size}); create the file again "
        "with its real size.",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > expected.size:
        raise too_many  # answered before the body is read
    writer = svc.blobs.new_writer(expected.sha256)
    svc.heap.upload_started()  # the memory a burst of bodies took goes back (index/heap.py)
    try:
        try:
            async for chunk in request.stream():
                if writer.size + len(chunk) > expected.size:
                    raise too_many
                writer.write(chunk)
                await writer.drain()
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening
        # Finishing the write (its last bytes, the digests) and recording it: one trip to a
        # worker thread, not two.
        await run_in_threadpool(
            lambda: svc.upload_files.receive(
                index, token, file_token, expected, writer, writer.finish()
            )
        )
    finally:
        writer.discard()
        svc.heap.upload_ended()
    return Response(status_code=204)


ROOT = "/{index}/upload/2.0"
SESSION = ROOT + "/sessions/{session}"
FILE = SESSION + "/files/{file}"

routes = [
    Route(ROOT + "/", create, methods=["POST"]),
    Route(ROOT, create, methods=["POST"]),
    Route(SESSION, session_status, methods=["GET"]),
    Route(SESSION, cancel, methods=["DELETE"]),
    Route(SESSION + "/extend", extend, methods=["POST"]),
    Route(SESSION + "/publish", publish, methods=["POST"]),
    Route(SESSION + "/upload", create_file, methods=["POST"]),
    Route(FILE, file_status, methods=["GET"]),
    Route(FILE, delete_file, methods=["DELETE"]),
    Route(FILE + "/bytes", file_bytes, methods=["POST"]),
    Route(FILE + "/complete", complete, methods=["POST"]),
    Route(FILE + "/extend", file_extend, methods=["POST"]),
]
