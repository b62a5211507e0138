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

`stage()` uploads without publishing and returns a `Staged` handle (stage URLs, `publish()`,
`cancel()`): `keyless release` install-tests the release from its stage URL in between.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from keyless.publish.credentials import Credentials, RenewableCredentials
from keyless.publish.errors import PublishError
from keyless.publish.indexclient import (
    IndexClient,
    RemoteFile,
    TransientError,
    _basic,
    redact,
    retry_after_seconds,
    server_message,
)
from keyless.publish.localdist import LocalDist
from keyless.publish.reporter import FileResult, Reporter
from keyless.publish.upload import Backoff, PublishResult

UPLOAD_V2 = "application/vnd.pypi.upload.v2+json"
PROBLEM = "application/problem+json"
META = {"api-version": "2.0"}
MECHANISM = "http-post-bytes"
# Answers to the create request that mean "no Upload 2.0 here" (PyPI, pypiserver, devpi...).
_NOT_HERE = frozenset({404, 405, 406, 415, 501})
# Ask for more time when a session has less than this left (one more large file may take it).
EXTEND_MARGIN = 10 * 60
EXTEND_FOR = 60 * 60
# How long to wait for a session or file the index is still processing (202 Accepted).
PROCESSING_LIMIT = 10 * 60.0
_CHUNK = 256 * 1024


def upload_root(upload_url: str) -> str | None:
    """The Upload 2.0 root that belongs to a legacy upload URL (`…/legacy/` → `…/upload/2.0/`);
    None when the URL's last segment is not `legacy` (such an index is used the legacy way)."""
    parts = urlsplit(upload_url)
    path = parts.path.rstrip("/")
    head, _, last = path.rpartition("/")
    if last != "legacy":
        return None
    return urlunsplit((parts.scheme, parts.netloc, f"{head}/upload/2.0/", "", ""))


def _media_type(response: httpx.Response) -> str:
    kind: str = response.headers.get("content-type", "")
    return kind.split(";", 1)[0].strip().lower()


def is_upload_v2_answer(response: httpx.Response) -> bool:
    """Whether `response` comes from an index speaking PEP 694 (see the module docstring)."""
    if response.status_code in _NOT_HERE:
        return False
    return _media_type(response) in (UPLOAD_V2, PROBLEM)


def problem_message(response: httpx.Response) -> str:
    """What the index said, from an RFC 9457 problem document (`status title: detail`, then each
    of `errors` the detail does not already say); other bodies as `server_message` reads them."""
    if _media_type(response) != PROBLEM:
        return server_message(response)
    try:
        document = response.json()
    except ValueError:
        return server_message(response)
    if not isinstance(document, dict):
        return server_message(response)
    title = str(document.get("title") or response.reason_phrase or "").strip()
    detail = str(document.get("detail") or "").strip()
    text = f"{response.status_code} {title}".strip()
    if detail:
        text += f": {detail}"
    errors = document.get("errors")
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        message = str(error.get("message") or "").strip()
        if not message or message == detail:
            continue
        source = error.get("source")
        text += f"\n  {source}: {message}" if source else f"\n  {message}"
    return text[:2000]


class SessionFailure(PublishError):
    """A session step failed. `resumable`: the failure was the index's or the network's
    (retries exhausted), so the session is worth keeping for the next run to resume."""

    def __init__(
        self,
        message: str,
        *,
        resumable: bool = False,
        hint: str | None = None,
        context: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, hint=hint, context=context)
        self.resumable = resumable


class SessionStopped(SessionFailure):
    """A file upload given up because the session is (an interrupt, another file failed)."""


# ----------------------------------------------------------------------------- requests


@dataclass
class _Answer:
    response: httpx.Response
    # An earlier attempt of this request may have reached the index (it broke, or it got a
    # 5xx): an answer like 409 may be about that attempt's own effect.
    ambiguous: bool


class _Transport:
    """Authenticated requests with the legacy path's retry rules."""

    def __init__(
        self,
        http: httpx.Client,
        credentials: Credentials,
        reporter: Reporter,
        *,
        retries: int,
        backoff: Backoff,
        stop: threading.Event,
    ) -> None:
        self.http = http
        self.credentials = credentials
        self.reporter = reporter
        self.retries = retries
        self.backoff = backoff
        self.stop = stop
        self.rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._renew_lock = threading.Lock()

    def send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        document: dict[str, Any] | None = None,
        body: Callable[[], Iterator[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        stoppable: bool = False,
    ) -> _Answer:
        """The index's answer to the request (any status but 5xx/429, which are retried).

        `body` makes a fresh byte stream for each attempt. `stoppable`: give up (SessionStopped)
        once `stop` is set (file uploads, when the session is being given up). Raises
        SessionFailure (resumable) when retries are exhausted, SessionFailure when no token can
        be had.
        """
        attempt = 0
        ambiguous = False
        renewed = False
        while True:
            if stoppable and self.stop.is_set():
                raise SessionStopped(f"{what}: stopped.")
            try:
                token = self.credentials.token()
            except PublishError as exc:
                raise SessionFailure(exc.message, hint=exc.hint) from exc
            request_headers = {"Authorization": _basic(token), "Accept": f"{UPLOAD_V2}, {PROBLEM}"}
            if document is not None:
                request_headers["Content-Type"] = UPLOAD_V2
            request_headers.update(headers or {})
            retry_after: float | None = None
            try:
                response = self.http.request(
                    method,
                    url,
                    json=document,
                    content=body() if body is not None else None,
                    headers=request_headers,
                )
            except httpx.TransportError as exc:
                if "certificate" in str(exc).lower():
                    raise SessionFailure(
                        f"{redact(url)}: {exc}",
                        hint="the index's TLS certificate is not trusted: pass its CA with "
                        "--cert (or SSL_CERT_FILE).",
                    ) from exc
                problem = f"{type(exc).__name__}: {exc}"
                ambiguous = True
            else:
                status = response.status_code
                if status in (401, 403) and not renewed:
                    renewed = True  # once per request, as the legacy path does per file
                    if self._renew(response, what, token):
                        continue
                # 501 Not Implemented will not change on a retry (it also means "no Upload
                # 2.0 here" to the create request).
                if (status < 500 and status != 429) or status == 501:
                    return _Answer(response, ambiguous)
                problem = problem_message(response)
                retry_after = retry_after_seconds(response)
                ambiguous = ambiguous or status >= 500
            attempt += 1
            if attempt > self.retries:
                raise SessionFailure(
                    f"{what}: {problem} (gave up after {attempt} attempts)",
                    resumable=True,
                    context={"url": redact(url)},
                )
            delay = self.backoff.delay(attempt, retry_after, self.rng)
            self.reporter.warning(
                f"{what}: {problem}; retry {attempt} of {self.retries} in {delay:.1f} s"
            )
            self.backoff.sleep(delay)

    def _renew(self, response: httpx.Response, what: str, refused: str) -> bool:
        """Mint a new token when the index refused the minted one `refused` (clock skew, a
        shorter life than announced); whether to try again. Parallel requests refused at once
        mint one new token between them."""
        if not isinstance(self.credentials, RenewableCredentials):
            return False
        with self._renew_lock:
            try:
                if self.credentials.token() != refused:
                    return True  # another request renewed it meanwhile
                self.reporter.warning(
                    f"{what}: the index refused the upload token ({problem_message(response)}); "
                    "minting a new one"
                )
                self.credentials.renew()
            except PublishError as exc:
                self.reporter.warning(f"re-minting failed: {exc.message}")
                return False
        return True


def _expect(answer: _Answer, statuses: tuple[int, ...], what: str) -> dict[str, Any]:
    """The JSON body of an expected answer; else SessionFailure with the index's words."""
    response = answer.response
    if response.status_code not in statuses:
        raise SessionFailure(
            f"{what}: {problem_message(response)}",
            context={"url": redact(str(response.request.url)), "status": str(response.status_code)},
        )
    if response.status_code == 204:
        return {}
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SessionFailure(f"{what}: the index answered {response.status_code} without JSON.")
    return document


# ------------------------------------------------------------------------------ sessions


@dataclass
class RemoteSessionFile:
    status: str
    link: str


@dataclass
class SessionStatus:
    """A publishing session's status body, as far as the client needs it."""

    url: str
    status: str
    links: dict[str, str]
    expires_at: float | None
    files: dict[str, RemoteSessionFile]

    @classmethod
    def parse(cls, document: dict[str, Any], fallback_url: str) -> SessionStatus:
        links = {str(k): str(v) for k, v in (document.get("links") or {}).items() if v}
        files: dict[str, RemoteSessionFile] = {}
        for name, entry in (document.get("files") or {}).items():
            if isinstance(entry, dict):
                files[str(name)] = RemoteSessionFile(
                    str(entry.get("status", "")), str(entry.get("link", ""))
                )
        return cls(
            url=links.get("session", fallback_url),
            status=str(document.get("status", "")),
            links=links,
            expires_at=_timestamp(document.get("expires-at")),
            files=files,
        )


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


class Session:
    """One publishing session on the index: one release (name, version) and its files."""

    def __init__(
        self,
        transport: _Transport,
        name: str,
        version: str,
        status: SessionStatus,
        *,
        resumed: bool,
    ) -> None:
        self.transport = transport
        self.name = name
        self.version = version
        self.state = status
        self.resumed = resumed
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.state.url

    @property
    def stage_url(self) -> str | None:
        """The stage preview's simple index (PEP 503/691), when the index offers one."""
        return self.state.links.get("stage")

    def link(self, name: str) -> str:
        """The session's link `name` as the index gave it (clients never build them)."""
        link = self.state.links.get(name)
        if not link:
            raise SessionFailure(
                f"the index's session for {self.name} {self.version} has no {name!r} link."
            )
        return link

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "url": self.url,
            "stage": self.stage_url,
            "status": self.state.status,
        }

    def refresh(self) -> SessionStatus:
        answer = self.transport.send("GET", self.url, f"{self.name} {self.version}: session")
        self.state = SessionStatus.parse(_expect(answer, (200,), "reading the session"), self.url)
        return self.state

    def keep_alive(self) -> None:
        """Extend the session when it has less than EXTEND_MARGIN left (PEP: clients watch
        `expires-at`); a warning when the index offers no extension."""
        with self._lock:
            expires = self.state.expires_at
            if expires is None or expires - time.time() > EXTEND_MARGIN:
                return
            extend = self.state.links.get("extend")
            if extend is None:
                self.transport.reporter.warning(
                    f"the session for {self.name} {self.version} expires in "
                    f"{max(0, int(expires - time.time()))} s and cannot be extended"
                )
                return
            answer = self.transport.send(
                "POST",
                extend,
                f"{self.name} {self.version}: extending the session",
                document={"meta": META, "extend-for": EXTEND_FOR},
            )
            self.state = SessionStatus.parse(
                _expect(answer, (200,), "extending the session"), self.url
            )

    def wait_while_processing(self) -> SessionStatus:
        """Poll while the session is `processing` (a deferred publish), up to PROCESSING_LIMIT."""
        deadline = time.monotonic() + PROCESSING_LIMIT
        while self.state.status == "processing" and time.monotonic() < deadline:
            time.sleep(1.0)
            self.refresh()
        return self.state

    def publish(self) -> None:
        """Publish every file of the session at once. Raises SessionFailure (the session stays
        as it was: editable, or open for a resume after a transient failure)."""
        self.keep_alive()
        what = f"publishing {self.name} {self.version}"
        link = self.link("publish")
        answer = self.transport.send("POST", link, what, document={"meta": META})
        status = answer.response.status_code
        if status in (200, 201, 202):
            self.state = SessionStatus.parse(_expect(answer, (status,), what), self.url)
        elif answer.ambiguous:
            self.refresh()  # the earlier attempt may have published it
        else:
            _expect(answer, (201,), what)
        if self.state.status == "processing":
            self.wait_while_processing()
        if self.state.status != "published":
            raise SessionFailure(
                f"{what}: the session is {self.state.status or 'in an unknown state'}, not "
                "published.",
                resumable=self.state.status in ("processing", "open"),
            )

    def cancel(self) -> bool:
        """Cancel the session (its files are discarded); whether the index confirmed it.
        Never raises: canceling is what runs when something else already failed."""
        try:
            answer = self.transport.send(
                "DELETE", self.url, f"canceling the session for {self.name} {self.version}"
            )
        except PublishError as exc:
            self.transport.reporter.warning(f"could not cancel {redact(self.url)}: {exc.message}")
            return False
        status = answer.response.status_code
        if status in (200, 204) or (status == 404 and answer.ambiguous):
            self.state.status = "canceled"
            return True
        self.transport.reporter.warning(
            f"could not cancel {redact(self.url)}: {problem_message(answer.response)}"
        )
        return False

    def delete_file(self, filename: str, link: str) -> None:
        answer = self.transport.send("DELETE", link, f"{filename}: removing it from the session")
        if answer.response.status_code not in (200, 204, 404):
            _expect(answer, (204,), f"{filename}: removing it from the session")
        self.state.files.pop(filename, None)


def open_session(transport: _Transport, root: str, name: str, version: str) -> Session | None:
    """Create the session for `name` `version` at `root`, or resume the live one (409); None
    when `root` does not speak Upload 2.0. Raises SessionFailure when the index refuses."""
    what = f"{name} {version}: creating the upload session"
    answer = transport.send(
        "POST", root, what, document={"meta": META, "name": name, "version": version}
    )
    response = answer.response
    if not is_upload_v2_answer(response):
        return None
    if response.status_code == 201:
        document = _expect(answer, (201,), what)
        fallback = response.headers.get("location", root)
        return Session(
            transport, name, version, SessionStatus.parse(document, fallback), resumed=False
        )
    location = response.headers.get("location")
    if response.status_code == 409 and location:
        session = Session(
            transport,
            name,
            version,
            SessionStatus(location, "", {"session": location}, None, {}),
            resumed=not answer.ambiguous,
        )
        session.refresh()
        session.wait_while_processing()
        return session
    _expect(answer, (201,), what)
    return None  # not reached: _expect raised


# ---------------------------------------------------------------------------- uploading


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
        return _expect(answer, (201, 202), what)

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
        _expect(answer, (200, 201, 204), what)
        what = f"{dist.filename}: completing its upload"
        complete = links.get("complete")
        if not complete:
            raise SessionFailure(f"{dist.filename}: the index gave no link to complete it.")
        answer = transport.send("POST", complete, what, document={"meta": META}, stoppable=True)
        status = answer.response.status_code
        if status in (200, 201):
            state = str(_expect(answer, (status,), what).get("status", ""))
        elif status == 202:
            state = "processing"  # deferred: the index checks the file, we poll
        elif answer.ambiguous:
            state = self._file_status(file_link)  # the earlier attempt may have completed it
        else:
            _expect(answer, (201,), what)  # raises with the index's reason
            state = ""
        deadline = time.monotonic() + PROCESSING_LIMIT
        while state == "processing" and time.monotonic() < deadline:
            time.sleep(retry_after_seconds(answer.response) or 1.0)
            state = self._file_status(file_link)
        if state != "completed":
            raise SessionFailure(f"{dist.filename}: its upload is {state or 'not completed'}.")

    def _file_status(self, link: str) -> str:
        answer = self.session.transport.send("GET", link, f"{self.dist.filename}: status")
        return str(_expect(answer, (200,), f"{self.dist.filename}: status").get("status", ""))


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
    parallel: int = 4
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
            workers = min(self.parallel, len(self.sessions))
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
    parallel: int = 4,
    retries: int = 5,
    backoff: Backoff | None = None,
    skip_existing: bool = True,
) -> Staged | None:
    """Upload `dists` into one session per release on `client`'s index, without publishing.

    None when the index has no Upload 2.0 (nothing was sent), or when a file has different
    bytes under a name the index already has, or (`skip_existing` False) the same bytes: the
    legacy path reports that file as it always has. When a file
    fails, the sessions are canceled (or left open when the failure was transient) and the
    result says so (`ok` False). An interrupt cancels them, then propagates. Raises
    PublishError when the index cannot say what it has or refuses a session.
    """
    root = upload_root(client.upload_url)
    if root is None:
        return None
    stop = threading.Event()
    transport = _Transport(
        client.http, credentials, reporter, retries=retries, backoff=backoff or Backoff(), stop=stop
    )
    remote = {p: _lookup(transport, client, p) for p in dict.fromkeys(d.normalized for d in dists)}
    results: dict[str, FileResult] = {}
    pending: dict[tuple[str, str], list[LocalDist]] = {}
    for dist in dists:
        entry = remote[dist.normalized].get(dist.filename)
        if (
            entry is not None
            and entry.sha256 is not None
            and (entry.sha256 != dist.sha256 or not skip_existing)
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
    staged = Staged(client, reporter, parallel)
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
    parallel: int = 4,
    retries: int = 5,
    backoff: Backoff | None = None,
    skip_existing: bool = True,
) -> PublishResult | None:
    """`stage`, then publish what was staged: the release is visible entirely or not at all.
    None when nothing was sent and the legacy API is to be used (see `stage`)."""
    staged = stage(
        dists,
        client,
        credentials=credentials,
        reporter=reporter,
        parallel=parallel,
        retries=retries,
        backoff=backoff,
        skip_existing=skip_existing,
    )
    if staged is None:
        return None
    if not staged.ok or not staged.sessions:
        return staged.result()
    return staged.publish()


def _open_all(
    transport: _Transport, root: str, releases: list[list[LocalDist]], staged: Staged
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
    workers = min(staged.parallel, len(releases) - 1)
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


def _lookup(transport: _Transport, client: IndexClient, project: str) -> dict[str, RemoteFile]:
    """The index's files for `project`, retrying transient failures as uploads do."""
    attempt = 0
    while True:
        try:
            return client.existing_entries(project)
        except TransientError as exc:
            attempt += 1
            if attempt > transport.retries:
                raise
            delay = transport.backoff.delay(attempt, exc.retry_after, transport.rng)
            transport.reporter.warning(
                f"looking up {project}: {exc.message}; retry {attempt} of "
                f"{transport.retries} in {delay:.1f} s"
            )
            transport.backoff.sleep(delay)


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
