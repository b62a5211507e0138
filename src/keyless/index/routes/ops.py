"""For operators: `/_/health` (database and blob store checked), `/_/metrics` (Prometheus), and
the middleware that counts requests for the latter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyless.store.errors import StorageFull, unavailable_backend, unavailable_detail

from ..metrics import UPLOAD, Metrics, route_class
from .common import Services, error, services

# How long /_/health waits for each check. A locked database waits for its busy timeout (10 s)
# and a hung disk for ever; a load balancer's probe must get its answer well before either.
HEALTH_TIMEOUT = 3.0

health_log = logging.getLogger("keyless.health")
outage_log = logging.getLogger("keyless.outage")

# How soon a client may try again when the database or the blob store is not answering.
RETRY_AFTER = "5"

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _check_database(svc: Services) -> str:
    svc.catalog.probe()
    return "ok"


# No blob has this sha256 (it would be a preimage of all zeros): asking for it is a round trip.
_NO_BLOB = "0" * 64


def _check_blobs(svc: Services) -> str:
    # What an upload does first: a temp file written and fsynced, then dropped (in the store's
    # folder, or the spool of an S3 store); and what a download does first: ask the store for
    # a blob (a stat, or a HEAD request the bucket must answer).
    writer = svc.blobs.new_writer()
    try:
        writer.write(b"keyless health probe\n")
        writer.finish()
        svc.blobs.exists(_NO_BLOB)
    except StorageFull:
        # Still healthy: downloads and pages are served, and only uploads are refused (507,
        # saying why). A load balancer taking every server out of rotation would stop those.
        return "full: uploads are refused (507) until disk space is freed; reads are served"
    finally:
        writer.discard()
    return "ok"


CHECKS: dict[str, Callable[[Services], str]] = {
    "database": _check_database,
    "blob store": _check_blobs,
}


async def _run_check(svc: Services, name: str) -> tuple[bool, str]:
    """(passed, what the check says) within HEALTH_TIMEOUT.

    A check still running from an earlier request (stuck on a lock or a disk) is waited for
    again rather than started anew, so a hung store cannot pile up threads.
    """
    running = svc.health_checks.get(name)
    if running is None or running.done():
        running = asyncio.get_running_loop().run_in_executor(None, CHECKS[name], svc)
        svc.health_checks[name] = running
    try:
        return True, await asyncio.wait_for(asyncio.shield(running), HEALTH_TIMEOUT)
    except TimeoutError:
        said = f"no answer within {HEALTH_TIMEOUT:g} s"
        health_log.error("health check: %s: %s", name, said)
    except Exception as exc:  # the failure itself is the answer; no traceback
        # The whole error (paths, the statement) for the administrator's log; the public
        # answer only says what kind of failure it was.
        health_log.error("health check: %s failed: %s: %s", name, type(exc).__name__, exc)
        said = _public_reason(exc)
    return False, said


def _public_reason(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error
    if isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"  # without the file's path
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def health(request: Request) -> Response:
    """200 with what was checked, or 503 naming the check that failed and why."""
    svc = services(request)
    names = list(CHECKS)
    results = await asyncio.gather(*(_run_check(svc, name) for name in names))
    outcomes = dict(zip(names, results, strict=True))
    checked = {name: said if ok else "failed: " + said for name, (ok, said) in outcomes.items()}
    failed = [f"{name} check failed: {said}" for name, (ok, said) in outcomes.items() if not ok]
    body = {"status": "ok", "checks": checked, "indexes": sorted(svc.indexes)}
    if failed:
        body["status"] = "unavailable"
        body["message"] = "; ".join(failed)
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    svc = services(request)
    text_format = svc.metrics.exposition(svc.pages.hits, svc.pages.misses)
    return Response(text_format, media_type=PROMETHEUS_TYPE)


class CountRequests:
    """Counts every request that reaches the router by route class and status (and the body
    bytes of uploads). Cached simple pages, answered before this, are counted by
    `IndexApp` itself."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_class(scope["path"])
        status = 0
        counters = self.metrics

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counters.upload_bytes += len(message.get("body", b""))
            return message

        try:
            await self.app(scope, counting_receive if route == UPLOAD else receive, record)
        finally:
            counters.count_request(route, status)


routes = [
    Route("/_/health", health, methods=["GET", "HEAD"]),
    Route("/_/metrics", metrics, methods=["GET"]),
]


class AnswerOutages:
    """A request that fails because the database or the blob store is not answering gets a
    503 naming which (and Retry-After), not a 500 with a traceback; one line goes to the
    `keyless.outage` log. Any other error passes on as before.

    Nothing needs resetting when the backend is back: the next request opens what it needs
    anew, so the server recovers by itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            which = unavailable_backend(exc)
            if which is None or started:
                raise
            outage_log.warning(
                "%s %s: the %s is not answering: %s",
                scope["method"],
                scope["path"],
                which,
                unavailable_detail(exc),
            )
            response = error(Request(scope), 503, outage_message(which))
            response.headers["Retry-After"] = RETRY_AFTER
            await response(scope, receive, send)


def outage_message(which: str) -> str:
    return (
        f"The index's {which} is not answering, so this request could not be served. Send it "
        "again in a few seconds. If this goes on, the index's administrator must check the "
        f"{which} (the server's /_/health says more)."
    )
