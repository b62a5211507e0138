"""Rendering pages: the Jinja2 environment, security headers, error pages, redirects.

Every UI response passes through `finish`, which adds the security headers; the package APIs
(simple, JSON, files, upload) never do, so their hot path is untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..routes.common import public_base, services
from ..sessions import Viewer
from . import views

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"

SECURITY_HEADERS = {
    # No inline script or style anywhere: an injected <script> or style attribute is inert.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",  # for browsers that predate frame-ancestors
    # Links out (a commit on GitHub) must not carry our paths (project names, settings pages).
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    # Pages differ per viewer and may show a token once; no cache may keep them.
    "cache-control": "no-store",
}


class WebError(Exception):
    """A request the UI refuses with a 4xx page saying why."""

    def __init__(self, status: int, message: str, title: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


@functools.cache
def environment() -> Environment:
    """The template environment (built once; templates ship inside the package)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,  # a typo in a template fails the tests, not silently blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=views.human_size,
        when=views.when,
        iso=views.iso,
        short=views.short_sha,
        safe_url=views.safe_url,
        action_label=views.action_label,
        unix_when=views.unix_when,
    )
    return env


def viewer_of(request: Request) -> Viewer | None:
    return request.state.viewer  # type: ignore[no-any-return]


def root(request: Request) -> str:
    """The path prefix the site lives under (behind a proxy), "" at the host's root."""
    return services(request).pages.url_prefix


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    viewer = viewer_of(request)
    html = (
        environment()
        .get_template(template)
        .render(
            viewer=viewer,
            root=root(request),
            base=public_base(request),
            csrf_token=viewer.csrf_token if viewer else request.state.anonymous_csrf,
            here=request.url.path,
            indexes=sorted(services(request).indexes),
            # What the change this page was redirected from did (`redirect(..., done=key)`).
            done=views.DONE_MESSAGES.get(request.query_params.get("done", ""), ""),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str, title: str = "") -> Response:
    return page(request, "error.html", status=status, code=status, title=title, message=message)


def redirect(request: Request, path: str, **query: str) -> Response:
    """303 to a page of this site (Post/Redirect/Get: a reload never repeats the POST)."""
    location = root(request) + path
    if query:
        location += "?" + urlencode(query)
    return RedirectResponse(location, status_code=303)


def finish(response: Response, extra: Mapping[str, str] | None = None) -> Response:
    for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
        response.headers[name] = value
    return response
