"""Distribution files and their PEP 658 metadata, at one content-addressed URL for all indexes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from keyless.store import db

from ..pages import etag_matches
from .common import error, services

SHA256 = re.compile(r"^[0-9a-f]{64}$")
METADATA_SUFFIX = ".metadata"


@dataclass
class Lookup:
    known: bool  # some index holds these bytes under this name
    offered: bool  # ... in a project that is not quarantined
    metadata_sha256: str | None = None
    metadata: bytes | None = None  # the METADATA bytes, when asked for


def _lookup(engine: Engine, sha256: str, filename: str, want_metadata: bool) -> Lookup:
    """What is served for a file under this hash and name.

    The URL is shared by every index holding these bytes under this name; it is offered as
    long as one of them belongs to a project that is not quarantined (PEP 792: a quarantined
    project's files MUST NOT be offered for download, not only left off its page).
    """
    with db.reading(engine) as conn:
        rows = conn.execute(
            select(db.files.c.metadata_sha256, db.projects.c.status)
            .join(db.releases, db.releases.c.id == db.files.c.release_id)
            .join(db.projects, db.projects.c.id == db.releases.c.project_id)
            .where(db.files.c.sha256 == sha256, db.files.c.filename == filename)
        ).all()
        offered = [row for row in rows if row.status != "quarantined"]
        if not offered:
            return Lookup(known=bool(rows), offered=False)
        found = Lookup(known=True, offered=True, metadata_sha256=offered[0].metadata_sha256)
        if want_metadata and found.metadata_sha256 is not None:
            found.metadata = conn.execute(
                select(db.core_metadata.c.data).where(
                    db.core_metadata.c.sha256 == found.metadata_sha256
                )
            ).scalar()
    return found


async def download(request: Request) -> Response:
    sha256, filename = request.path_params["sha256"], request.path_params["filename"]
    if not SHA256.match(sha256):
        return error(request, 404, "No such file: the path must be /files/<sha256>/<filename>.")
    want_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename[: -len(METADATA_SUFFIX)] if want_metadata else filename
    svc = services(request)
    found = await run_in_threadpool(_lookup, svc.engine, sha256, dist_name, want_metadata)
    if not found.known:
        return error(request, 404, f"No file {dist_name!r} with sha256 {sha256} here.")
    if not found.offered:
        return error(request, 403, f"{dist_name!r} belongs to a quarantined project.")
    # The bytes behind a hash never change, so clients may cache them forever.
    etag = f'"{found.metadata_sha256 if want_metadata else sha256}"'
    headers = {"etag": etag, "cache-control": "max-age=31536000, immutable"}
    if want_metadata:
        if found.metadata_sha256 is None:
            return error(request, 404, f"{dist_name!r} has no separate metadata file (PEP 658).")
        if found.metadata is None:
            return error(request, 404, f"The metadata of {dist_name!r} is missing from the store.")
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if found.metadata is not None:
        return Response(found.metadata, media_type="text/plain; charset=utf-8", headers=headers)
    path = svc.blobs.path_for(sha256)
    if not path.is_file():
        return error(request, 404, f"The bytes of {dist_name!r} are missing from the store.")
    return FileResponse(
        path, media_type="application/octet-stream", headers=headers, filename=dist_name
    )


routes = [Route("/files/{sha256}/{filename}", download, methods=["GET", "HEAD"])]
