"""A user's own pages: sign in/out, API tokens, pending publishers, their projects."""

from __future__ import annotations

from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from keyless.dists.errors import DistError
from keyless.dists.names import validate_project_name

from .. import accounts, publishers
from ..indexes import IndexInfo
from ..routes.common import services
from ..sessions import SESSION_LIFETIME, SignInError
from . import publisher_forms
from .base import (
    ANONYMOUS_CSRF_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    field,
    read_form,
    require_viewer,
    set_cookie,
    ui,
    whole_number,
)
from .render import WebError, page, redirect, viewer_of

EXPIRY_CHOICES = {"1": "1 day", "7": "7 days", "30": "30 days", "90": "90 days", "365": "1 year"}
EXPIRY_DEFAULT = "30"


def _next_path(raw: str) -> str:
    # Only a path on this site: "//evil.example" or "/\\evil.example" would leave it.
    if raw.startswith("/") and not raw.startswith(("//", "/\\")) and len(raw) < 500:
        return raw
    return "/"


# --- sign in / out ---------------------------------------------------------------------------


@ui
async def login_form(request: Request) -> Response:
    next_path = _next_path(request.query_params.get("next", "/"))
    if viewer_of(request) is not None:
        return redirect(request, next_path)
    return _login_page(request, next_path)


def _login_page(
    request: Request, next_path: str, message: str = "", username: str = "", status: int = 200
) -> Response:
    response = page(
        request,
        "login.html",
        status=status,
        next=next_path,
        message=message,
        username=username,
    )
    # The sign-in form's CSRF token is this cookie's value (there is no session yet).
    set_cookie(request, response, ANONYMOUS_CSRF_COOKIE, request.state.anonymous_csrf, 7200)
    return response


@ui
async def login(request: Request) -> Response:
    form = await read_form(request)
    next_path = _next_path(form.get("next", "/"))
    username = field(form, "username", 64)
    client = request.client.host if request.client else "-"
    try:
        session_id = await run_in_threadpool(
            services(request).sessions.sign_in, username, form.get("password", ""), client
        )
    except SignInError as exc:
        response = _login_page(request, next_path, exc.message, username, exc.status)
        if exc.retry_after:
            response.headers["retry-after"] = str(exc.retry_after)
        return response
    response = redirect(request, next_path)
    set_cookie(request, response, SESSION_COOKIE, session_id, int(SESSION_LIFETIME.total_seconds()))
    return response


@ui
async def logout(request: Request) -> Response:
    await read_form(request)
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if session_id:
        await run_in_threadpool(services(request).sessions.sign_out, session_id)
    response = redirect(request, "/account/login", done="signed-out")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


# --- API tokens ------------------------------------------------------------------------------


@ui
async def tokens(request: Request) -> Response:
    viewer = require_viewer(request)
    return await _tokens_page(request, viewer.username)


async def _tokens_page(
    request: Request,
    username: str,
    new_token: accounts.NewToken | None = None,
    problem: str = "",
    status: int = 200,
) -> Response:
    listed = await run_in_threadpool(services(request).accounts.list_tokens, username)
    return page(
        request,
        "tokens.html",
        status=status,
        tokens=listed,
        new_token=new_token,
        problem=problem,
        expiry_choices=EXPIRY_CHOICES,
        expiry_default=EXPIRY_DEFAULT,
    )


@ui
async def create_token(request: Request) -> Response:
    viewer = require_viewer(request)
    form = await read_form(request)
    index = form.get("index", "")
    if index not in services(request).indexes:
        return await _tokens_page(request, viewer.username, problem="Choose an index.", status=400)
    projects = field(form, "projects", 2000).replace(",", " ").split()
    if bad := [p for p in projects if not _is_project_name(p)]:
        problem = f"Not a project name: {', '.join(bad)}."
        return await _tokens_page(request, viewer.username, problem=problem, status=400)
    expiry = form.get("expires", EXPIRY_DEFAULT)
    if expiry not in (*EXPIRY_CHOICES, "never"):
        return await _tokens_page(request, viewer.username, problem="Choose an expiry.", status=400)
    created = await run_in_threadpool(
        lambda: services(request).accounts.create_token(
            viewer.username,
            index,
            projects=projects or None,
            expires_in=None if expiry == "never" else timedelta(days=int(expiry)),
            description=field(form, "description", 200),
        )
    )
    # Shown in this response only: the secret is not stored, and the page is not cached.
    return await _tokens_page(request, viewer.username, new_token=created)


def _is_project_name(name: str) -> bool:
    try:
        validate_project_name(name)
    except DistError:
        return False
    return True


@ui
async def revoke_token(request: Request) -> Response:
    viewer = require_viewer(request)
    await read_form(request)
    raw = request.path_params["token"]
    token_id = whole_number(raw)
    users = services(request).accounts
    owned = await run_in_threadpool(users.list_tokens, viewer.username)
    # Accounts.revoke_token takes any id: check it is one of this user's tokens first.
    if token_id is None or not any(t["id"] == token_id and not t["revoked"] for t in owned):
        raise WebError(404, f"You have no active API token #{raw}.")
    await run_in_threadpool(users.revoke_token, token_id)
    return redirect(request, "/account/tokens", done="revoked")


# --- pending publishers ----------------------------------------------------------------------


@ui
async def pending(request: Request) -> Response:
    require_viewer(request)
    kind = request.query_params.get("provider", "github")
    index = _default_index(request, request.query_params.get("index", ""))
    return await _pending_page(request, publisher_forms.build(request, index, kind), index.name)


def _default_index(request: Request, name: str) -> IndexInfo:
    indexes = services(request).indexes
    if name in indexes:
        return indexes[name]
    if not indexes:
        raise WebError(404, "This server has no index yet.")
    return indexes.get("prod") or next(iter(indexes.values()))


async def _pending_page(
    request: Request,
    form: publisher_forms.PublisherForm,
    index_name: str,
    project: str = "",
    status: int = 200,
) -> Response:
    viewer = require_viewer(request)
    listed = await run_in_threadpool(
        services(request).catalog.pending_publishers_of, viewer.user_id
    )
    return page(
        request,
        "pending.html",
        status=status,
        pending=listed,
        form=form,
        chosen_index=index_name,
        project_name=project,
        action="/account/publishing",
        max_pending=publishers.MAX_PENDING_PER_USER,
    )


@ui
async def add_pending(request: Request) -> Response:
    viewer = require_viewer(request)
    form = await read_form(request)
    svc = services(request)
    index = svc.indexes.get(form.get("index", ""))
    if index is None:
        raise WebError(400, "Choose an index for the new project.")
    project = field(form, "project", 200)
    shown = await publisher_forms.submit(
        request,
        index,
        form,
        lambda kind, values: svc.publishers.add_pending_publisher(
            index.id,
            project,
            kind,
            values,
            viewer.actor,
        ),
    )
    if shown is not None:
        built, status = shown
        return await _pending_page(request, built, index.name, project, status)
    return redirect(request, "/account/publishing", done="pending-added")


@ui
async def remove_pending(request: Request) -> Response:
    viewer = require_viewer(request)
    await read_form(request)
    raw = request.path_params["publisher"]
    publisher_id = whole_number(raw)
    svc = services(request)
    mine = await run_in_threadpool(svc.catalog.pending_publishers_of, viewer.user_id)
    entry = next((p for p in mine if p["id"] == publisher_id), None)
    if entry is None or entry["index"] not in svc.indexes:
        raise WebError(404, f"You have no pending publisher #{raw}.")
    await run_in_threadpool(
        svc.publishers.remove_publisher,
        svc.indexes[entry["index"]].id,
        entry["id"],
        viewer.actor,
    )
    return redirect(request, "/account/publishing", done="pending-removed")


@ui
async def snippet_preview(request: Request) -> Response:
    """The workflow snippet for the values typed so far (the form's script asks as you type)."""
    params = request.query_params
    index = _default_index(request, params.get("index", ""))
    kind = params.get("kind", "github")
    values = {
        spec.name: params.get(spec.name, "")[:500] for spec in publisher_forms.provider(kind).fields
    }
    text = publisher_forms.preview(request, index, kind, values).text
    return PlainTextResponse(text)


# --- the user's projects ---------------------------------------------------------------------


@ui
async def my_projects(request: Request) -> Response:
    viewer = require_viewer(request)
    listed = await run_in_threadpool(services(request).catalog.projects_of_user, viewer.user_id)
    return page(request, "my_projects.html", projects=listed)


routes = [
    Route("/account/login", login_form, methods=["GET", "HEAD"]),
    Route("/account/login", login, methods=["POST"]),
    Route("/account/logout", logout, methods=["POST"]),
    Route("/account/tokens", tokens, methods=["GET"]),
    Route("/account/tokens", create_token, methods=["POST"]),
    Route("/account/tokens/{token}/revoke", revoke_token, methods=["POST"]),
    Route("/account/publishing", pending, methods=["GET"]),
    Route("/account/publishing", add_pending, methods=["POST"]),
    Route("/account/publishing/preview", snippet_preview, methods=["GET"]),
    Route("/account/publishing/{publisher}/remove", remove_pending, methods=["POST"]),
    Route("/account/projects", my_projects, methods=["GET"]),
]
