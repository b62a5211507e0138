"""Pieces every route module uses: the per-app services, error responses, credentials."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from keyless.config import Settings
from keyless.store.blobs import BlobStore
from keyless.store.errors import StorageFull

from ..accounts import Accounts, InvalidCredentials
from ..catalog import Catalog
from ..errors import Refused
from ..heap import HeapTrimmer
from ..help import help_url, local_links
from ..indexes import IndexAdmin, IndexInfo
from ..maintenance import GarbageCollector
from ..metrics import Metrics
from ..mirror import Mirror
from ..pages import SimplePages
from ..projects import ProjectAdmin
from ..promote import Promotion
from ..publishers import Publishers
from ..reason import set_reason, standard_phrase
from ..rendering import Descriptions
from ..sessions import Sessions
from ..static import StaticWriter
from ..trusted import TrustedPublishing
from ..upload2 import SessionFiles, UploadSessions
from ..uploads import Uploads


@dataclass
class Services:
    """Everything the handlers need, built once by create_app and kept on `app.state`.

    The use cases, not the database: each owns the engine it was built with, so a handler
    cannot read or write around them (ARCHITECTURE.md, "Inside the index").
    """

    settings: Settings
    blobs: BlobStore
    pages: SimplePages
    catalog: Catalog  # the read models
    accounts: Accounts
    sessions: Sessions  # the web UI's sign-ins
    uploads: Uploads
    upload_sessions: UploadSessions  # PEP 694 publishing sessions
    upload_files: SessionFiles  # and their files
    projects: ProjectAdmin
    promotion: Promotion
    publishers: Publishers
    trusted: TrustedPublishing
    indexes: dict[str, IndexInfo]  # by name, as index_admin last loaded them
    index_admin: IndexAdmin
    pytp_keys: dict[str, str]  # PEP 807 discovery key -> index name
    descriptions: Descriptions  # renders READMEs in worker processes (uploads and pages)
    garbage: GarbageCollector  # at start and every `gc-interval` seconds (app.py)
    mirror: Mirror  # the indexes' upstreams (`upstream` in an index's settings)
    # Keeps the static copy of the read path current (`[static] folder`); None: no copy.
    static: StaticWriter | None = None
    metrics: Metrics = field(default_factory=Metrics)  # this process's counters, /_/metrics
    heap: HeapTrimmer = field(default_factory=HeapTrimmer)  # memory back to the OS after uploads
    # /_/health's checks still running, by name (routes/ops.py)
    health_checks: dict[str, asyncio.Future[str]] = field(default_factory=dict)


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def error(request: Request, status: int, message: str) -> Response:
    """A 4xx with a message saying what to fix, as JSON when the client prefers it.

    The JSON shape is PyPI's (`code` is what uv prints); others get the message as text.
    Links to PyPI's help pages become links to this server's own (help.py).
    """
    message = local_links(message, public_base(request))
    phrase = standard_phrase(status)
    set_reason(message)
    if "json" in request.headers.get("accept", ""):
        return JSONResponse(
            {"message": message, "code": f"{status} {message}", "title": phrase},
            status_code=status,
        )
    return PlainTextResponse(f"{status} {message}\n", status_code=status)


def storage_full(request: Request, exc: StorageFull) -> Response:
    """507 with the cause, for a write the full disk refused (it was undone).

    507, not 500 or 503: clients treat those as transient and may send the whole upload
    again, which cannot succeed until an administrator frees space. The administrator learns
    it from the server's log, without a traceback.
    """
    logging.getLogger("keyless.storage").error(
        "%s %s refused, the disk is full: %s", request.method, request.url.path, exc.cause
    )
    return error(request, 507, exc.message)


MAX_SMALL_BODY = 64 * 1024  # a JSON request body (an OIDC token, an action's arguments)


async def read_small_body(request: Request, limit: int = MAX_SMALL_BODY) -> bytes | None:
    """The whole body, or None when it is larger than `limit`.

    Refuses by the declared length, and stops reading past the limit: `request.body()` would
    first buffer whatever a client sends, however large.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            return None
    return bytes(received)


class BadJSONBody(Refused):
    """A request body that is not the JSON object an endpoint takes; `.message` says why."""


def _lone_surrogate(document: Any) -> str | None:
    """The first lone surrogate in the document's strings, if any.

    JSON lets `"\\ud800"` escape half a UTF-16 pair, which names no character; Python decodes
    it into a str that UTF-8 cannot encode, so the database, the hashes and the JWT library
    would each fail on it later with a traceback. Not recursive: the document may be nested
    as deep as json.loads allows.
    """
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and not item.isascii():
            lone = next((c for c in item if "\ud800" <= c <= "\udfff"), None)
            if lone is not None:
                return lone
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


async def read_json_object(
    request: Request, shape: str, *, allow_empty: bool = False
) -> dict[str, Any]:
    """The body as a JSON object (at most MAX_SMALL_BODY bytes), whatever the Content-Type.

    `shape` completes "The request body must be ..." in the messages. Raises BadJSONBody for
    every way a body can be unusable — including JSON nested so deeply that the parser runs
    out of recursion, and a client that hangs up half-way — so no such body reaches a handler
    as an exception it does not expect (each was a 500 and a traceback in the log).
    """
    try:
        raw = await read_small_body(request)
    except ClientDisconnect:
        # Nobody will read the answer; it only keeps the disconnect out of the error log.
        raise BadJSONBody("The client closed the connection before the body ended.") from None
    if raw is None:
        raise BadJSONBody(f"The request body is too large (over {MAX_SMALL_BODY} bytes).")
    if allow_empty and not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except RecursionError:
        raise BadJSONBody(
            f"The request body's JSON is nested too deeply; it must be {shape}."
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise BadJSONBody(f"The request body must be {shape}.") from None
    if not isinstance(document, dict):
        raise BadJSONBody(f"The request body must be {shape}.")
    lone = _lone_surrogate(document)
    if lone is not None:
        raise BadJSONBody(
            f"The request body's JSON has a lone surrogate ('\\u{ord(lone):04x}'): an escape "
            "that names no character. Send text as UTF-8."
        )
    return document


def public_base(request: Request) -> str:
    """The URL clients use to reach this server (no trailing slash).

    Behind a proxy the address we were reached at is not the one clients use, so a configured
    public URL wins.
    """
    public = services(request).settings.public_url
    return public.rstrip("/") if public else str(request.base_url).rstrip("/")


def index_or_none(request: Request) -> IndexInfo | None:
    return services(request).indexes.get(request.path_params["index"])


def unknown_index(request: Request) -> Response:
    names = ", ".join(sorted(services(request).indexes)) or "none"
    return error(
        request, 404, f"No index named {request.path_params['index']!r} here; indexes: {names}."
    )


NO_CREDENTIALS = "Invalid or non-existent authentication information."


def token_from_headers(request: Request) -> str:
    """The API token a request carries: Basic `__token__:<token>`, or `token`/`bearer` schemes.

    Raises InvalidCredentials saying what is wrong with what was sent.
    """
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme in ("token", "bearer") and value:
        return value
    if scheme == "basic" and value:
        try:
            username, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidCredentials(
                NO_CREDENTIALS + " The Basic credentials are not valid base64."
            ) from None
        if username != "__token__":
            # ASCII only: the text is also the reason phrase, where other characters are lost.
            raise InvalidCredentials(
                NO_CREDENTIALS + " Uploads need an API token, not a password: use '__token__' "
                "as the username and an API token of this index (it starts with 'keyless-') as "
                f"the password. See {help_url(public_base(request), 'api-tokens')} to make one."
            )
        return password
    raise InvalidCredentials(
        NO_CREDENTIALS + " Send an API token as Basic auth with username '__token__'."
    )
