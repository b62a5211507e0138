"""Pages anyone may read: the landing page, an index's projects, a project and its releases."""

from __future__ import annotations

from typing import Any

from packaging.utils import canonicalize_name
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from ..catalog import latest_release, release_for, version_key
from ..help import TOPICS
from ..routes.common import public_base, services
from .base import Handler, index_of, page_number, ui
from .render import STATIC, WebError, page, root, viewer_of
from .views import description_html


def wants_html(request: Request) -> bool:
    # Browsers ask for text/html; API clients and curl (*/*) keep getting the JSON landing.
    return "text/html" in request.headers.get("accept", "")


async def landing(request: Request) -> Response:
    svc = services(request)
    query = request.query_params.get("q", "").strip()[:100]
    counts = await run_in_threadpool(svc.catalog.index_counts)
    results = {}
    if query:
        for index in svc.indexes.values():
            found, _ = await run_in_threadpool(svc.catalog.search_projects, index.id, query)
            results[index.name] = found
    return page(
        request,
        "landing.html",
        all_indexes=list(svc.indexes.values()),
        counts=counts,
        query=query,
        results=results,
    )


def landing_endpoint(json_home: Handler) -> Handler:
    """`/`: this page for browsers, the existing JSON description of the server for others."""
    html = ui(landing)

    async def endpoint(request: Request) -> Response:
        if wants_html(request):
            return await html(request)
        return await json_home(request)

    return endpoint


@ui
async def index_page(request: Request) -> Response:
    index = index_of(request)
    query = request.query_params.get("q", "").strip()[:100]
    number = page_number(request)
    svc = services(request)
    projects, more = await run_in_threadpool(svc.catalog.search_projects, index.id, query, number)
    # An index with an upstream: where it comes from, and what it holds from it (mirror/).
    upstream = svc.mirror.upstreams.get(index.name)
    mirrored = []
    if upstream is not None and number == 1:
        mirrored = await run_in_threadpool(svc.mirror.stored_projects, index.id, query)
    return page(
        request,
        "index.html",
        index=index,
        query=query,
        projects=projects,
        page_number=number,
        more=more,
        upstream=upstream,
        mirrored=mirrored,
        simple_url=f"{public_base(request)}/{index.name}/simple/",
        upload_url=f"{public_base(request)}/{index.name}/legacy/",
    )


@ui
async def project_page(request: Request) -> Response:
    return await _project(request, version=None)


@ui
async def release_page(request: Request) -> Response:
    return await _project(request, version=request.path_params["version"])


async def _project(request: Request, version: str | None) -> Response:
    index = index_of(request)
    raw = request.path_params["project"]
    name = canonicalize_name(raw)
    if raw != name:
        tail = f"{version}/" if version else ""
        return RedirectResponse(f"{root(request)}/{index.name}/project/{name}/{tail}", 301)
    svc = services(request)
    viewer = viewer_of(request)
    snapshot = await run_in_threadpool(svc.catalog.load_project, index.id, name)
    if snapshot is None:
        raise WebError(404, f"There is no project named {raw!r} on index {index.name!r}.")
    role = None
    if viewer is not None:
        role = await run_in_threadpool(svc.catalog.role_on, snapshot.project.id, viewer.user_id)
    sessions = []  # PEP 694 upload sessions: shown to owners (their stage URL is a capability)
    if role == "owner":
        sessions = await run_in_threadpool(svc.upload_sessions.open_sessions, index.id, name)
    release = _choose(snapshot.releases, version, snapshot.project.name)
    files = [f for f in snapshot.files if release is not None and f.release_id == release.id]
    if snapshot.project.status == "quarantined":
        files = []  # the simple API lists none either
    runs = await run_in_threadpool(svc.catalog.trusted_runs, index.id, name)
    info: dict[str, Any] = dict(release.info) if release is not None else {}
    description = await run_in_threadpool(
        description_html,
        svc.descriptions,
        info.get("description"),
        info.get("description_content_type"),
    )
    simple = f"{public_base(request)}/{index.name}/simple/"
    return page(
        request,
        "project.html",
        index=index,
        project=snapshot.project,
        releases=sorted(snapshot.releases, key=lambda r: version_key(r.version), reverse=True),
        release=release,
        is_latest_view=version is None,
        info=info,
        files=files,
        runs=runs,
        description=description,
        install=[
            f"pip install --index-url {simple} {snapshot.project.name}",
            f"uv pip install --index-url {simple} {snapshot.project.name}",
        ],
        role=role,
        sessions=sessions,
        stage_base=f"{public_base(request)}/{index.name}/+stage/",
    )


def _choose(releases: list[Any], version: str | None, project: str) -> Any:
    found = latest_release(releases) if version is None else release_for(releases, version)
    if found is None:
        raise WebError(404, f"Project {project!r} has no release {version!r}.")
    return found


@ui
async def help_page(request: Request) -> Response:
    """`/help/`: the topics the server's error texts link to (help.py)."""
    return page(request, "help.html", topics=TOPICS)


async def favicon(request: Request) -> Response:
    # Browsers ask for /favicon.ico whatever the page says; answer it rather than 404 each time.
    return FileResponse(
        STATIC / "favicon.ico",
        media_type="image/x-icon",
        headers={"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"},
    )


routes = [
    Route("/help/", help_page, methods=["GET", "HEAD"]),
    Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
    Route("/{index}/", index_page, methods=["GET", "HEAD"]),
    Route("/{index}/project/{project}/", project_page, methods=["GET", "HEAD"]),
    Route("/{index}/project/{project}/{version}/", release_page, methods=["GET", "HEAD"]),
]
