"""An index with an upstream: a caching mirror of a PEP 503/691 index that cannot be used for
dependency confusion.

A name the index owns (a project of its own, one a pending publisher reserves, one matching a
pattern its admin reserves) is never looked up upstream: policy.py decides before anything is
fetched, for pages and files alike, so a higher version published upstream under an internal
name never reaches a client. Other names are served from the upstream's page, fetched once and
kept in memory with its ETag/Last-Modified, revalidated after the index's `upstream-ttl`, and
served stale (with a header saying so) while the upstream is unreachable. Their files are
fetched on first download, streamed to that client while they are stored, checked against the
upstream page's sha256 and then served from the blob store.

This module keeps the policy and what is cached; asking the upstream for a page is fetch.py's,
streaming a file's first download download.py's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from packaging.utils import NormalizedName, canonicalize_name
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from keyless.config import IndexSettings
from keyless.store import db
from keyless.store.blobs import BlobStore, Digests, PendingBlob

from ..catalog import Catalog, version_key
from ..pages import (
    METADATA_SUFFIX,
    PageSet,
    SimplePages,
    project_html,
    project_json,
    rendered,
    root_page,
)
from . import download
from .fetch import (
    CachedPage,
    CachedRoot,
    Rows,
    auth_for,
    fetch_page,
    fetch_root,
    read_bounded,
    timeout_of,
)
from .merge import UPSTREAM, json_api_files, merge_pages, version_of
from .policy import reserved_by
from .refused import MirrorRefused, answered, unreachable
from .upstream import UpstreamFile, UpstreamPage

log = logging.getLogger("keyless.mirror")
K = TypeVar("K")
V = TypeVar("V")

# Upstream pages kept in memory per process; the oldest fetched goes first beyond it.
MAX_CACHED_PAGES = 10_000
MAX_METADATA_BYTES = 16 * 1024 * 1024
DOWNLOAD_RECORD_INTERVAL = 3600.0  # seconds: see Mirror.download_to_record


@dataclass(frozen=True)
class MirroredPage:
    pages: PageSet
    # Why the page may be out of date (the X-Keyless-Stale header); None: it is current.
    stale: str | None
    # The upstream's page as read, for a project's page (the JSON API answers from it); None
    # for a merged page and the root page.
    page: UpstreamPage | None = None


@dataclass(frozen=True)
class Stored:
    project: str  # normalized
    files: int  # distributions stored (not counting metadata files)


def mirror_file_url(url_prefix: str, index: str, project: str, sha256: str, filename: str) -> str:
    """Where this server serves an upstream file (the bytes are checked against `sha256`)."""
    return f"{url_prefix}/{index}/+mirror/{project}/{sha256}/{quote(filename)}"


class Mirror:
    """The upstreams of the indexes that have one, and what was fetched from them."""

    def __init__(
        self,
        indexes: Mapping[str, IndexSettings],
        catalog: Catalog,
        blobs: BlobStore,
        engine: Engine,
        url_prefix: str = "",
        pages: SimplePages | None = None,
    ) -> None:
        self.upstreams = {name: s for name, s in indexes.items() if s.upstream}
        self.catalog = catalog
        self.blobs = blobs
        self.engine = engine
        self.url_prefix = url_prefix
        # The server's page cache, where current upstream pages are kept for the routes to
        # answer from memory (routes/simple.py); None where nothing serves pages (the CLI).
        self.pages = pages
        self._pages: dict[tuple[str, str], CachedPage] = {}
        self._roots: dict[str, CachedRoot] = {}
        # The last merged root page per index: (local rows, upstream rows, pages).
        self._merged: dict[str, tuple[Rows, Rows, PageSet]] = {}
        # Merged project pages (merge.py): (local pages, upstream pages, merged pages).
        self._merged_pages: dict[tuple[str, str], tuple[PageSet, PageSet | None, PageSet]] = {}
        self._lock = threading.Lock()
        # (index id, filename) -> time.monotonic() a download was last recorded.
        self._downloads: dict[tuple[int, str], float] = {}
        self._client: httpx.Client | None = None

    def mirrors(self, index_name: str) -> bool:
        return index_name in self.upstreams

    def _refuse_owned(self, index_id: int, settings: IndexSettings, name: NormalizedName) -> None:
        """Raises MirrorRefused (404) for a name the index keeps for itself (policy.py), unless
        the index merges it with the upstream (merge.py)."""
        if name in settings.upstream_merge:
            return
        pattern = reserved_by(settings, name)
        if pattern is not None:
            why = f"reserved by the pattern {pattern!r}"
        elif self.catalog.owns_name(index_id, name):
            why = "a project of its own, or reserved by a pending publisher"
        else:
            return
        raise MirrorRefused(
            f"Index {settings.name!r} keeps {name!r} for itself ({why}): "
            "it is never taken from the upstream.",
            404,
        )

    def merges(self, index_name: str, name: str) -> bool:
        """Whether the index's page of its own project `name` also lists the upstream's files."""
        settings = self.upstreams.get(index_name)
        return settings is not None and name in settings.upstream_merge

    # -- pages ----------------------------------------------------------------------------

    def merged(
        self, index_id: int, index_name: str, name: NormalizedName, local: PageSet
    ) -> MirroredPage:
        """The index's page of `name`, on its merge list, with the upstream's files. Blocking.

        The upstream failing never hides the index's own files: they are served alone then,
        with the reason as the stale header.
        """
        settings = self.upstreams[index_name]
        try:
            found: MirroredPage | None = self.project(index_id, index_name, name)
        except MirrorRefused as exc:
            if exc.status != 404:
                return MirroredPage(merge_pages(local, None, ""), f"only local files: {exc}")
            found = None  # the upstream has no such project
        upstream = found.pages if found is not None else None
        kept = self._merged_pages.get((index_name, name))
        if kept is None or kept[0] is not local or kept[1] is not upstream:
            kept = (local, upstream, merge_pages(local, upstream, str(settings.upstream)))
            self._put(self._merged_pages, (index_name, name), kept)
        return MirroredPage(kept[2], found.stale if found is not None else None)

    def upstream_page(
        self, index_id: int, index_name: str, name: NormalizedName
    ) -> UpstreamPage | None:
        """The upstream's page of `name` as read (the JSON API lists its files), or None when
        it cannot be used: not to be taken from the upstream, or unavailable. Blocking."""
        try:
            return self.upstream_project(index_id, index_name, name)[0]
        except MirrorRefused:
            return None

    def upstream_project(
        self, index_id: int, index_name: str, name: NormalizedName
    ) -> tuple[UpstreamPage, str | None]:
        """The upstream's page of `name` as read, and why it may be out of date (None: it is
        current): the simple page's data, under its rules (`project`, whose refusals it
        raises). Blocking."""
        found = self.project(index_id, index_name, name)
        assert found.page is not None  # a project's page always says what it was read from
        return found.page, found.stale

    def project(self, index_id: int, index_name: str, name: NormalizedName) -> MirroredPage:
        """The upstream's page of `name` rendered for this server. Blocking.

        Raises MirrorRefused: 404 when the index owns the name or the upstream has no such
        project, 502/504 when the upstream fails and nothing is cached.
        """
        settings = self.upstreams[index_name]
        generation = self.pages.generation if self.pages is not None else 0
        self._refuse_owned(index_id, settings, name)
        if settings.upstream_offline:
            return self._offline_page(index_id, settings, name)
        cached = self._pages.get((index_name, name))
        if cached is not None and time.monotonic() - cached.fetched < settings.upstream_ttl:
            self._keep(index_id, name, cached, settings, generation)
            return MirroredPage(cached.pages, None, cached.page)
        try:
            fresh = fetch_page(
                self._http(), settings, name, cached, lambda page: self._render(settings, page)
            )
        except MirrorRefused as exc:
            if cached is None or exc.status == 404:
                raise
            # The upstream is down or misbehaving: what it said last is better than nothing.
            age = int(time.monotonic() - cached.fetched)
            log.warning("serving %s/%s from the cache (%ss old): %s", index_name, name, age, exc)
            stale = f"upstream unreachable; page fetched {age} seconds ago"
            return MirroredPage(cached.pages, stale, cached.page)
        self._put(self._pages, (index_name, name), fresh)
        self._keep(index_id, name, fresh, settings, generation)
        return MirroredPage(fresh.pages, None, fresh.page)

    def _put(self, cache: dict[K, V], key: K, value: V) -> None:
        """Keep `value` as the newest entry of `cache`, which holds at most `MAX_CACHED_PAGES`:
        the oldest kept goes first."""
        with self._lock:
            cache.pop(key, None)
            if len(cache) >= MAX_CACHED_PAGES:
                cache.pop(next(iter(cache)))
            cache[key] = value

    def _offline_page(
        self, index_id: int, settings: IndexSettings, name: NormalizedName
    ) -> MirroredPage:
        """An offline index's page of `name`: the files it stored from the upstream, with their
        hashes, metadata files, requires-python and yanks as the upstream's page gave them when
        each was stored. Never asks the upstream."""
        page = self._stored_page(index_id, name)
        if page is None:
            raise MirrorRefused(
                f"Index {settings.name!r} is offline (upstream-offline): it serves only what "
                f"it stored from its upstream, and never stored {name!r}.",
                404,
            )
        stale = "index offline; only the files stored from the upstream are listed"
        return MirroredPage(self._render(settings, page), stale, page)

    def _stored_page(self, index_id: int, name: NormalizedName) -> UpstreamPage | None:
        table = db.mirrored_files
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(table.c.filename, table.c.sha256, table.c.requires_python, table.c.yanked)
                .where(table.c.index_id == index_id, table.c.project == name)
                .order_by(table.c.filename)
            ).all()
        digests = {row.filename: row.sha256 for row in rows}
        files = [
            _stored_file(row.filename, row.sha256, digests, row.requires_python, row.yanked)
            for row in rows
            if not row.filename.endswith(METADATA_SUFFIX)
        ]
        if not files:
            return None
        versions = {str(v) for f in files if (v := version_of(f.filename)) is not None}
        return UpstreamPage(
            name=name,
            files=tuple(files),
            versions=tuple(sorted(versions, key=version_key)),
            status=("active", None),
        )

    def _keep(
        self,
        index_id: int,
        name: NormalizedName,
        cached: CachedPage,
        settings: IndexSettings,
        generation: int,
    ) -> None:
        """Hand a current page to the server's page cache until its TTL ends. Stale pages are
        not: each request for them tries the upstream again. Nor are those of names merged
        with the index's own files: their pages are merged per request (merge.py)."""
        if self.pages is not None and name not in settings.upstream_merge:
            fresh_until = cached.fetched + settings.upstream_ttl
            self.pages.keep_upstream(
                index_id, name, cached.pages, fresh_until, generation, MAX_CACHED_PAGES
            )

    def root(self, index_name: str, local: Sequence[tuple[str, NormalizedName]]) -> MirroredPage:
        """The root page: the index's projects and the upstream's other names. Blocking.

        The upstream's list is cached and revalidated as project pages are; while the upstream
        is down, its last list is used (stale), and with none the index's own projects are
        still listed rather than nothing.
        """
        settings = self.upstreams[index_name]
        base = f"{self.url_prefix}/{index_name}"
        if settings.upstream_offline:
            return MirroredPage(
                root_page(base, index_name, local),
                "index offline; the upstream's projects are not listed",
            )
        cached = self._roots.get(index_name)
        stale: str | None = None
        if cached is None or time.monotonic() - cached.fetched >= settings.upstream_ttl:
            try:
                cached = fetch_root(self._http(), settings, cached)
                self._roots[index_name] = cached
            except MirrorRefused as exc:
                log.warning("the root page of %s lists no upstream names: %s", index_name, exc)
                if cached is None:
                    pages = root_page(base, index_name, local)
                    return MirroredPage(pages, "upstream unreachable; its projects are not listed")
                age = int(time.monotonic() - cached.fetched)
                stale = f"upstream unreachable; its projects as listed {age} seconds ago"
        rows = tuple(local)
        merged = self._merged.get(index_name)
        if merged is None or merged[0] != rows or merged[1] is not cached.names:
            owned = {normalized for _, normalized in local}
            upstream = (
                row
                for row in cached.names
                if row[1] not in owned and reserved_by(settings, row[1]) is None
            )
            listed = sorted([*local, *upstream], key=lambda row: row[1])
            merged = (rows, cached.names, root_page(base, index_name, listed))
            self._merged[index_name] = merged
        return MirroredPage(merged[2], stale)

    def _render(self, settings: IndexSettings, page: UpstreamPage) -> PageSet:
        entries = [
            {
                "filename": f.filename,
                "url": mirror_file_url(
                    self.url_prefix, settings.name, page.name, f.sha256, f.filename
                ),
                "hashes": {"sha256": f.sha256},
                "requires-python": f.requires_python,
                "core-metadata": {"sha256": f.metadata_sha256} if f.metadata_sha256 else False,
                "size": f.size,
                "upload-time": f.upload_time,
                "yanked": f.yanked,
                "_source": UPSTREAM,
            }
            for f in page.files
        ]
        # Where the files come from, in the index's own key space (PEP 691 leaves `_` keys
        # to the index).
        meta = {"_upstream": settings.upstream}
        return PageSet(
            html=rendered(project_html(page.name, page.status, entries)),
            json=rendered(project_json(page.name, page.status, list(page.versions), entries, meta)),
        )

    def json_api_files(
        self, index_id: int, index_name: str, name: NormalizedName, base: str
    ) -> dict[str, list[dict[str, Any]]]:
        """The upstream's files of a project on the merge list, for the JSON API, by version,
        at URLs under `base` (the server's public URL, as the index's own files' are); none
        while the upstream cannot be used. Blocking."""
        page = self.upstream_page(index_id, index_name, name)
        if page is None:
            return {}
        return json_api_files(
            page,
            lambda sha256, filename: mirror_file_url(base, index_name, name, sha256, filename),
        )

    def stored_projects(self, index_id: int, query: str = "", limit: int = 100) -> list[Stored]:
        """The upstream projects the index stored files of (the web UI marks them), by name;
        `query`: those whose name contains it. Blocking."""
        table = db.mirrored_files
        statement = (
            select(table.c.project, func.count())
            .where(table.c.index_id == index_id, ~table.c.filename.endswith(METADATA_SUFFIX))
            .group_by(table.c.project)
            .order_by(table.c.project)
            .limit(limit)
        )
        if query:
            statement = statement.where(table.c.project.contains(canonicalize_name(query)))
        with db.reading(self.engine) as conn:
            return [Stored(name, count) for name, count in conn.execute(statement).all()]

    # -- files ----------------------------------------------------------------------------

    def file(
        self, index_id: int, index_name: str, name: NormalizedName, sha256: str, filename: str
    ) -> UpstreamFile:
        """The upstream file a mirror URL names, as the upstream's page lists it. Blocking.

        A page already fetched is used however old: the hash in the URL came from it, and
        the upstream may be down (a file stored earlier is still served then).
        """
        self._refuse_owned(index_id, self.upstreams[index_name], name)
        cached = self._pages.get((index_name, name))
        if cached is None:
            kept = self._kept(index_id, name, sha256, filename)
            if kept is not None:
                return kept  # stored before this process started: no need of the upstream
            if self.upstreams[index_name].upstream_offline:
                raise MirrorRefused(
                    f"Index {index_name!r} is offline (upstream-offline) and never stored "
                    f"{filename!r} with sha256 {sha256}.",
                    404,
                )
            self.project(index_id, index_name, name)
            cached = self._pages.get((index_name, name))
        found = cached.page.file(sha256, filename) if cached is not None else None
        if found is None:
            raise MirrorRefused(
                f"The upstream of index {index_name!r} lists no {filename!r} "
                f"with sha256 {sha256} for {name!r}.",
                404,
            )
        return found

    def _kept(self, index_id: int, name: str, sha256: str, filename: str) -> UpstreamFile | None:
        """A file stored earlier (and its metadata file's hash), if its blob is still there."""
        table = db.mirrored_files
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(table.c.filename, table.c.sha256).where(
                    table.c.index_id == index_id,
                    table.c.project == name,
                    table.c.filename.in_((filename, filename + METADATA_SUFFIX)),
                )
            ).all()
        digests = {row.filename: row.sha256 for row in rows}
        if digests.get(filename) != sha256 or not self.blobs.exists(sha256):
            return None
        return _stored_file(filename, sha256, digests)

    def _record(
        self,
        index_id: int,
        name: str,
        filename: str,
        sha256: str,
        facts: UpstreamFile | None = None,
    ) -> None:
        """Keep a stored blob from garbage collection, and say what it is (with `facts`, what
        the upstream's page said of it). Blocking.

        A file recorded before (its blob went and it was fetched again, or two first downloads
        ran at once) keeps its row's last download: one statement updates the rest, so
        `mirror prune` still counts from that download or this storing, whichever is later.
        """
        yanked = None
        if facts is not None and facts.yanked is not False:
            yanked = "" if facts.yanked is True else facts.yanked
        table = db.mirrored_files
        values = {
            "project": name,
            "sha256": sha256,
            "stored": datetime.now(UTC),
            "requires_python": facts.requires_python if facts is not None else None,
            "yanked": yanked,
        }
        with db.writing(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                insert: PgInsert | SqliteInsert = pg_insert(table)
            else:
                insert = sqlite_insert(table)
            insert = insert.values(index_id=index_id, filename=filename, **values)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[table.c.index_id, table.c.filename],
                    set_={key: insert.excluded[key] for key in values},
                )
            )
        self._downloads[(index_id, filename)] = time.monotonic()

    def download_to_record(self, index_id: int, filename: str) -> bool:
        """Whether a download of a stored file should be written down (`record_download`):
        once per `DOWNLOAD_RECORD_INTERVAL` per file and process is enough for `mirror prune`,
        which counts in days, and keeps a write off most downloads."""
        last = self._downloads.get((index_id, filename))
        return last is None or time.monotonic() - last >= DOWNLOAD_RECORD_INTERVAL

    def record_download(self, index_id: int, filename: str) -> None:
        """Write down that a stored file was downloaded now. Blocking."""
        self._downloads[(index_id, filename)] = time.monotonic()
        if len(self._downloads) > MAX_CACHED_PAGES * 10:
            self._downloads.clear()  # bounded: forgetting costs one write per file again
        table = db.mirrored_files
        with db.writing(self.engine) as conn:
            conn.execute(
                table.update()
                .where(table.c.index_id == index_id, table.c.filename == filename)
                .values(last_download=datetime.now(UTC))
            )

    def metadata(self, index_id: int, index_name: str, name: str, found: UpstreamFile) -> bytes:
        """The PEP 658 metadata file of `found`: from the store, else fetched, checked
        against the page's hash and stored. Blocking."""
        digest = found.metadata_sha256
        if digest is None:
            raise MirrorRefused(f"{found.filename!r} has no separate metadata file (PEP 658).", 404)
        if self.blobs.exists(digest):
            with self.blobs.open(digest) as stored:
                return stored.read()
        settings = self.upstreams[index_name]
        if settings.upstream_offline or not found.url:
            raise MirrorRefused(
                f"The metadata file of {found.filename!r} was never stored here, and index "
                f"{index_name!r} is offline (upstream-offline).",
                404,
            )
        url = found.url + METADATA_SUFFIX
        what = f"the metadata of {found.filename!r}"
        try:
            with self._http().stream(
                "GET", url, auth=auth_for(settings, url), timeout=timeout_of(settings)
            ) as response:
                if response.status_code != 200:
                    raise answered(settings.upstream, response.status_code, what)
                data = read_bounded(response, MAX_METADATA_BYTES)
        except httpx.HTTPError as exc:
            raise unreachable(settings.upstream, what, exc) from None
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            raise MirrorRefused(
                f"The metadata of {found.filename!r} from the upstream {settings.upstream} "
                "does not match the hash its page gives; refused.",
                502,
            )
        self.blobs.put_bytes(data)
        self._record(index_id, name, found.filename + METADATA_SUFFIX, digest)
        if not self.blobs.exists(digest):  # collected between the two: put back, now kept
            self.blobs.put_bytes(data)
        return data

    async def open_download(self, index_name: str, found: UpstreamFile) -> httpx.Response:
        """Begin fetching an upstream file (status checked, body not read yet); the caller
        streams it with `store_while_streaming`, which closes it."""
        return await asyncio.to_thread(self._open_download, index_name, found)

    def _open_download(self, index_name: str, found: UpstreamFile) -> httpx.Response:
        settings = self.upstreams[index_name]
        if settings.upstream_offline or not found.url:  # a stored file whose blob went away
            raise MirrorRefused(
                f"{found.filename!r} is no longer stored here, and index {index_name!r} is "
                "offline (upstream-offline).",
                404,
            )
        client = self._http()
        # The bytes as stored upstream, not a compressed transfer of them: they are hashed
        # and stored as they arrive.
        request = client.build_request(
            "GET", found.url, headers={"accept-encoding": "identity"}, timeout=timeout_of(settings)
        )
        try:
            response = client.send(request, stream=True, auth=auth_for(settings, found.url))
        except httpx.HTTPError as exc:
            raise unreachable(settings.upstream, repr(found.filename), exc) from None
        if response.status_code != 200:
            response.close()
            raise answered(settings.upstream, response.status_code, repr(found.filename))
        return response

    def store_while_streaming(
        self, index_id: int, name: str, found: UpstreamFile, response: httpx.Response
    ) -> AsyncGenerator[bytes, None]:
        """The file's bytes as they arrive, written to the blob store on the way, and the file
        stored once they hash to the sha256 the upstream's page gave (download.py says how,
        and why a thread reads the upstream)."""
        return download.store_while_streaming(
            self.blobs,
            response,
            found,
            name,
            lambda writer, digests: self._store(index_id, name, found, writer, digests),
        )

    def _store(
        self,
        index_id: int,
        name: str,
        found: UpstreamFile,
        writer: PendingBlob,
        digests: Digests,
    ) -> None:
        """Make a checked upstream file durable, place it and record it. Blocking."""
        writer.finish()
        self.blobs.place(writer, digests.sha256, digests.size)
        self._record(index_id, name, found.filename, found.sha256, found)
        # Placed again once recorded: garbage collection may have run in between.
        self.blobs.place(writer, digests.sha256, digests.size)

    # -- the HTTP clients -----------------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self._client is None:  # timeouts per request: each index has its own
            self._client = httpx.Client(follow_redirects=True)
        return self._client


def _stored_file(
    filename: str,
    sha256: str,
    digests: Mapping[str, str],
    requires_python: str | None = None,
    yanked: str | None = None,
) -> UpstreamFile:
    """A file as the index stored it from the upstream (`mirrored_files`, whose rows of the
    project are `digests`: filename -> sha256, its metadata file's among them), with what the
    upstream's page said of it then (`yanked` as `_record` keeps it: None, or the reason).
    It has no URL: its bytes are here, never fetched again."""
    return UpstreamFile(
        filename=filename,
        url="",
        sha256=sha256,
        requires_python=requires_python,
        yanked=False if yanked is None else (yanked or True),
        metadata_sha256=digests.get(filename + METADATA_SUFFIX),
        size=None,
        upload_time=None,
    )
