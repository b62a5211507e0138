"""Owner pages of a project: Publishing (trusted publishers), Security history, yank, archive.

Only owners get past `_owned`: anyone else is refused with 403 before anything is read or
changed. The use cases check ownership again inside their transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import canonicalize_name
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..accounts import SESSION_TOKEN_ID, Identity
from ..indexes import IndexInfo
from ..projects import ProjectRow
from ..routes.common import services
from ..sessions import Viewer
from . import publisher_forms
from .base import Form, field, index_of, read_form, require_viewer, ui, whole_number
from .render import WebError, page, redirect
from .views import ACTION_FILTERS


@dataclass(frozen=True)
class Owned:
    viewer: Viewer
    index: IndexInfo
    project: ProjectRow

    @property
    def base(self) -> str:
        return f"/{self.index.name}/project/{self.project.normalized_name}"

    @property
    def identity(self) -> Identity:
        # A browser session acts for its user on the index of the page, on any of the user's
        # projects; there is no API token behind it.
        return Identity(
            user_id=self.viewer.user_id,
            username=self.viewer.username,
            token_id=SESSION_TOKEN_ID,
            index_id=self.index.id,
            projects=None,
        )


async def _owned(request: Request) -> Owned:
    viewer = require_viewer(request)
    index = index_of(request)
    raw = request.path_params["project"]
    project, role = await run_in_threadpool(
        services(request).catalog.project_and_role, index.id, canonicalize_name(raw), viewer.user_id
    )
    if project is None:
        raise WebError(404, f"There is no project named {raw!r} on index {index.name!r}.")
    if role != "owner":
        raise WebError(
            403,
            f"Only owners of {project.name!r} may see or change its settings, and the user "
            f"{viewer.username!r} is not one.",
            "Not an owner",
        )
    return Owned(viewer, index, project)


# --- Publishing ------------------------------------------------------------------------------


@ui
async def publishing(request: Request) -> Response:
    owned = await _owned(request)
    kind = request.query_params.get("provider", "github")
    return await _publishing_page(request, owned, publisher_forms.build(request, owned.index, kind))


async def _publishing_page(
    request: Request, owned: Owned, form: publisher_forms.PublisherForm, status: int = 200
) -> Response:
    listed = await run_in_threadpool(
        services(request).publishers.list_publishers,
        owned.index.id,
        owned.project.normalized_name,
    )
    # A pending publisher naming this project belongs to whoever registered it, not to the
    # owners: its configuration is not theirs to read.
    active = [p for p in listed if not p["pending"]]
    for entry in active:
        values = publisher_forms.values_of_config(entry["kind"], entry["config"])
        entry["snippet"] = publisher_forms.preview(request, owned.index, entry["kind"], values)
    return page(
        request,
        "publishing.html",
        status=status,
        index=owned.index,
        project=owned.project,
        publishers=active,
        form=form,
        action=f"{owned.base}/settings/publishing",
        tab="publishing",
    )


@ui
async def add_publisher(request: Request) -> Response:
    owned = await _owned(request)
    form = await read_form(request)
    svc = services(request)
    shown = await publisher_forms.submit(
        request,
        owned.index,
        form,
        lambda kind, values: svc.publishers.add_publisher(
            owned.index.id,
            [owned.project.normalized_name],
            kind,
            values,
            owned.viewer.actor,
        ),
    )
    if shown is not None:
        return await _publishing_page(request, owned, *shown)
    return redirect(request, f"{owned.base}/settings/publishing", done="added")


@ui
async def remove_publisher(request: Request) -> Response:
    owned = await _owned(request)
    await read_form(request)
    publisher_id = _publisher_id(request)
    svc = services(request)
    listed = await run_in_threadpool(
        svc.publishers.list_publishers, owned.index.id, owned.project.normalized_name
    )
    if not any(p["id"] == publisher_id and not p["pending"] for p in listed):
        raise WebError(404, f"Project {owned.project.name!r} has no publisher #{publisher_id}.")
    await run_in_threadpool(
        svc.publishers.remove_publisher, owned.index.id, publisher_id, owned.viewer.actor
    )
    return redirect(request, f"{owned.base}/settings/publishing", done="removed")


def _publisher_id(request: Request) -> int:
    raw = request.path_params["publisher"]
    publisher_id = whole_number(raw)
    if publisher_id is None:
        raise WebError(404, f"{raw!r} is not a publisher id.")
    return publisher_id


@ui
async def settings_home(request: Request) -> Response:
    owned = await _owned(request)
    return redirect(request, f"{owned.base}/settings/publishing")


# --- Security history -----------------------------------------------------------------------


@ui
async def security_history(request: Request) -> Response:
    owned = await _owned(request)
    chosen = request.query_params.get("action", "")
    if chosen and chosen not in ACTION_FILTERS:
        raise WebError(400, f"Unknown filter {chosen!r}; use one of {', '.join(ACTION_FILTERS)}.")
    before = whole_number(request.query_params.get("before", ""), 17)
    entries, more = await run_in_threadpool(
        services(request).catalog.history,
        owned.index.id,
        owned.project.normalized_name,
        ACTION_FILTERS[chosen][1] if chosen else None,
        before,
    )
    return page(
        request,
        "history.html",
        index=owned.index,
        project=owned.project,
        entries=entries,
        more=more,
        chosen=chosen,
        filters=ACTION_FILTERS,
        tab="history",
    )


# --- Yank and archive -------------------------------------------------------------------------


@ui
async def yank(request: Request) -> Response:
    return await _set_yanked(request, yanked=True)


@ui
async def unyank(request: Request) -> Response:
    return await _set_yanked(request, yanked=False)


# Yanking and archiving are one form each on the project page; the form asks to type the
# version or the project's name (HTML's `required` stops an empty one without JavaScript, and
# these checks stop the rest), so a stray click changes nothing. Undoing them needs no typing.


def _confirmed(form: Form, expected: str, what: str, *, name: bool = False) -> None:
    typed = field(form, "confirm", 200)
    same = canonicalize_name(typed) == canonicalize_name(expected) if name else typed == expected
    if not same:
        raise WebError(
            400,
            f"Nothing was changed: type {what} {expected!r} in the confirmation box to go on.",
            "Not confirmed",
        )


async def _set_yanked(request: Request, *, yanked: bool) -> Response:
    owned = await _owned(request)
    form = await read_form(request)
    if yanked:
        _confirmed(form, request.path_params["version"], "the version")
    result = await run_in_threadpool(
        lambda: services(request).projects.set_yanked(
            owned.identity,
            owned.project.normalized_name,
            request.path_params["version"],
            yanked=yanked,
            reason=field(form, "reason", 2000) if yanked else "",
        )
    )
    return redirect(
        request,
        f"{owned.base}/{result['version']}/",
        done="yanked" if yanked else "unyanked",
    )


@ui
async def set_status(request: Request) -> Response:
    owned = await _owned(request)
    form = await read_form(request)
    status = form.get("status", "")
    if status not in ("archived", "active"):
        # Quarantine hides files from installers: an admin decision, not in the owner's UI.
        raise WebError(400, "Choose 'archived' or 'active'.")
    if status == "archived":
        _confirmed(form, owned.project.name, "the project name", name=True)
    await run_in_threadpool(
        services(request).projects.set_status,
        owned.identity,
        owned.project.normalized_name,
        status,
        field(form, "reason", 2000),
    )
    return redirect(request, f"{owned.base}/", done=status)


routes = [
    Route("/{index}/project/{project}/settings/", settings_home, methods=["GET"]),
    Route("/{index}/project/{project}/settings/publishing", publishing, methods=["GET"]),
    Route("/{index}/project/{project}/settings/publishing", add_publisher, methods=["POST"]),
    Route(
        "/{index}/project/{project}/settings/publishing/{publisher}/remove",
        remove_publisher,
        methods=["POST"],
    ),
    Route("/{index}/project/{project}/history", security_history, methods=["GET"]),
    Route("/{index}/project/{project}/status", set_status, methods=["POST"]),
    Route("/{index}/project/{project}/{version}/yank", yank, methods=["POST"]),
    Route("/{index}/project/{project}/{version}/unyank", unyank, methods=["POST"]),
]
