"""Simple-API pages (PEP 503 HTML, PEP 691 JSON), rendered once per project change.

The simple API is the hot path: pip and uv fetch a project page for every dependency of every
install. Pages are built from the database once, when first asked for after a change, and then
served from memory; a change (upload, yank, status) drops the cached entry. So a request costs
a dict lookup whatever the number of projects or files on the server.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlparse

from packaging.utils import NormalizedName

from .catalog import Catalog, FileRow, ReleaseRow, version_key
from .projects import ProjectRow
from .upload2.stage import Stage

API_VERSION = "1.4"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"


@dataclass(frozen=True)
class Rendered:
    """One representation of a page, ready to send."""

    body: bytes
    etag: str
    # Response headers per content type, built on first use by the route that sends the page
    # (the page never changes, so neither do they): a cached page costs no header building.
    header_cache: dict[str, list[tuple[bytes, bytes]]] = field(
        default_factory=dict, compare=False, repr=False
    )


@dataclass(frozen=True)
class PageSet:
    """Both representations of one page."""

    html: Rendered
    json: Rendered


def rendered(body: str | bytes) -> Rendered:
    """A page's bytes and their ETag."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return Rendered(body=data, etag='"' + hashlib.sha256(data).hexdigest()[:32] + '"')


def upload_time(moment: datetime) -> str:
    """PEP 700's format: yyyy-mm-ddThh:mm:ss.ffffffZ (uv needs it for exclude-newer)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def url_prefix_of(public_url: str | None) -> str:
    """The path pages' links start with: that of `public-url`, behind a proxy serving keyless
    under a path ("" otherwise)."""
    return urlparse(public_url).path.rstrip("/") if public_url else ""


def file_url(url_prefix: str, sha256: str, filename: str) -> str:
    # Shared by every index: the same bytes have one URL, wherever they were uploaded.
    return f"{url_prefix}/files/{sha256}/{filename}"


# PEP 658: a file's core metadata is served at the file's URL + this.
METADATA_SUFFIX = ".metadata"


class SimplePages:
    """The cache of rendered simple pages, keyed by (index id, normalized project name)."""

    def __init__(self, catalog: Catalog, url_prefix: str = "") -> None:
        self.catalog = catalog
        self.url_prefix = url_prefix
        self._projects: dict[tuple[int, str], PageSet] = {}
        self._roots: dict[int, PageSet] = {}
        # Pages of names an index takes from its upstream (index/mirror/), rendered for this
        # server, each with the time.monotonic() its TTL ends: answered before routing as the
        # local pages are, and dropped with them when the name changes here (a local upload
        # of that name, a pending publisher reserving it), so the local index wins at once.
        self._upstream: dict[tuple[int, str], tuple[PageSet, float]] = {}
        self._lock = threading.Lock()
        # Bumped by every invalidation: a page rendered from data read before a change must
        # not be cached after it.
        self._generation = 0
        # For /_/metrics: pages asked of `root`/`project` and found in memory or not. The
        # lookups of the hot path (`cached_*`) count nothing here: their callers count the
        # answers they send (IndexApp, routes/simple.py), which is cheaper than counting twice.
        self.hits = 0
        self.misses = 0

    def invalidate(self, index_id: int, project: str) -> None:
        with self._lock:
            self._generation += 1
            self._projects.pop((index_id, project), None)
            self._upstream.pop((index_id, project), None)
            self._roots.pop(index_id, None)

    def invalidate_index(self, index_id: int) -> None:
        """Drop every page of an index (its settings or its name may have changed)."""
        with self._lock:
            self._generation += 1
            self._projects = {k: v for k, v in self._projects.items() if k[0] != index_id}
            self._upstream = {k: v for k, v in self._upstream.items() if k[0] != index_id}
            self._roots.pop(index_id, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._projects = {}
            self._upstream = {}
            self._roots = {}

    def root(self, index_id: int, index_name: str) -> PageSet:
        cached = self._roots.get(index_id)
        if cached is not None:
            self.hits += 1
        else:
            self.misses += 1
            generation = self._generation
            cached = self._render_root(index_id, index_name)
            with self._lock:
                if generation == self._generation:
                    self._roots[index_id] = cached
        return cached

    def cached_root(self, index_id: int) -> PageSet | None:
        """The root pages if they are in memory (no database access), else None."""
        return self._roots.get(index_id)

    def cached_project(self, index_id: int, name: str) -> PageSet | None:
        """A project's pages if they are in memory (no database access), else None.

        Keys are normalized names, so a hit also says `name` is normalized.
        """
        return self._projects.get((index_id, name))

    @property
    def generation(self) -> int:
        """Read before deciding that a page may be kept (`keep_upstream`)."""
        return self._generation

    def cached_upstream(self, index_id: int, name: str) -> PageSet | None:
        """An upstream project's pages if they are in memory and within their TTL, else None
        (the caller then asks the mirror, which revalidates them)."""
        entry = self._upstream.get((index_id, name))
        if entry is None or time.monotonic() >= entry[1]:
            return None
        return entry[0]

    def keep_upstream(
        self,
        index_id: int,
        name: str,
        pages: PageSet,
        fresh_until: float,
        generation: int,
        limit: int,
    ) -> None:
        """Keep an upstream project's pages until `fresh_until` (time.monotonic()), unless the
        caches were invalidated since `generation` was read (before the index was asked
        whether it owns the name): that change may be the name becoming local. At most
        `limit` pages: the oldest kept goes first."""
        key = (index_id, name)
        with self._lock:
            if generation != self._generation:
                return
            self._upstream.pop(key, None)
            if len(self._upstream) >= limit:
                self._upstream.pop(next(iter(self._upstream)))
            self._upstream[key] = (pages, fresh_until)

    def project(self, index_id: int, index_name: str, name: NormalizedName) -> PageSet | None:
        """The pages of a project, or None when the index has no such project."""
        key = (index_id, name)
        cached = self._projects.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        generation = self._generation
        pages = self._render_project(index_id, index_name, name)
        # Unknown names are not cached: anyone could fill memory with made-up names.
        if pages is not None:
            with self._lock:
                if generation == self._generation:
                    self._projects[key] = pages
        return pages

    def _render_root(self, index_id: int, index_name: str) -> PageSet:
        # Behind a proxy serving us under a path (public-url), links must carry that path.
        prefix = f"{self.url_prefix}/{index_name}"
        return root_page(prefix, index_name, self.catalog.project_names(index_id))

    def _render_project(
        self, index_id: int, index_name: str, name: NormalizedName
    ) -> PageSet | None:
        snapshot = self.catalog.load_project(index_id, name)
        if snapshot is None:
            return None
        project, releases, files = snapshot.project, snapshot.releases, snapshot.files
        release_by_id = snapshot.release_by_id()
        versions = sorted((r.version for r in releases), key=version_key)
        if project.status == "quarantined":
            files = []  # PEP 792: a quarantined project offers nothing to install
        entries = [self._file_entry(row, release_by_id[row.release_id]) for row in files]
        return PageSet(
            html=rendered(self._project_html(project, entries)),
            json=rendered(self._project_json(project, versions, entries)),
        )

    # --- the stage of a PEP 694 upload session (not cached: a stage is short-lived and rare)

    def stage_prefix(self, index_name: str, token: str) -> str:
        return f"{self.url_prefix}/{index_name}/+stage/{token}"

    def stage_root(self, index_id: int, index_name: str, stage: Stage) -> PageSet:
        """The index's root page with the session's project (new or not) in it."""
        rows = self.catalog.project_names(index_id)
        if all(normalized != stage.normalized_name for _, normalized in rows):
            rows = sorted([*rows, (stage.name, stage.normalized_name)], key=lambda row: row[1])
        return root_page(self.stage_prefix(index_name, stage.token), index_name, rows)

    def stage_project(
        self, index_id: int, index_name: str, stage: Stage, name: NormalizedName
    ) -> PageSet | None:
        """A project's page on the stage: as published, plus the session's completed files for
        its own project."""
        if name != stage.normalized_name:
            return self.project(index_id, index_name, name)
        snapshot = self.catalog.load_project(index_id, name)
        entries: list[dict[str, Any]] = []
        versions: list[str] = []
        if snapshot is None:
            project = ProjectRow(0, stage.name, name, "active", "", 0, 0)
        else:
            project = snapshot.project
            release_by_id = snapshot.release_by_id()
            versions = [r.version for r in snapshot.releases]
            entries = [self._file_entry(f, release_by_id[f.release_id]) for f in snapshot.files]
        prefix = self.stage_prefix(index_name, stage.token)
        for staged in stage.files:
            entries.append(
                {
                    "filename": staged.filename,
                    "url": f"{prefix}/files/{staged.sha256}/{staged.filename}",
                    "hashes": {"sha256": staged.sha256},
                    "requires-python": staged.requires_python,
                    "core-metadata": {"sha256": staged.metadata_sha256}
                    if staged.metadata_sha256
                    else False,
                    "size": staged.size,
                    "upload-time": upload_time(staged.upload_time),
                    "yanked": False,
                }
            )
        if stage.files and stage.version not in versions:
            versions.append(stage.version)
        versions.sort(key=version_key)
        return PageSet(
            html=rendered(self._project_html(project, entries)),
            json=rendered(self._project_json(project, versions, entries)),
        )

    def _file_entry(self, row: FileRow, release: ReleaseRow) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "filename": row.filename,
            "url": file_url(self.url_prefix, row.sha256, row.filename),
            "hashes": {"sha256": row.sha256},
            "requires-python": row.requires_python,
            "core-metadata": {"sha256": row.metadata_sha256} if row.metadata_sha256 else False,
            "size": row.size,
            "upload-time": upload_time(row.upload_time),
            "yanked": (release.yanked_reason or True) if release.yanked else False,
        }
        if row.publisher:
            # PEP 691 leaves keys with a leading underscore to the index; HTML stays frozen.
            entry["_trusted-publisher"] = row.publisher
        return entry

    def _project_json(
        self, project: ProjectRow, versions: list[str], entries: list[dict[str, Any]]
    ) -> bytes:
        meta = {"_last-serial": project.serial}
        status = (project.status, project.status_reason)
        return project_json(project.normalized_name, status, versions, entries, meta)

    def _project_html(self, project: ProjectRow, entries: list[dict[str, Any]]) -> str:
        status = (project.status, project.status_reason)
        return project_html(project.normalized_name, status, entries)


def root_page(url_prefix: str, index_name: str, rows: Sequence[tuple[str, str]]) -> PageSet:
    """The root page of an index listing `rows`, (name, normalized name) by normalized name
    (its own projects, and an upstream's: index/mirror/), linking under `url_prefix` + "/simple"
    (the index's own `{public path}/{index}`, or a PEP 694 stage's `.../+stage/{token}`)."""
    base = f"{url_prefix}/simple"
    anchors = "".join(
        f'    <a href="{base}/{normalized}/">{escape(name)}</a>\n' for name, normalized in rows
    )
    html = (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>Simple index: {escape(index_name)}</title>\n  </head>\n  <body>\n"
        f"{anchors}  </body>\n</html>\n"
    )
    document = {
        "meta": {"api-version": API_VERSION},
        "projects": [{"name": name} for name, _ in rows],
    }
    return PageSet(html=rendered(html), json=rendered(_dumps(document)))


def project_json(
    name: str,
    status: tuple[str, str | None],
    versions: list[str],
    entries: list[dict[str, Any]],
    meta: dict[str, Any],
) -> bytes:
    """A project page in PEP 691 JSON, from file entries shaped as `_file_entry` makes them
    (local ones, or an upstream's: index/mirror/); `meta` adds keys to `meta`."""
    project_status: dict[str, str] = {"status": status[0]}
    if status[1]:
        project_status["reason"] = status[1]
    document = {
        "meta": {"api-version": API_VERSION, **meta},
        "name": name,
        "project-status": project_status,
        "versions": versions,
        "files": entries,
    }
    return _dumps(document)


def project_html(name: str, status: tuple[str, str | None], entries: list[dict[str, Any]]) -> str:
    """A project page in PEP 503 HTML from the same entries as `project_json`."""
    lines = []
    for entry in entries:
        attributes = [f'href="{escape(entry["url"])}#sha256={entry["hashes"]["sha256"]}"']
        if entry["requires-python"]:
            attributes.append(f'data-requires-python="{escape(entry["requires-python"])}"')
        if entry["yanked"] is not False:
            reason = "" if entry["yanked"] is True else entry["yanked"]
            attributes.append(f'data-yanked="{escape(reason)}"')
        if entry["core-metadata"]:
            digest = entry["core-metadata"]["sha256"]
            # Both spellings: PEP 714 renamed the attribute; older pip reads the old one.
            attributes.append(f'data-dist-info-metadata="sha256={digest}"')
            attributes.append(f'data-core-metadata="sha256={digest}"')
        if "_source" in entry:  # an index with an upstream: where the file comes from
            attributes.append(f'data-keyless-source="{escape(entry["_source"])}"')
        lines.append(f"    <a {' '.join(attributes)}>{escape(entry['filename'])}</a><br />\n")
    head = ""
    if status[0] != "active":
        head = f'    <meta name="pypi:project-status" content="{escape(status[0])}">\n'
        if status[1]:
            head += f'    <meta name="pypi:project-status-reason" content="{escape(status[1])}">\n'
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"{head}"
        f"    <title>Links for {escape(name)}</title>\n  </head>\n"
        f"  <body>\n    <h1>Links for {escape(name)}</h1>\n"
        f"{''.join(lines)}  </body>\n</html>\n"
    )


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (RFC 9110 13.1.2).

    The header is a list (or `*`) compared weakly: a proxy that compresses a response turns
    our strong ETag into `W/"..."`, and clients send back what they got.
    """
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def negotiate(accept: str) -> str:
    """Pick the simple-API content type for an Accept header (PEP 691).

    q-values decide, not order; no header, `*/*` or nothing we serve -> text/html, because
    hatch and Renovate send no Accept and parse HTML.
    """
    best, best_q = TEXT_HTML, 0.0
    preference = {JSON_TYPE: 3, HTML_TYPE: 2, TEXT_HTML: 1}
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        media = {
            "application/vnd.pypi.simple.latest+json": JSON_TYPE,
            "application/vnd.pypi.simple.latest+html": HTML_TYPE,
        }.get(media, media)
        if media not in preference:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        if q > best_q or (q == best_q and preference[media] > preference[best]):
            best, best_q = media, q
    return best
