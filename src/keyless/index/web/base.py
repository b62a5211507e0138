"""What every UI handler shares: the `ui` wrapper, cookies, bounded forms with CSRF checks.

A handler is parse -> use case -> render; the wrapper loads the viewer, turns refusals into
4xx pages that say why, and adds the security headers.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from keyless.config import ConfigError

from ..accounts import AccountError
from ..indexes import IndexInfo
from ..projects import ProjectError
from ..routes.common import services
from ..sessions import Viewer, new_secret, same_secret
from .render import WebError, error_page, finish, redirect, root, viewer_of

SESSION_COOKIE = "keyless_session"
# Before sign-in there is no session to hold a CSRF token, so the sign-in form uses a
# double-submit cookie: the form must echo this cookie's value.
ANONYMOUS_CSRF_COOKIE = "keyless_csrf"
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100

Handler = Callable[[Request], Awaitable[Response]]
Form = dict[str, str]


class SignInRequired(Exception):
    """The page needs a signed-in user."""


def ui(handler: Handler) -> Handler:
    """Wrap a UI handler: viewer, error pages for refusals, security headers."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        request.state.viewer = (
            await run_in_threadpool(services(request).sessions.load_viewer, session_id)
            if session_id
            else None
        )
        request.state.anonymous_csrf = request.cookies.get(ANONYMOUS_CSRF_COOKIE) or new_secret()
        try:
            response = await handler(request)
        except SignInRequired:
            response = _sign_in_first(request)
        except WebError as exc:
            response = error_page(request, exc.status, exc.message, exc.title)
        except ProjectError as exc:
            response = error_page(request, exc.status, exc.message)
        except (AccountError, ConfigError) as exc:
            response = error_page(request, 400, str(exc))
        return finish(response)

    return endpoint


def _sign_in_first(request: Request) -> Response:
    if request.method in ("GET", "HEAD"):
        return redirect(request, "/account/login", next=request.url.path)
    return error_page(
        request, 403, "Sign in first: your session has ended or you are not signed in.", "Sign in"
    )


def require_viewer(request: Request) -> Viewer:
    viewer = viewer_of(request)
    if viewer is None:
        raise SignInRequired
    return viewer


def index_of(request: Request) -> IndexInfo:
    name = request.path_params["index"]
    index = services(request).indexes.get(name)
    if index is None:
        raise WebError(404, f"There is no index named {name!r} on this server.", "Not found")
    return index


def is_secure(request: Request) -> bool:
    """Whether browsers reach us over https (directly, or through a TLS proxy we were told of)."""
    public = services(request).settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=root(request) + "/",
        secure=is_secure(request),
        httponly=True,  # no script ever needs them
        samesite="lax",  # sent on top-level navigation only; forms also carry a CSRF token
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=root(request) + "/", secure=is_secure(request), httponly=True, samesite="lax"
    )


async def read_form(request: Request) -> Form:
    """The posted form (first value of each field), after the CSRF check.

    Raises WebError: 415 for another encoding, 413 when too large, 400 when malformed, 403
    without the right CSRF token.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise WebError(415, "Send the form as application/x-www-form-urlencoded.", "Bad form")
    declared = whole_number(request.headers.get("content-length", ""))
    if declared is not None and declared > MAX_FORM_BYTES:
        raise WebError(413, "The form is too large.", "Bad form")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise WebError(413, "The form is too large.", "Bad form")
    except ClientDisconnect:  # nobody reads the answer; it keeps a traceback out of the log
        raise WebError(400, "The connection closed before the form ended.", "Bad form") from None
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise WebError(400, "The form could not be read (bad encoding).", "Bad form") from None
    form: Form = {}
    for key, value in pairs:
        form.setdefault(key, value)
    viewer = viewer_of(request)
    expected = viewer.csrf_token if viewer else request.cookies.get(ANONYMOUS_CSRF_COOKIE, "")
    if not same_secret(form.get("csrf_token", ""), expected):
        raise WebError(
            403,
            "This form was refused: its security token (CSRF) is missing or out of date. "
            "Go back, reload the page and submit it again.",
            "Request refused",
        )
    return form


def field(form: Form, name: str, limit: int = 500) -> str:
    """A stripped text field; WebError 400 when it is longer than `limit`."""
    value = form.get(name, "").strip()
    if len(value) > limit:
        raise WebError(400, f"The field {name!r} is too long (at most {limit} characters).")
    return value


def whole_number(raw: str, max_digits: int = 18) -> int | None:
    """`raw` as an int when it is plain ASCII digits (an id, a page), else None.

    Not `str.isdigit` alone: it accepts '²' and other digits `int` refuses.
    """
    if raw.isascii() and raw.isdigit() and len(raw) <= max_digits:
        return int(raw)
    return None


def page_number(request: Request) -> int:
    number = whole_number(request.query_params.get("page", "1"), 5)
    return number if number else 1
