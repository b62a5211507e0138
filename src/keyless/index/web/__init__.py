"""The web UI: server-rendered pages for people who would rather click than type.

`routes(json_home)` gives the UI's routes for `create_app` to add after the package APIs. The
UI owns `/` (for browsers), `/{index}/`, `/{index}/project/…`, `/account/…`, `/admin/…`,
`/help/`, `/favicon.ico` and `/static/…`; none of them overlaps an API path
(`/{index}/simple|legacy|pypi|api/…`, `/files/…`, `/_/…`, `/.well-known/…`). It also sends on
the links hatch and flit print after an upload (`/{index}/legacy/{name}/{version}/`,
`/project/{name}/`; client_links.py).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import account, admin, client_links, manage, public
from .base import Handler
from .render import STATIC


class _StaticHeaders:
    """nosniff (a stylesheet is only ever a stylesheet) and an hour of caching."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"cache-control", b"public, max-age=3600"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def routes(json_home: Handler) -> list[BaseRoute]:
    """The UI's routes; `json_home` still answers `/` for clients that do not ask for HTML."""
    return [
        Route("/", public.landing_endpoint(json_home), methods=["GET", "HEAD"]),
        Mount("/static", app=_StaticHeaders(StaticFiles(directory=STATIC)), name="static"),
        *account.routes,
        *admin.routes,
        *manage.routes,
        *public.routes,
        *client_links.routes,
    ]
