"""Admin pages (users with `is_admin`): the server's indexes and users."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyless.config import PROFILES, ConfigError

from ..accounts import AccountError
from ..routes import oidc
from ..routes.common import services
from .base import field, read_form, require_viewer, ui
from .render import WebError, page, redirect


def _require_admin(request: Request) -> None:
    viewer = require_viewer(request)
    if not viewer.is_admin:
        raise WebError(403, "Only administrators may see this page.", "Administrators only")


@ui
async def index_list(request: Request) -> Response:
    _require_admin(request)
    return await _indexes_page(request)


async def _indexes_page(request: Request, problem: str = "", status: int = 200) -> Response:
    svc = services(request)
    counts = await run_in_threadpool(svc.catalog.index_counts)
    return page(
        request,
        "admin_indexes.html",
        status=status,
        all_indexes=list(svc.indexes.values()),
        counts=counts,
        profiles=PROFILES,
        problem=problem,
        settings=svc.settings,
    )


@ui
async def create_index(request: Request) -> Response:
    _require_admin(request)
    form = await read_form(request)
    svc = services(request)
    try:
        created = await run_in_threadpool(
            svc.index_admin.create_index, field(form, "name", 63), form.get("profile", "")
        )
    except (ConfigError, AccountError) as exc:
        return await _indexes_page(request, str(exc), status=400)
    # Serve it at once from this process (the settings file is only read at start; the index
    # lives in the database and is loaded again at the next start).
    svc.indexes[created.name] = created
    svc.pytp_keys.update(oidc.pytp_keys([created.name], svc.pages.url_prefix))
    if svc.static is not None:
        svc.static.index_added(created)  # its (empty) /simple/ page, in the static tree too
    return redirect(request, "/admin/indexes", done="index-added")


@ui
async def user_list(request: Request) -> Response:
    _require_admin(request)
    return await _users_page(request)


async def _users_page(
    request: Request, problem: str = "", username: str = "", status: int = 200
) -> Response:
    listed = await run_in_threadpool(services(request).catalog.users)
    return page(
        request,
        "admin_users.html",
        status=status,
        users=listed,
        problem=problem,
        username=username,
    )


@ui
async def create_user(request: Request) -> Response:
    _require_admin(request)
    form = await read_form(request)
    username = field(form, "username", 64)
    try:
        await run_in_threadpool(
            lambda: services(request).accounts.create_user(
                username,
                form.get("password", ""),
                is_admin=form.get("is_admin") == "on",
            )
        )
    except AccountError as exc:
        return await _users_page(request, str(exc), username, status=400)
    return redirect(request, "/admin/users", done="user-added")


routes = [
    Route("/admin/indexes", index_list, methods=["GET"]),
    Route("/admin/indexes", create_index, methods=["POST"]),
    Route("/admin/users", user_list, methods=["GET"]),
    Route("/admin/users", create_user, methods=["POST"]),
]
