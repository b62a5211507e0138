"""The PEP 694 ("Upload 2.0") protocol as a client: finding an index's Upload 2.0 root, sending
its requests (retried, with renewed credentials), and the publishing session as a resource.

Implements PEP 694 as of its revision of 2026-07-29 (python/peps commit f24540568, "PEP 694:
Update Post-History", peps/pep-0694.rst). What is done with sessions — which files go into
which, resuming, cancelling — is `keyless.publish.session`'s.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from keyless.publish.credentials import Credentials, RenewableCredentials
from keyless.publish.errors import PublishError
from keyless.publish.indexclient import (
    basic_authorization,
    redact,
    retry_after_seconds,
    server_message,
)
from keyless.publish.options import Retrier, UploadOptions
from keyless.publish.reporter import Reporter

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
class Answer:
    response: httpx.Response
    # An earlier attempt of this request may have reached the index (it broke, or it got a
    # 5xx): an answer like 409 may be about that attempt's own effect.
    ambiguous: bool


class Transport:
    """Authenticated requests with the legacy path's retry rules."""

    def __init__(
        self,
        http: httpx.Client,
        credentials: Credentials,
        reporter: Reporter,
        options: UploadOptions,
        *,
        stop: threading.Event,
    ) -> None:
        self.http = http
        self.credentials = credentials
        self.reporter = reporter
        self.options = options  # its retries and backoff
        self.retry = Retrier(options, reporter.warning)
        self.stop = stop
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
    ) -> Answer:
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
            request_headers = {
                "Authorization": basic_authorization(token),
                "Accept": f"{UPLOAD_V2}, {PROBLEM}",
            }
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
                    return Answer(response, ambiguous)
                problem = problem_message(response)
                retry_after = retry_after_seconds(response)
                ambiguous = ambiguous or status >= 500
            attempt += 1
            if attempt > self.options.retries:
                raise SessionFailure(
                    f"{what}: {problem} (gave up after {attempt} attempts)",
                    resumable=True,
                    context={"url": redact(url)},
                )
            self.retry.wait(attempt, retry_after, what, problem)

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


def expect(answer: Answer, statuses: tuple[int, ...], what: str) -> dict[str, Any]:
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
            expires_at=timestamp_of(document.get("expires-at")),
            files=files,
        )


def timestamp_of(value: Any) -> float | None:
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
        transport: Transport,
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
        self.state = SessionStatus.parse(expect(answer, (200,), "reading the session"), self.url)
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
                expect(answer, (200,), "extending the session"), self.url
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
            self.state = SessionStatus.parse(expect(answer, (status,), what), self.url)
        elif answer.ambiguous:
            self.refresh()  # the earlier attempt may have published it
        else:
            expect(answer, (201,), what)
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
            expect(answer, (204,), f"{filename}: removing it from the session")
        self.state.files.pop(filename, None)


def open_session(transport: Transport, root: str, name: str, version: str) -> Session | None:
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
        document = expect(answer, (201,), what)
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
    expect(answer, (201,), what)
    return None  # not reached: expect raised


# ---------------------------------------------------------------------------- uploading
