"""PyPI's JSON API (`/{index}/pypi/{project}/json` and `.../{version}/json`).

Twine, uv, Renovate and release tooling read these fields. Unknown projects answer 404 (never
405 or 500: Renovate falls back only on 404). Not on the hot path: built per request. On an
index with an upstream, a name only the upstream has is answered from its simple page
(index/mirror/jsonapi.py).
"""

from __future__ import annotations

from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..catalog import FileRow, ReleaseRow, latest_release, release_for, version_key
from ..errors import Refused
from ..indexes import IndexInfo
from ..mirror import mirror_file_url
from ..mirror.jsonapi import upstream_document
from ..mirror.merge import LOCAL
from ..pages import file_url, upload_time
from ..projects import ProjectRow
from .common import error, index_or_none, public_base, services, unknown_index
from .mirror import SOURCE_HEADER, STALE_HEADER


def _file_json(base: str, row: FileRow, release: ReleaseRow) -> dict[str, Any]:
    return {
        "comment_text": "",
        "digests": {"md5": row.md5, "sha256": row.sha256, "blake2b_256": row.blake2_256},
        "downloads": -1,
        "filename": row.filename,
        "has_sig": False,
        "md5_digest": row.md5,
        "packagetype": row.packagetype,
        "python_version": row.python_version,
        "requires_python": row.requires_python,
        "size": row.size,
        "upload_time": upload_time(row.upload_time)[:19],
        "upload_time_iso_8601": upload_time(row.upload_time),
        "url": file_url(base, row.sha256, row.filename),
        "yanked": bool(release.yanked),
        "yanked_reason": release.yanked_reason or None,
        "uploaded_via_trusted_publisher": bool(row.publisher),
        "trusted_publisher": row.publisher,
    }


def _info(base: str, index: str, project: ProjectRow, release: ReleaseRow) -> dict[str, Any]:
    info = dict(release.info)
    info.update(
        name=project.name,
        version=release.version,
        package_url=f"{base}/{index}/project/{project.normalized_name}/",
        project_url=f"{base}/{index}/project/{project.normalized_name}/",
        release_url=f"{base}/{index}/project/{project.normalized_name}/{release.version}/",
        bugtrack_url=None,
        docs_url=None,
        downloads={"last_day": -1, "last_month": -1, "last_week": -1},
        yanked=bool(release.yanked),
        yanked_reason=release.yanked_reason or None,
    )
    return info


async def project_json(request: Request) -> Response:
    return await _answer(request, version=None)


async def release_json(request: Request) -> Response:
    return await _answer(request, version=request.path_params["version"])


async def _answer(request: Request, version: str | None) -> Response:
    index = index_or_none(request)
    if index is None:
        return unknown_index(request)
    svc = services(request)
    raw = request.path_params["project"]
    name = canonicalize_name(raw)
    if raw != name:
        suffix = f"{version}/json" if version else "json"
        return RedirectResponse(
            f"{svc.pages.url_prefix}/{index.name}/pypi/{name}/{suffix}", status_code=301
        )
    snapshot = await run_in_threadpool(svc.catalog.load_project, index.id, name)
    if snapshot is None or not snapshot.releases:
        if svc.mirror.mirrors(index.name):
            # Only names the index does not own go upstream (dependency confusion: mirror/).
            return await _upstream_answer(request, index, name, version)
        return error(request, 404, f"No project named {raw!r} on index {index.name!r}.")
    project, releases, files = snapshot.project, snapshot.releases, snapshot.files
    base = public_base(request)
    by_release: dict[int, list[Any]] = {r.id: [] for r in releases}
    release_by_id = snapshot.release_by_id()
    if project.status == "quarantined":
        files = []  # PEP 792: a quarantined project offers nothing to install
    for row in files:
        by_release[row.release_id].append(_file_json(base, row, release_by_id[row.release_id]))
    upstream: dict[str, list[dict[str, Any]]] = {}
    if svc.mirror.mirrors(index.name):
        # Where each file comes from (PEP 700 leaves `_` keys to the index): the index's own,
        # and for a project on the merge list the upstream's too (index/mirror/merge.py).
        for entries in by_release.values():
            for entry in entries:
                entry["_source"] = LOCAL
        if svc.mirror.merges(index.name, name) and project.status != "quarantined":
            upstream = await run_in_threadpool(
                svc.mirror.json_api_files, index.id, index.name, name, base
            )
    if version is None:
        release = latest_release(releases)
        assert release is not None  # a project without releases answered 404 above
        ordered = sorted(releases, key=lambda r: version_key(r.version))
        document = {
            "info": _info(base, index.name, project, release),
            "last_serial": project.serial,
            "releases": _with_upstream({r.version: by_release[r.id] for r in ordered}, upstream),
            "urls": by_release[release.id],
            "vulnerabilities": [],
        }
    else:
        release = release_for(releases, version)
        if release is None:
            return error(request, 404, f"Project {project.name!r} has no release {version!r}.")
        document = {
            "info": _info(base, index.name, project, release),
            "last_serial": project.serial,
            "urls": _with_upstream({release.version: by_release[release.id]}, upstream)[
                release.version
            ],
            "vulnerabilities": [],
        }
    return JSONResponse(document, headers={"vary": "Accept"})


async def _upstream_answer(
    request: Request, index: IndexInfo, name: NormalizedName, version: str | None
) -> Response:
    """The JSON API of a name only the upstream has, from its simple page: the same cache,
    refusals and stale header as that page (routes/mirror.py)."""
    svc = services(request)
    try:
        page, stale = await run_in_threadpool(
            svc.mirror.upstream_project, index.id, index.name, name
        )
    except Refused as exc:
        return error(request, exc.status, exc.message)
    base = public_base(request)
    document = upstream_document(
        page,
        version,
        lambda sha256, filename: mirror_file_url(base, index.name, name, sha256, filename),
    )
    if document is None:
        wanted = f"no release {version!r}" if version else "no release"
        return error(
            request, 404, f"Project {name!r} on the upstream of index {index.name!r} has {wanted}."
        )
    headers = {"vary": "Accept", SOURCE_HEADER: "upstream"}
    if stale is not None:
        headers[STALE_HEADER] = stale
    return JSONResponse(document, headers=headers)


def _with_upstream(
    local: dict[str, list[dict[str, Any]]], upstream: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """The index's files by version, with the upstream's of other names (merge list)."""
    merged = {version: list(entries) for version, entries in local.items()}
    for version, entries in upstream.items():
        ours = {entry["filename"] for entry in merged.get(version, [])}
        merged.setdefault(version, []).extend(e for e in entries if e["filename"] not in ours)
    return dict(sorted(merged.items(), key=lambda item: version_key(item[0])))


routes = [
    Route("/{index}/pypi/{project}/json", project_json),
    Route("/{index}/pypi/{project}/{version}/json", release_json),
]
