"""Publishing through PEP 694 ("Upload 2.0") sessions: every file of a release is uploaded into a
session, then the session is published in one step (atomic on the index), or canceled.

Implements PEP 694 as of its revision of 2026-07-29 (python/peps commit f24540568, "PEP 694:
Update Post-History", peps/pep-0694.rst), as keyless' index serves it.

Discovery needs no configuration: the upload URL's last segment `legacy` becomes `upload/2.0/`
and the session-create request is POSTed there. An answer that is not PEP 694's (404, 405, 406,
415, 501, or a body that is neither the Upload 2.0 media type nor a problem document) means the
index has no Upload 2.0, and the caller uses the legacy API. Every other link is taken from the
index's answers, never built.

The rules, in order:
- the index is asked first which files it has (by sha256, as the legacy path does): identical
  files count as done and are not sent; a file with different bytes under a published name
  leaves the choice to the legacy path (which fails that file loudly);
- one session per release (name, version); a 409 on create means a live session for it exists
  (an earlier run was killed): it is resumed. Its `completed` files are reused only when its
  stage page lists them with the local sha256; its other files are deleted and sent again;
- every file of every session is sent in parallel (bounded), streamed from disk, then
  completed; then each session is published;
- requests are retried as the legacy upload retries (transport errors, 5xx, 429 with
  Retry-After); a refused Trusted Publishing token is re-minted once;
- on a failure the sessions are canceled, so nothing is ever half-published, unless the
  failure was transient (the index or the network, retries exhausted): then they are left open
  and the next run resumes them. An interrupt (KeyboardInterrupt) cancels them.

The protocol itself (requests, retries, the session resource) is `keyless.publish.upload2`.

`stage()` uploads without publishing and returns a `Staged` handle (stage URLs, `publish()`,
`cancel()`): `keyless release` install-tests the release from its stage URL in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from keyless.publish.credentials import Credentials
from keyless.publish.errors import PublishError
from keyless.publish.indexclient import (
    IndexClient,
    RemoteFile,
    redact,
    retry_after_seconds,
)
from keyless.publish.localdist import LocalDist
from keyless.publish.options import DEFAULTS, UploadOptions
from keyless.publish.reporter import FileResult, Reporter
from keyless.publish.upload import PublishResult
from keyless.publish.upload2 import (
    MECHANISM,
    META,
    PROCESSING_LIMIT,
    Session,
    SessionFailure,
    SessionStopped,
    Transport,
    expect,
    open_session,
    upload_root,
)

# Bytes read from a file per write to the index (memory held per upload).
_CHUNK = 256 * 1024


def _file_result(dist: LocalDist, status: str, error: str | None = None) -> FileResult:
    return FileResult(dist.filename, status, None, dist.sha256, dist.size, error)


class _Upload:
    """Sends one file into its session: create the file upload session, POST the bytes,
    complete it. Never raises: the outcome is a FileResult (status "staged" on success)."""

    def __init__(self, session: Session, dist: LocalDist, stop: threading.Event) -> None:
        self.session = session
        self.dist = dist
        self.stop = stop
        self.resumable = False
        self.stopped = False

    def run(self) -> FileResult:
        dist = self.dist
        reporter = self.session.transport.reporter
        reporter.file_started(dist.filename, dist.size)
        try:
            self.session.keep_alive()
            self._send()
        except SessionStopped as exc:
            self.stopped = True
            return _file_result(dist, "failed", exc.message)
        except SessionFailure as exc:
            self.resumable = exc.resumable
            return _file_result(dist, "failed", exc.message)
        except PublishError as exc:
            return _file_result(dist, "failed", exc.message)
        return _file_result(dist, "staged")

    def _create(self) -> dict[str, Any]:
        dist, session = self.dist, self.session
        what = f"{dist.filename}: creating its upload"
        link = session.link("upload")
        request = {
            "meta": META,
            "filename": dist.filename,
            "size": dist.size,
            # sha256 is the one the PEP requires; the index checks the bytes against it.
            "hashes": {"sha256": dist.sha256},
            "mechanism": MECHANISM,
        }
        answer = session.transport.send("POST", link, what, document=request, stoppable=True)
        if answer.response.status_code == 409 and answer.ambiguous:
            # Our own earlier attempt created it: start that file over.
            session.refresh()
            existing = session.state.files.get(dist.filename)
            if existing is not None and existing.link:
                session.delete_file(dist.filename, existing.link)
            answer = session.transport.send("POST", link, what, document=request, stoppable=True)
        return expect(answer, (201, 202), what)

    def _send(self) -> None:
        dist, session = self.dist, self.session
        transport = session.transport
        created = self._create()
        links = created.get("links") or {}
        mechanism = created.get("mechanism") or {}
        file_link = str(links.get("file-upload-session") or "")
        bytes_url = mechanism.get("file_url") if isinstance(mechanism, dict) else None
        if not bytes_url or not file_link:
            raise SessionFailure(f"{dist.filename}: the index gave no URL to send the file to.")
        reporter = transport.reporter

        def body() -> Iterator[bytes]:
            sent = 0
            reporter.file_progress(dist.filename, 0)
            with dist.path.open("rb") as fp:
                while chunk := fp.read(_CHUNK):
                    if self.stop.is_set():
                        raise SessionStopped(f"{dist.filename}: stopped.")
                    yield chunk
                    sent += len(chunk)
                    reporter.file_progress(dist.filename, sent)
            if sent != dist.size:
                raise PublishError(
                    f"{dist.filename} changed on disk while uploading.",
                    context={"file": str(dist.path)},
                )

        what = f"{dist.filename}: sending its bytes"
        answer = transport.send(
            "POST",
            str(bytes_url),
            what,
            body=body,
            stoppable=True,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(dist.size),
            },
        )
        expect(answer, (200, 201, 204), what)
        what = f"{dist.filename}: completing its upload"
        complete = links.get("complete")
        if not complete:
            raise SessionFailure(f"{dist.filename}: the index gave no link to complete it.")
        answer = transport.send("POST", complete, what, document={"meta": META}, stoppable=True)
        status = answer.response.status_code
        if status in (200, 201):
            state = str(expect(answer, (status,), what).get("status", ""))
        elif status == 202:
            state = "processing"  # deferred: the index checks the file, we poll
        elif answer.ambiguous:
            state = self._file_status(file_link)  # the earlier attempt may have completed it
        else:
            expect(answer, (201,), what)  # raises with the index's reason
            state = ""
        deadline = time.monotonic() + PROCESSING_LIMIT
        while state == "processing" and time.monotonic() < deadline:
            time.sleep(retry_after_seconds(answer.response) or 1.0)
            state = self._file_status(file_link)
        if state != "completed":
            raise SessionFailure(f"{dist.filename}: its upload is {state or 'not completed'}.")

    def _file_status(self, link: str) -> str:
        answer = self.session.transport.send("GET", link, f"{self.dist.filename}: status")
        return str(expect(answer, (200,), f"{self.dist.filename}: status").get("status", ""))


# ------------------------------------------------------------------------------ a release


@dataclass
class Staged:
    """Files uploaded into sessions, not yet published: `publish()` or `cancel()` them.

    `files` are the outcomes in the order given ("staged", "exists" or "failed"); `ok` when
    none failed. `sessions` is empty when every file was already on the index; `session_of`
    maps each filename sent (or reused) to its session.
    """

    client: IndexClient
    reporter: Reporter
    options: UploadOptions = DEFAULTS
    sessions: list[Session] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)
    session_of: dict[str, Session] = field(default_factory=dict)
    resumable: bool = False
    published: bool = False

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    def result(self) -> PublishResult:
        """The outcome as `publish` reports it: ok only once every session is published."""
        return PublishResult(
            files=list(self.files),
            ok=self.ok and all(s.state.status == "published" for s in self.sessions),
            repository_url=redact(self.client.upload_url),
            upload_api="session" if self.sessions else None,
            sessions=[s.to_json() for s in self.sessions],
        )

    def publish(self) -> PublishResult:
        """Publish every session, one after the other. A failure cancels the sessions not yet
        published (unless it was transient: then they stay open for a rerun to resume).
        An interrupt cancels them too, then propagates."""
        if not self.ok:
            raise PublishError("cannot publish: some files of the release failed.")
        if not self.sessions:
            return self.result()
        names = ", ".join(f"{s.name} {s.version}" for s in self.sessions)
        self.reporter.stage(f"Publishing {names}")
        try:
            # Releases are independent: their sessions publish side by side.
            workers = min(self.options.parallel, len(self.sessions))
            with ThreadPoolExecutor(workers, thread_name_prefix="keyless-publish") as pool:
                outcomes = list(pool.map(self._publish_one, self.sessions))
        except BaseException:
            self.cancel()
            raise
        failures = [failure for failure in outcomes if failure is not None]
        if failures:
            self._unpublished("not published: " + "; ".join(f.message for f in failures))
            if all(f.resumable for f in failures):
                self._left_open([s for s in self.sessions if s.state.status != "published"])
            else:
                self.cancel()
            return self.result()
        self.published = True
        _fill_urls(self.client, self.files)
        return self.result()

    def _publish_one(self, session: Session) -> SessionFailure | None:
        try:
            session.publish()
        except SessionFailure as exc:
            self.reporter.error(exc)
            return exc
        published = [f for f in self.files if self.session_of.get(f.filename) is session]
        for item in published:
            item.status = "uploaded"
        self.reporter.info(
            f"published {session.name} {session.version} ({len(published)} file(s) at once): "
            f"{redact(session.url)}"
        )
        return None

    def cancel(self) -> None:
        """Cancel every session not published yet: what they hold never becomes visible."""
        for session in self.sessions:
            if session.state.status in ("published", "canceled"):
                continue
            if session.cancel():
                self.reporter.info(
                    f"canceled the session for {session.name} {session.version}: nothing of "
                    "it was published"
                )
        self._unpublished("not published: the session was canceled")

    def _unpublished(self, why: str) -> None:
        for item in self.files:
            if item.status == "staged":
                item.status = "failed"
                item.error = why

    def _left_open(self, sessions: Sequence[Session]) -> None:
        for session in sessions:
            self.reporter.warning(
                f"the session for {session.name} {session.version} is left open: run again "
                f"to resume it ({redact(session.url)})"
            )


def _fill_urls(client: IndexClient, files: list[FileResult]) -> None:
    """Where the index serves each file just published (best effort, one lookup a project)."""
    wanted = [f for f in files if f.status == "uploaded"]
    projects: dict[str, list[FileResult]] = {}
    for item in wanted:
        if item.filename.endswith(".whl"):
            name = parse_wheel_filename(item.filename)[0]
        else:
            name = parse_sdist_filename(item.filename)[0]
        projects.setdefault(canonicalize_name(name), []).append(item)
    for project, items in projects.items():
        try:
            listed = client.existing_entries(project)
        except PublishError:
            continue
        for item in items:
            entry = listed.get(item.filename)
            if entry is not None and entry.sha256 == item.sha256:
                item.url = entry.url


def stage(
    dists: Sequence[LocalDist],
    client: IndexClient,
    *,
    credentials: Credentials,
    reporter: Reporter,
    options: UploadOptions = DEFAULTS,
) -> Staged | None:
    """Upload `dists` into one session per release on `client`'s index, without publishing.

    None when the index has no Upload 2.0 (nothing was sent), or when a file has different
    bytes under a name the index already has, or (`options.skip_existing` False) the same
    bytes: the legacy path reports that file as it always has. When a file
    fails, the sessions are canceled (or left open when the failure was transient) and the
    result says so (`ok` False). An interrupt cancels them, then propagates. Raises
    PublishError when the index cannot say what it has or refuses a session.
    """
    root = upload_root(client.upload_url)
    if root is None:
        return None
    parallel = options.parallel
    stop = threading.Event()
    transport = Transport(client.http, credentials, reporter, options, stop=stop)
    projects = dict.fromkeys(d.normalized for d in dists)
    remote = {p: client.existing_entries_retrying(p, transport.retry) for p in projects}
    results: dict[str, FileResult] = {}
    pending: dict[tuple[str, str], list[LocalDist]] = {}
    for dist in dists:
        entry = remote[dist.normalized].get(dist.filename)
        if (
            entry is not None
            and entry.sha256 is not None
            and (entry.sha256 != dist.sha256 or not options.skip_existing)
        ):
            reporter.info(
                f"{dist.filename} is already on the index: no upload session, the legacy "
                "upload reports it"
            )
            return None
        if entry is not None and entry.sha256 == dist.sha256:
            results[dist.filename] = _file_result(dist, "exists")
            results[dist.filename].url = entry.url
        else:
            pending.setdefault(dist.release, []).append(dist)
    staged = Staged(client, reporter, options)
    uploads: list[_Upload] = []
    releases = list(pending.values())
    try:
        if releases and not _open_all(transport, root, releases, staged):
            reporter.info("no upload sessions (PEP 694) on this index: legacy upload, file by file")
            return None
        for session, members in zip(staged.sessions, releases, strict=True):
            word = "Resuming the open" if session.resumed else "Opened an"
            reporter.stage(
                f"{word} upload session for {session.name} {session.version}: {redact(session.url)}"
            )
            _reconcile(session, members, client, results)
            for dist in members:
                staged.session_of[dist.filename] = session
                if dist.filename not in results:
                    uploads.append(_Upload(session, dist, stop))
        for dist in dists:
            if results.get(dist.filename) is not None and results[dist.filename].status == "exists":
                reporter.info(f"{dist.filename}: already on the index (same sha256), skipped")
                reporter.file_done(results[dist.filename])
        if uploads:
            reporter.stage(
                f"Uploading {len(uploads)} file(s) into the session"
                + (f" ({min(parallel, len(uploads))} at a time)" if len(uploads) > 1 else "")
            )
        _run_all(uploads, parallel, stop, results)
        staged.files = [results[d.filename] for d in dists]
        failed = [u for u in uploads if results[u.dist.filename].status == "failed"]
        if failed:
            staged.resumable = all(u.resumable for u in failed)
            if staged.resumable:
                staged._unpublished("not published: other files failed; a rerun resumes")
                staged._left_open(staged.sessions)
            else:
                staged.cancel()
    except BaseException as exc:
        # An interrupt, or a session refused: nothing half-done may stay behind.
        stop.set()
        if not (isinstance(exc, SessionFailure) and exc.resumable):
            staged.files = [results.get(d.filename) or _file_result(d, "staged") for d in dists]
            staged.cancel()
        raise
    return staged


def publish_in_sessions(
    dists: Sequence[LocalDist],
    client: IndexClient,
    *,
    credentials: Credentials,
    reporter: Reporter,
    options: UploadOptions = DEFAULTS,
) -> PublishResult | None:
    """`stage`, then publish what was staged: the release is visible entirely or not at all.
    None when nothing was sent and the legacy API is to be used (see `stage`)."""
    staged = stage(dists, client, credentials=credentials, reporter=reporter, options=options)
    if staged is None:
        return None
    if not staged.ok or not staged.sessions:
        return staged.result()
    return staged.publish()


def _open_all(
    transport: Transport, root: str, releases: list[list[LocalDist]], staged: Staged
) -> bool:
    """Open (or resume) a session per release into `staged.sessions`, in order; False when the
    index has no Upload 2.0 (asked with the first release; the others are opened side by side).
    Raises the first failure, with every session opened so far in `staged.sessions`."""

    def open_one(members: list[LocalDist]) -> Session | None:
        return open_session(transport, root, members[0].name, members[0].version)

    first = open_one(releases[0])
    if first is None:
        return False
    staged.sessions.append(first)
    if len(releases) == 1:
        return True
    failure: BaseException | None = None
    workers = min(staged.options.parallel, len(releases) - 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="keyless-session") as pool:
        for future in [pool.submit(open_one, members) for members in releases[1:]]:
            try:
                session = future.result()
            except BaseException as exc:  # kept until every opened session is known
                failure = failure or exc
                continue
            if session is None:  # it answered as Upload 2.0 a moment ago
                failure = failure or PublishError(
                    f"{redact(root)} stopped answering as Upload 2.0."
                )
            else:
                staged.sessions.append(session)
    if failure is not None:
        raise failure
    return True


def _run_all(
    uploads: list[_Upload], parallel: int, stop: threading.Event, results: dict[str, FileResult]
) -> None:
    """Every upload on a bounded pool, outcomes reported in order. The first definitive
    failure stops the others: the session will be canceled, so the rest need not be sent."""
    if not uploads:
        return
    reporter = uploads[0].session.transport.reporter
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="keyless-session")
    try:
        futures = [pool.submit(upload.run) for upload in uploads]
        for upload, future in zip(uploads, futures, strict=True):
            result = future.result()
            if result.status == "failed":
                if upload.stopped:
                    result.error = "not sent: another file failed, so the session is canceled"
                elif not upload.resumable:
                    stop.set()
            results[result.filename] = result
            reporter.file_done(result)
    except BaseException:
        stop.set()  # the workers stop at their next chunk or request
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _reconcile(
    session: Session, members: list[LocalDist], client: IndexClient, results: dict[str, FileResult]
) -> None:
    """Make a resumed session hold only what can be reused as it is: a `completed` file that
    the stage page lists with the local sha256 is kept (staged in `results`); every other file
    in the session is deleted, to be sent again (or not at all, when not in this release)."""
    if not session.state.files:
        return
    reporter = session.transport.reporter
    local = {d.filename: d for d in members}
    listed: dict[str, RemoteFile] = {}
    if session.stage_url and any(f.status == "completed" for f in session.state.files.values()):
        preview = IndexClient(client.upload_url, http=client.http, simple_url=session.stage_url)
        try:
            listed = preview.existing_entries(session.name)
        except PublishError as exc:
            reporter.warning(f"cannot read the session's stage page: {exc.message}")
    for filename, remote in list(session.state.files.items()):
        dist = local.get(filename)
        entry = listed.get(filename)
        if (
            dist is not None
            and remote.status == "completed"
            and entry is not None
            and entry.sha256 == dist.sha256
        ):
            reporter.info(f"{filename}: already in the session (same sha256), reused")
            results[filename] = _file_result(dist, "staged")
            reporter.file_done(results[filename])
            continue
        why = "not in this release" if dist is None else f"{remote.status or 'unknown'} there"
        reporter.info(f"{filename}: {why}; removed from the session")
        session.delete_file(filename, remote.link)
