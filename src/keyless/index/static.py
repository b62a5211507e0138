"""The static copy of the read path: simple pages, `.metadata` files and distributions as
files a plain web server (nginx, a bucket's website hosting, a CDN) serves to pip and uv.

Installers make almost all of an index's requests; with `[static] folder` set, keyless keeps
this tree next to its database so those requests never reach Python. The tree has the
dynamic server's URL paths, and its pages are the very bytes the server answers (rendered by
`SimplePages`), so file links resolve alike on both:

    {index}/simple/index.html, index.json              the index's project list
    {index}/simple/{project}/index.html, index.json    a project's page (PEP 503 / PEP 691)
    files/{sha256}/{filename}                          a distribution (a link to its blob)
    files/{sha256}/{filename}.metadata                 its core metadata (PEP 658 / 714)

The web server picks index.json or index.html by `Accept` (deploy/nginx/static.conf).

`StaticTree` writes it (a whole rebuild, or one project and its index's list); `StaticWriter`
keeps it current inside the server: every use case's `on_change` queues the project, and one
thread rewrites what was queued at once, so a change shows within a second. Where the tree is
kept is a `store.static_tree.StaticTarget`, so a bucket prefix is one more target.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from packaging.utils import NormalizedName

from keyless.config import Settings
from keyless.store.blobs import BlobStore
from keyless.store.changes import ChangeFeed
from keyless.store.static_tree import StaticTarget, open_static_target

from .catalog import Catalog, FileKey
from .indexes import IndexAdmin, IndexInfo
from .pages import METADATA_SUFFIX, PageSet, SimplePages

log = logging.getLogger("keyless.static")

FILES = "files"


def page_paths(index: str, project: str | None = None) -> tuple[str, str]:
    """The (HTML, JSON) paths of an index's root page, or of one of its projects' pages."""
    folder = f"{index}/simple" + (f"/{project}" if project else "")
    return f"{folder}/index.html", f"{folder}/index.json"


def file_paths(sha256: str, filename: str) -> tuple[str, str]:
    """The (distribution, .metadata) paths of a file, as `pages.file_url` links them."""
    path = f"{FILES}/{sha256}/{filename}"
    return path, path + METADATA_SUFFIX


@dataclass
class RebuildReport:
    pages: int = 0  # page files in the tree (both representations count)
    files: int = 0  # distributions linked
    metadata: int = 0  # .metadata files
    written: int = 0  # paths whose bytes changed
    removed: int = 0  # paths that should not have been there
    unlinked: list[str] = field(default_factory=list)  # distributions the target cannot hold


@dataclass
class _Offer:
    """What files/ holds for one file: its distribution, and its metadata when separate."""

    metadata_sha256: str | None


class StaticTree:
    """Writes the static tree into a target, from the database and the rendered pages."""

    def __init__(self, catalog: Catalog, pages: SimplePages, target: StaticTarget) -> None:
        self.catalog = catalog
        self.pages = pages
        self.target = target
        # The files each project offered when last written: when a project stops offering
        # one (quarantine, deletion), its URL is withdrawn unless another project offers it.
        self._files_of: dict[tuple[int, str], set[FileKey]] = {}
        self._warned = False

    # ---------------------------------------------------------------- one change

    def write_root(self, index: IndexInfo) -> int:
        """Write an index's project list; the number of paths changed."""
        return self._put_pages(page_paths(index.name), self.pages.root(index.id, index.name))

    def write_project(self, index: IndexInfo, name: NormalizedName) -> int:
        """Write a project's pages and files, or withdraw them when it is gone; the number of
        paths changed. Files it no longer offers are withdrawn unless another project (of
        any index: a file URL is shared) still offers them, as `routes/files.py` decides."""
        changed = 0
        key = (index.id, name)
        pages = self.pages.project(index.id, index.name, name)
        offered_here = set() if pages is None else self._offered_by(index.id, name)
        candidates = self._files_of.get(key, set()) | offered_here
        self._files_of[key] = offered_here
        offers = self._offers(candidates)
        metadata = self._metadata(offers.values())
        # Files before the page that links them, and the page before the files it stopped
        # linking go: a client never follows a link of the tree to a 404.
        for file_key in sorted(offers):
            changed += self._put_file(file_key, offers[file_key], metadata)
        if pages is None:
            for path in page_paths(index.name, name):
                changed += self.target.remove(path)
        else:
            changed += self._put_pages(page_paths(index.name, name), pages)
        for file_key in sorted(candidates - offers.keys()):
            for path in file_paths(*file_key):
                changed += self.target.remove(path)
        return changed

    # ---------------------------------------------------------------- the whole tree

    def rebuild(self, indexes: Iterable[IndexInfo]) -> RebuildReport:
        """Write the whole tree for `indexes` and remove every other path from the target."""
        report = RebuildReport()
        expected: set[str] = set()
        self._files_of.clear()
        # Pages are rendered first and written after the files they link (see write_project).
        pages: list[tuple[tuple[str, str], PageSet]] = []
        for index in indexes:
            pages.append((page_paths(index.name), self.pages.root(index.id, index.name)))
            for name, files in self.catalog.files_by_project(index.id).items():
                project = self.pages.project(index.id, index.name, name)
                if project is None:
                    continue  # deleted since the list was read
                pages.append((page_paths(index.name, name), project))
                self._files_of[(index.id, name)] = files
        offers = self._offers(set().union(*self._files_of.values()))
        metadata = self._metadata(offers.values())
        for file_key, offer in sorted(offers.items()):
            dist, meta = file_paths(*file_key)
            if self.target.link_blob(dist, file_key[0]):
                report.files += 1
                expected.add(dist)
            else:
                report.unlinked.append(dist)
            if offer.metadata_sha256 is not None and offer.metadata_sha256 in metadata:
                report.written += self.target.put(meta, metadata[offer.metadata_sha256])
                report.metadata += 1
                expected.add(meta)
        for paths, page_set in pages:
            report.written += self._put_pages(paths, page_set)
            expected.update(paths)
            report.pages += len(paths)
        for path in list(self.target.paths()):
            if path not in expected:
                report.removed += self.target.remove(path)
        return report

    # ---------------------------------------------------------------- helpers

    def _put_pages(self, paths: tuple[str, str], pages: PageSet) -> int:
        html, json = paths
        return self.target.put(html, pages.html.body) + self.target.put(json, pages.json.body)

    def _put_file(self, file_key: FileKey, offer: _Offer, metadata: Mapping[str, bytes]) -> int:
        dist, meta = file_paths(*file_key)
        if not self.target.link_blob(dist, file_key[0]) and not self._warned:
            self._warned = True  # once: with blobs in a bucket, it holds none of them
            log.warning(
                "static tree %s holds no distributions (%s): serve /files/ from keyless",
                self.target.describe(),
                dist,
            )
        data = metadata.get(offer.metadata_sha256 or "")
        if data is None:
            return self.target.remove(meta)
        return self.target.put(meta, data)

    def _offered_by(self, index_id: int, name: NormalizedName) -> set[FileKey]:
        snapshot = self.catalog.load_project(index_id, name)
        if snapshot is None or snapshot.project.status == "quarantined":
            return set()  # PEP 792: a quarantined project offers nothing to download
        return {(row.sha256, row.filename) for row in snapshot.files}

    def _offers(self, wanted: set[FileKey]) -> dict[FileKey, _Offer]:
        """Those of `wanted` some project that is not quarantined offers, with their metadata."""
        return {key: _Offer(meta) for key, meta in self.catalog.offered_files(wanted).items()}

    def _metadata(self, offers: Iterable[_Offer]) -> dict[str, bytes]:
        return self.catalog.core_metadata(
            o.metadata_sha256 for o in offers if o.metadata_sha256 is not None
        )


class StaticWriter:
    """Keeps a `StaticTree` current inside the server, on one thread of its own.

    `changed` is what the use cases' `on_change` calls after a commit (after the page cache
    is invalidated, so the page rendered here is the new one); it only queues the project and
    wakes the thread, so an upload or a yank waits for no file write. The thread first
    rebuilds the whole tree (changes made while the server was down, or by an older server,
    show), then writes each queued project and its index's list as soon as it is queued.

    With a `feed`, the thread also looks every `POLL_SECONDS` for changes made by other server
    processes (other workers, other machines on the same database, the admin commands), so a
    tree kept in each machine's own folder is current too, whichever process made the change
    and whether or not this one gets requests. Its own changes come back through the feed as
    well; writing a page again with the same bytes writes nothing.
    """

    RETRY_SECONDS = 1.0
    POLL_SECONDS = 0.25

    def __init__(
        self,
        tree: StaticTree,
        index_admin: IndexAdmin,
        indexes: Mapping[str, IndexInfo],
        feed: ChangeFeed | None = None,
    ) -> None:
        self.tree = tree
        self._index_admin = index_admin
        self._feed = feed
        # The server's own mapping, which the web UI adds new indexes to.
        self._indexes = indexes
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._projects: set[tuple[int, NormalizedName]] = set()
        self._roots: set[int] = set()
        self._rebuild = True
        self._closing = False
        self._thread: threading.Thread | None = None

    def changed(self, index_id: int, project: str) -> None:
        with self._lock:
            self._projects.add((index_id, NormalizedName(project)))
        self._wake.set()

    def index_added(self, index: IndexInfo) -> None:
        with self._lock:
            self._roots.add(index.id)
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keyless-static", daemon=True)
        self._thread.start()
        self._wake.set()  # the first rebuild, without waiting for a change

    def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self.POLL_SECONDS if self._feed is not None else None)
            self._wake.clear()
            if self._closing:
                return
            self._take_others_changes()
            with self._lock:
                rebuild, projects, roots = self._rebuild, self._projects, self._roots
                self._rebuild, self._projects, self._roots = False, set(), set()
            try:
                self._write(rebuild, projects, roots)
            except Exception:  # a full disk now: keep the work and try again
                log.exception("static tree %s: write failed; retrying", self.tree.target.describe())
                with self._lock:
                    self._rebuild |= rebuild
                    self._projects |= projects
                    self._roots |= roots
                if not self._closing:
                    threading.Event().wait(self.RETRY_SECONDS)
                    self._wake.set()

    def _take_others_changes(self) -> None:
        if self._feed is None:
            return
        try:
            changed = self._feed.poll()
        except Exception:  # the database did not answer: the next poll catches up
            return
        with self._lock:
            if changed is None:  # too far behind to tell what
                self._rebuild = True
                return
            for change in changed:
                if change.project is None:  # an index made or changed: its list
                    self._roots.add(change.index_id)
                else:
                    # This process's cached page may be the one from before the change.
                    self.tree.pages.invalidate(change.index_id, change.project)
                    self._projects.add((change.index_id, NormalizedName(change.project)))

    def _write(
        self, rebuild: bool, projects: set[tuple[int, NormalizedName]], roots: set[int]
    ) -> None:
        by_id = {index.id: index for index in list(self._indexes.values())}
        if any(index_id not in by_id for index_id in roots):  # made by another process
            by_id = {index.id: index for index in self._index_admin.load_indexes().values()}
        if rebuild:
            report = self.tree.rebuild(by_id.values())
            log.info(
                "static tree %s: %d pages, %d files, %d removed",
                self.tree.target.describe(),
                report.pages,
                report.files,
                report.removed,
            )
        for index_id, name in sorted(projects):
            if index_id in by_id:
                self.tree.write_project(by_id[index_id], name)
        for index_id in sorted(roots | {index_id for index_id, _ in projects}):
            if index_id in by_id:
                self.tree.write_root(by_id[index_id])


def static_writer(
    settings: Settings,
    blobs: BlobStore,
    catalog: Catalog,
    pages: SimplePages,
    index_admin: IndexAdmin,
    indexes: Mapping[str, IndexInfo],
) -> StaticWriter | None:
    """The server's writer of the static tree, when `[static]` names a place for it."""
    target = open_static_target(settings, blobs)
    if target is None:
        return None
    tree = StaticTree(catalog, pages, target)
    # Its own feed (a cursor of its own over the database the catalog reads): the app's feed
    # is taken by the app's page cache.
    return StaticWriter(tree, index_admin, indexes, ChangeFeed(catalog.engine))
