"""`create_app(settings)`: assembles the index server as an ASGI application."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyless.config import Settings
from keyless.oidc.keys import JWKSCache
from keyless.store.blobs import BlobStore
from keyless.store.db import open_database

from .indexes import ensure_indexes, load_indexes
from .keystore import DatabaseKeyStore, fetch_json
from .maintenance import collect_garbage
from .pages import SimplePages
from .projects import ProjectAdmin
from .routes import files, jsonapi, manage, oidc, promote, publishing, simple, upload
from .routes.common import Services, public_base, services
from .trusted import TrustedPublishing
from .uploads import Uploads
from .web import routes as web_routes

access_log = logging.getLogger("keyless.access")


class AccessLog:
    """One line per request: client, method, path, status, bytes, milliseconds.

    Only the path is logged — never headers (credentials live in Authorization) and never the
    query string — so no token or password can reach the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0

        async def record(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s "%s %s" %s %d %.1fms',
                client[0],
                scope["method"],
                scope["path"],
                status or 500,
                sent,
                (time.perf_counter() - started) * 1000,
            )


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "indexes": sorted(services(request).indexes)})


async def home(request: Request) -> Response:
    base = public_base(request)
    return JSONResponse(
        {
            "service": "keyless",
            "indexes": {
                name: {
                    "simple": f"{base}/{name}/simple/",
                    "upload": f"{base}/{name}/legacy/",
                    "profile": info.profile,
                }
                for name, info in services(request).indexes.items()
            },
        }
    )


def create_app(settings: Settings) -> Starlette:
    """Build the server for these settings: opens the store, creates missing indexes."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_database(settings.database)
    ensure_indexes(engine, settings.indexes, update_existing=True)
    blobs = BlobStore(settings.blob_dir)
    collect_garbage(engine, blobs)
    url_prefix = urlparse(settings.public_url).path.rstrip("/") if settings.public_url else ""
    pages = SimplePages(engine, url_prefix)
    indexes = load_indexes(engine)
    state = Services(
        settings=settings,
        engine=engine,
        blobs=blobs,
        pages=pages,
        uploads=Uploads(engine=engine, blobs=blobs, on_change=pages.invalidate),
        projects=ProjectAdmin(engine=engine, on_change=pages.invalidate),
        trusted=TrustedPublishing(
            engine=engine,
            keys=JWKSCache(fetch_json, DatabaseKeyStore(engine)),
            settings=settings.trusted_publishing,
            on_change=pages.invalidate,
        ),
        indexes=indexes,
        pytp_keys=oidc.pytp_keys(list(indexes), url_prefix),
    )
    routes = [
        Route("/_/health", health, methods=["GET", "HEAD"]),
        *oidc.routes,
        *files.routes,
        *simple.routes,
        *jsonapi.routes,
        *upload.routes,
        *manage.routes,
        *publishing.routes,
        *promote.routes,
        # The web UI last: its `/{index}/…` pages never shadow an API path. `/` stays JSON for
        # API clients and becomes the HTML landing page for browsers.
        *web_routes(json_home=home),
    ]
    app = Starlette(routes=routes)
    app.state.services = state
    app.add_middleware(AccessLog)
    return app
