"""`create_app(settings)`: assembles the index server as an ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyless.config import Settings
from keyless.oidc.keys import JWKSCache
from keyless.store.backends import open_blob_store
from keyless.store.blobs import BlobStore
from keyless.store.changes import ChangeFeed, Changes
from keyless.store.db import open_database
from keyless.store.errors import StorageFull, UnstorableText

from .accounts import Accounts
from .catalog import Catalog
from .indexes import IndexAdmin
from .keystore import DatabaseKeyStore, fetch_json
from .maintenance import GarbageCollector
from .mirror import Mirror
from .pages import SimplePages, url_prefix_of
from .projects import ProjectAdmin
from .promote import Promotion
from .publishers import Publishers
from .rendering import Descriptions, RenderPool
from .routes import (
    client,
    files,
    jsonapi,
    manage,
    mirror,
    oidc,
    ops,
    promote,
    publishing,
    simple,
    stage,
    upload,
    upload2,
)
from .routes.common import Services, error, public_base, services, storage_full
from .sessions import Sessions
from .static import static_writer
from .trusted import TrustedPublishing
from .upload2 import SessionFiles, UploadSessions
from .uploads import Uploads
from .web import routes as web_routes

access_log = logging.getLogger("keyless.access")
gc_log = logging.getLogger("keyless.gc")


class IndexApp(Starlette):
    """Starlette, except that a simple page already in memory is answered before any layer.

    The simple API is the hot path: measured, taking such a request through Starlette's
    middleware and router cost more than half of the server's time per page, and through
    only the middleware a tenth. `simple.answer_cached` answers exactly the requests the
    router would give to the simple-page routes, with the bytes those routes would send;
    everything else goes through the whole stack.
    """

    access_lines: _AccessLines
    # The change serial this process last saw (see `catch_up`).
    changes: ChangeFeed
    # /_/metrics' count of the pages this answers, by status class: this path skips the
    # middleware that counts the rest, and a list slot is the cheapest counter there is.
    # Each is a simple-page request and a cache hit (Metrics.exposition adds them to both).
    cached_counts: list[int]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["app"] = self
            started = time.perf_counter()
            try:
                changed = self.changes.poll()
            except Exception:  # the database did not answer: nothing in memory is trusted
                self.state.services.pages.clear()  # (the serial seen stays: caught up later)
                changed = ()
            if changed is None or changed:
                catch_up(self.state.services, changed)
            try:
                answered = await simple.answer_cached(scope, send)
            except BaseException:
                self.access_lines.log(scope, 0, 0, started)  # logged as a 500, as on any route
                self.cached_counts[4] += 1
                raise
            if answered is not None:
                self.cached_counts[answered[0] // 100 - 1] += 1  # 200 or 304
                self.access_lines.log(scope, answered[0], answered[1], started)
                return
        await super().__call__(scope, receive, send)


def catch_up(state: Services, changed: Changes) -> None:
    """Drop what other server processes (or this one) changed from this process's caches.

    Called before a request is answered whenever the change serial moved, so every process
    answers a request made after a change with what it changed.
    """
    if changed is None:  # too far behind to tell what: everything
        state.pages.clear()
        _reload_indexes(state)
        return
    reload = False
    for change in changed:
        if change.project is None:
            state.pages.invalidate_index(change.index_id)
            reload = True
        else:
            state.pages.invalidate(change.index_id, change.project)
    if reload:
        _reload_indexes(state)


def _reload_indexes(state: Services) -> None:
    # In place: the routes hold these dicts through `state`, and a request may be iterating.
    fresh = state.index_admin.load_indexes()
    state.indexes.clear()
    state.indexes.update(fresh)
    state.pytp_keys.clear()
    state.pytp_keys.update(oidc.pytp_keys(list(fresh), state.pages.url_prefix))


class AccessLog:
    """One line per request: client, method, path, status, bytes, milliseconds.

    Only the path is logged — never headers (credentials live in Authorization) and never the
    query string — so no token or password can reach the log.
    """

    def __init__(self, app: ASGIApp, lines: _AccessLines) -> None:
        self.app = app
        self._lines = lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._lines.enabled:
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
            self._lines.log(scope, status, sent, started)


ACCESS_FORMAT = '%s "%s %s" %s %d %.1fms'


class _AccessLines:
    """Emits access-log lines, cheaply.

    Through `logging` as any record, except in the configuration `keyless serve` sets up — the
    records reach exactly one plain StreamHandler formatting "%(message)s" — where the lines
    are written to its stream together once per event-loop turn: the same bytes, one write
    and flush for many requests instead of a LogRecord, a lock and a flush each (measured: the
    per-record path cost about as much as answering a cached page).
    """

    def __init__(self, setting: bool) -> None:
        # The setting itself, not only `logger.disabled`: uvicorn's logging setup re-enables
        # every existing logger at start, which silently undid `access-log = false`.
        self._setting = setting
        self._pending: list[str] = []
        self._handler: logging.StreamHandler[Any] | None = None

    @property
    def enabled(self) -> bool:
        return self._setting and access_log.isEnabledFor(logging.INFO)

    def log(self, scope: Scope, status: int, sent: int, started: float) -> None:
        if not self.enabled:
            return
        client = scope.get("client") or ("-", 0)
        args = (
            client[0],
            scope["method"],
            scope["path"],
            status or 500,
            sent,
            (time.perf_counter() - started) * 1000,
        )
        if self._pending:
            self._pending.append(ACCESS_FORMAT % args)
            return
        handler = _plain_stream_handler(access_log)
        loop = _running_loop()
        if handler is None or loop is None:
            access_log.info(ACCESS_FORMAT, *args)
            return
        self._handler = handler
        self._pending.append(ACCESS_FORMAT % args)
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        lines, self._pending = self._pending, []
        handler, self._handler = self._handler, None
        if not lines or handler is None:
            return
        text = "\n".join(lines) + handler.terminator
        handler.acquire()
        try:
            handler.stream.write(text)
            handler.flush()
        except Exception:
            handler.handleError(logging.makeLogRecord({"msg": text, "name": access_log.name}))
        finally:
            handler.release()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _plain_stream_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The only handler an INFO record of `logger` would reach, if it is a plain
    StreamHandler with a "%(message)s" formatter and no filters anywhere; else None."""
    if logger.filters:
        return None
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(h for h in current.handlers if h.level <= logging.INFO)
        if not current.propagate:
            break
        current = current.parent
    if len(found) != 1:
        return None
    handler = found[0]
    formatter = handler.formatter
    if (
        type(handler) is not logging.StreamHandler
        or handler.filters
        or formatter is None
        or type(formatter) is not logging.Formatter
        or type(formatter._style) is not logging.PercentStyle
        or formatter._fmt != "%(message)s"
    ):
        return None
    return handler


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


async def _storage_full(request: Request, exc: Exception) -> Response:
    # Async, so the reason phrase `error` sets is seen by this task (not a worker thread's).
    assert isinstance(exc, StorageFull)  # registered for this class only
    return storage_full(request, exc)


async def _unstorable_text(request: Request, exc: Exception) -> Response:
    return error(request, 400, UnstorableText.message)


# Seconds a publish may stay `processing` before the periodic collection finishes it: a
# running publish takes a fraction of that (PEP 694 sessions, upload2/sessions.py).
STALE_PUBLISH = 60.0


async def collect_garbage_every(interval: float, state: Services) -> None:
    """Garbage collection every `interval` seconds, on a worker thread (it walks the store).

    Start-up collects too, but temp files of uploads cut off by a crash are only removed once
    stale, and a server that stays up would otherwise keep them until its next start.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            # Publishes a stopped worker left half-way, then sessions that expired (their
            # files' blobs are garbage from then on).
            await asyncio.to_thread(state.upload_sessions.resolve_processing, STALE_PUBLISH)
            await asyncio.to_thread(state.upload_sessions.cancel_expired)
            removed = await asyncio.to_thread(state.garbage.collect_garbage)
        except Exception:  # a full disk or a locked database now: try again next time
            gc_log.exception("garbage collection failed; trying again in %s s", interval)
            continue
        if removed:
            gc_log.info("garbage collection removed %d orphaned file(s)", removed)


def _lifespan(state: Services, render_pool: RenderPool) -> Any:
    """What runs beside the requests: the render workers and the periodic garbage collection."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        render_pool.start()  # before the first upload, which would otherwise wait for it
        if state.static is not None:
            state.static.start()
        interval = state.settings.gc_interval
        task = asyncio.create_task(collect_garbage_every(interval, state)) if interval else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            render_pool.close()  # no render worker outlives the server
            if state.static is not None:
                state.static.close()

    return lifespan


def _both(first: Callable[[int, str], None], second: Callable[[int, str], None]) -> Any:
    """One `on_change` that calls two: the page cache's, then the static tree's."""

    def on_change(index_id: int, project: str) -> None:
        first(index_id, project)
        second(index_id, project)

    return on_change


def create_app(settings: Settings, blobs: BlobStore | None = None) -> IndexApp:
    """Build the server for these settings: opens the store, creates missing indexes.

    `blobs` replaces the blob store the settings name (tests run the app on another backend).
    """
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # private when new
    engine = open_database(settings.database, upgrade=settings.database_auto_upgrade)
    index_admin = IndexAdmin(engine)
    index_admin.ensure_indexes(settings.indexes, update_existing=True)
    changes = ChangeFeed(engine)  # before anything is cached: what changes later is seen
    if blobs is None:
        blobs = open_blob_store(settings.storage, settings.blob_dir)
    garbage = GarbageCollector(engine, blobs)
    garbage.collect_garbage()
    url_prefix = url_prefix_of(settings.public_url)
    catalog = Catalog(engine)  # every read model's one home: the pages', the web UI's
    pages = SimplePages(catalog, url_prefix)
    indexes = index_admin.load_indexes()
    static = static_writer(settings, blobs, catalog, pages, index_admin, indexes)
    on_change = pages.invalidate if static is None else _both(pages.invalidate, static.changed)
    limits = settings.limits
    render_pool = RenderPool(limits.render_workers, limits.render_timeout, limits.render_memory)
    descriptions = Descriptions(render_pool, limits.max_description_size)
    accounts = Accounts(engine)
    upload_sessions = UploadSessions(
        engine=engine,
        blobs=blobs,
        on_change=on_change,
        lifetime=settings.upload_session_lifetime,
    )
    # A publish a stopped server left half-way is finished (or marked failed) before anyone
    # reads the project: a release is never half visible (upload2/sessions.py).
    upload_sessions.resolve_processing()
    state = Services(
        settings=settings,
        blobs=blobs,
        pages=pages,
        catalog=catalog,
        index_admin=index_admin,
        accounts=accounts,
        sessions=Sessions(engine, accounts),
        uploads=Uploads(engine=engine, blobs=blobs, on_change=on_change, descriptions=descriptions),
        upload_sessions=upload_sessions,
        upload_files=SessionFiles(engine=engine, blobs=blobs, descriptions=descriptions),
        projects=ProjectAdmin(engine=engine, on_change=on_change),
        promotion=Promotion(engine=engine, blobs=blobs, on_change=on_change),
        publishers=Publishers(engine, settings.trusted_publishing),
        trusted=TrustedPublishing(
            engine=engine,
            keys=JWKSCache(fetch_json, DatabaseKeyStore(engine)),
            settings=settings.trusted_publishing,
            on_change=on_change,
        ),
        indexes=indexes,
        pytp_keys=oidc.pytp_keys(list(indexes), url_prefix),
        descriptions=descriptions,
        static=static,
        garbage=garbage,
        mirror=Mirror(
            {i.name: i for i in settings.indexes}, catalog, blobs, engine, url_prefix, pages
        ),
    )

    routes = [
        *ops.routes,
        *oidc.routes,
        *client.routes,
        *files.routes,
        *mirror.routes,
        *simple.routes,
        *jsonapi.routes,
        *upload.routes,
        *upload2.routes,
        *stage.routes,
        *manage.routes,
        *publishing.routes,
        *promote.routes,
        # The web UI last: its `/{index}/…` pages never shadow an API path. `/` stays JSON for
        # API clients and becomes the HTML landing page for browsers.
        *web_routes(json_home=home),
    ]
    app = IndexApp(
        routes=routes,
        lifespan=_lifespan(state, render_pool),
        # Any other write refused by a full disk (a yank, a sign-in, a token) is a 507 too.
        exception_handlers={StorageFull: _storage_full, UnstorableText: _unstorable_text},
    )
    app.state.services = state
    app.access_lines = _AccessLines(settings.access_log)
    app.changes = changes
    app.cached_counts = state.metrics.cached_pages
    app.add_middleware(ops.AnswerOutages)  # inside the counter: its 503s are counted
    app.add_middleware(ops.CountRequests, metrics=state.metrics)
    app.add_middleware(AccessLog, lines=app.access_lines)
    return app
