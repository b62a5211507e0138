"""Talking to an index: what files it has (by hash), uploading one file, releases that exist;
and, on a keyless index, its owners' API (yank, unyank, project status).

Works with any index speaking the legacy upload API and the simple API: keyless, PyPI,
TestPyPI, and others (for those whose simple URL cannot be derived from the upload URL, pass
it). Duplicates are decided by comparing sha256 hashes from the simple API (PEP 691 JSON,
falling back to the PEP 503 HTML page), never by reading error texts.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import re
import secrets
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import httpx
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

import keyless
from keyless.publish.errors import PublishError
from keyless.publish.localdist import LocalDist, upload_fields
from keyless.publish.options import Retrier

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
# JSON preferred, HTML accepted: an index without PEP 691 still lists its hashes in anchors.
SIMPLE_ACCEPT = f"{SIMPLE_JSON}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
USER_AGENT = f"keyless/{keyless.__version__} httpx/{httpx.__version__}"
PYPI_UPLOAD_HOSTS = {"upload.pypi.org": "pypi.org", "test.pypi.org": "test.pypi.org"}
_CHUNK = 256 * 1024
_MAX_MESSAGE = 2000
# Query parameters whose values are credentials in some index URLs (artifact stores, proxies).
_SECRET_PARAMS = re.compile(r"token|password|passwd|secret|key|auth|signature|sig", re.I)
# Path segments that are API tokens (PyPI's `pypi-…`, ours `keyless-…`, Gemfury-style paths).
_TOKEN_SEGMENT = re.compile(r"^(?:pypi|keyless)-[A-Za-z0-9_\-]{8,}\Z")


# ------------------------------------------------------------------------------------ URLs


def redact(url: str) -> str:
    """`url` fit to print: no userinfo, no credential-like query values or path tokens.

    Never raises: a string that is not a URL comes back with anything token-like masked.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unprintable URL>"
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = "/".join(
        "***" if _TOKEN_SEGMENT.match(segment) else segment for segment in parts.path.split("/")
    )
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def check_upload_url(upload_url: str) -> str:
    """The upload URL to POST to, with the mistakes every client has met caught early.

    Adds the trailing slash a `.../legacy` URL lacks (indexes redirect, and a redirected POST
    loses its body). Raises PublishError for a URL that does not parse, is not http(s),
    carries credentials (httpx would send them instead of the upload token), or is a simple
    (download) URL, which answers 405 to an upload.
    """
    shown = redact(upload_url)
    try:
        parts = urlsplit(upload_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        raise PublishError(
            f"the upload URL {shown} does not parse: {exc}.",
            hint="pass the index's upload URL, e.g. https://upload.pypi.org/legacy/",
            context={"url": shown},
        ) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PublishError(
            f"{shown} is not an http(s) URL.",
            hint="pass the index's upload URL, e.g. https://upload.pypi.org/legacy/",
            context={"url": shown},
        )
    if "@" in parts.netloc:
        raise PublishError(
            f"{shown} carries credentials; they are not used (and would end up in logs).",
            hint="drop them from the URL and pass the token in KEYLESS_TOKEN, or let Trusted "
            "Publishing mint one.",
            context={"url": shown},
        )
    path = parts.path or "/"
    if path.rstrip("/").endswith("/simple"):
        upload = urlunsplit(
            (parts.scheme, parts.netloc, path.rstrip("/")[: -len("simple")] + "legacy/", "", "")
        )
        raise PublishError(
            f"{shown} is the index's simple (download) URL; uploads go elsewhere.",
            hint=f"use its upload URL, for keyless and warehouse: {redact(upload)}",
            context={"url": shown},
        )
    if path.endswith("/legacy"):
        path += "/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def simple_url_for(upload_url: str) -> str:
    """The simple API root that belongs to `upload_url`.

    ".../X/legacy/" -> ".../X/simple/"; PyPI's and TestPyPI's upload hosts map to their simple
    hosts. Raises PublishError when it cannot be derived (pass `simple_url` explicitly).
    """
    parts = urlsplit(upload_url)
    host = (parts.hostname or "").lower()
    if host in PYPI_UPLOAD_HOSTS and parts.path.rstrip("/") == "/legacy":
        return f"https://{PYPI_UPLOAD_HOSTS[host]}/simple/"
    path = parts.path.rstrip("/")
    if path.endswith("/legacy") or path == "/legacy":
        prefix = path[: -len("legacy")]
        return urlunsplit((parts.scheme, parts.netloc, f"{prefix}simple/", "", ""))
    raise PublishError(
        f"cannot tell the simple API URL of {redact(upload_url)}.",
        hint="pass the simple URL too (keyless publish --simple-url URL).",
        context={"url": redact(upload_url)},
    )


def keyless_index_of(upload_url: str) -> tuple[str, str] | None:
    """The server URL and index name a keyless upload URL (https://HOST/INDEX/legacy/) names;
    None when `upload_url` is not one."""
    match = re.fullmatch(r"(?P<base>https?://.+?)/(?P<index>[^/]+)/legacy/?", upload_url)
    return (match["base"], match["index"]) if match else None


def new_http_client(
    *,
    ca_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> httpx.Client:
    """An httpx client for an index: our User-Agent, and `ca_file` (else SSL_CERT_FILE /
    SSL_CERT_DIR from `environ`, else the system's certifi bundle) as trusted CAs.

    Requests go over the standard library's connections (keyless.publish.transport: ~0.5 ms
    less CPU per request than httpx's own), except when the environment names proxies:
    then httpx's own transports speak to them, as they always did.

    The CAs are loaded on the first https request (loading them takes 40-110 ms, and a
    plain-http index never needs them), except that a CA file the caller names is loaded at
    once (one that cannot be read fails here), and so are the CAs when the environment names
    proxies (httpx gives its proxy transports the CAs when it makes them). Raises
    PublishError when the CA file or folder cannot be loaded: here, or on the first https
    request.
    """
    env = os.environ if environ is None else environ
    cafile = str(ca_file) if ca_file else env.get("SSL_CERT_FILE") or None
    capath = None if cafile else env.get("SSL_CERT_DIR") or None

    def tls_context() -> ssl.SSLContext:
        if not (cafile or capath):
            return httpx.create_ssl_context(verify=True, trust_env=True)
        try:
            return ssl.create_default_context(cafile=cafile, capath=capath)
        except (OSError, ssl.SSLError) as exc:
            raise PublishError(
                f"cannot load the CA certificates from {cafile or capath}: {exc}",
                hint="pass a PEM file of the CA that signed the index's certificate (--cert).",
            ) from exc

    options: dict[str, Any] = {
        "timeout": httpx.Timeout(timeout, connect=15.0),
        "headers": {"User-Agent": USER_AGENT},
        "trust_env": True,
    }
    if urllib.request.getproxies():
        return httpx.Client(verify=tls_context(), **options)
    from keyless.publish.transport import StdlibTransport

    if ca_file:
        context = tls_context()  # named by the caller: a file that cannot be read fails now
        return httpx.Client(transport=StdlibTransport(lambda: context), **options)
    return httpx.Client(transport=StdlibTransport(tls_context), **options)


# ---------------------------------------------------------------------------- HTTP errors


class TransientError(PublishError):
    """A failure worth retrying: a transport error or a 5xx/429 answer.

    ``retry_after`` is the delay the server asked for (seconds), if it asked.
    """

    retry_after: float | None
    status: int | None

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        context: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, hint=hint, context=context)
        self.retry_after = retry_after
        self.status = status


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """The `Retry-After` header in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def server_message(response: httpx.Response) -> str:
    """What the index said: `<status> <reason>` plus the JSON `message` or the body's text.

    Warehouse puts its message in the reason phrase, keyless in both, others only in the
    body; all are kept, deduplicated, so nothing the server said is lost.
    """
    status = response.status_code
    try:
        standard = HTTPStatus(status).phrase
    except ValueError:
        standard = ""
    reason = response.reason_phrase or standard
    pieces = [f"{status} {reason}".strip()]
    body = ""
    try:
        content = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        content = ""
    kind = response.headers.get("content-type", "")
    if "json" in kind:
        try:
            document = json.loads(content)
        except ValueError:
            document = None
        if isinstance(document, dict):
            message = document.get("message") or document.get("detail") or ""
            body = str(message)
            errors = document.get("errors")
            if isinstance(errors, list):
                body = "\n".join(
                    [body]
                    + [
                        f"{e.get('code', '')}: {e.get('description', '')}"
                        for e in errors
                        if isinstance(e, dict)
                    ]
                ).strip()
    elif "html" in kind:
        from keyless.publish.htmltext import visible_text

        body = visible_text(content)
    else:
        body = content.strip()
    # keyless' text bodies repeat the status line; say it once.
    body = body.removeprefix(f"{status} ").strip()
    if body and body not in reason:
        pieces.append(body)
    return ": ".join(pieces)[:_MAX_MESSAGE]


def _transport_error(exc: httpx.TransportError, url: str) -> PublishError:
    """A TransientError, except for an untrusted certificate: retrying cannot fix that."""
    shown = redact(url)
    text = str(exc) or type(exc).__name__
    message = f"{shown}: {type(exc).__name__}: {text}"
    if "certificate" in text.lower():
        return PublishError(
            message,
            hint="the index's TLS certificate is not trusted: pass its CA with --cert "
            "(or SSL_CERT_FILE).",
            context={"url": shown},
        )
    return TransientError(message, context={"url": shown})


def _raise_for_transient(response: httpx.Response, url: str) -> None:
    if response.status_code >= 500 or response.status_code == 429:
        shown = redact(url)
        raise TransientError(
            f"{shown}: {server_message(response)}",
            context={"url": shown, "status": str(response.status_code)},
            retry_after=retry_after_seconds(response),
            status=response.status_code,
        )


# ------------------------------------------------------------------------- the simple API


@dataclass(frozen=True)
class RemoteFile:
    """A file the index lists: its sha256 (None when the index gives none) and URL."""

    filename: str
    sha256: str | None
    url: str


def _filename_from_url(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def file_version(filename: str) -> Version | None:
    """The version in a wheel or sdist filename; None when it is neither."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


@dataclass(frozen=True)
class _Page:
    files: dict[str, RemoteFile]
    versions: list[str] | None  # PEP 700, when the index says


class IndexClient:
    """One index, seen through its upload URL (and its simple API)."""

    def __init__(self, upload_url: str, *, http: httpx.Client, simple_url: str | None = None):
        """Raises PublishError for an upload URL that cannot be right (see check_upload_url)
        or whose simple URL cannot be derived when none is given."""
        self.upload_url = check_upload_url(upload_url)
        self.simple_url = simple_url or simple_url_for(self.upload_url)
        if not self.simple_url.endswith("/"):
            self.simple_url += "/"
        self.http = http

    # ----------------------------------------------------------------- reading

    def project_url(self, project: str) -> str:
        return urljoin(self.simple_url, quote(canonicalize_name(project)) + "/")

    def _page(self, project: str, token: str | None = None) -> _Page | None:
        url = self.project_url(project)
        headers = {"Accept": SIMPLE_ACCEPT, "Cache-Control": "no-cache"}
        if token:
            headers["Authorization"] = basic_authorization(token)
        try:
            response = self.http.get(url, headers=headers, follow_redirects=True)
        except httpx.TransportError as exc:
            raise _transport_error(exc, url) from exc
        if response.status_code == 404:
            return None
        _raise_for_transient(response, url)
        if response.status_code in (401, 403) and token is None:
            raise PublishError(
                f"{redact(url)}: {server_message(response)}",
                hint="this index needs credentials to read its simple pages.",
                context={"url": redact(url), "status": str(response.status_code)},
            )
        if response.status_code != 200:
            raise PublishError(
                f"cannot list the files of {project!r}: {server_message(response)}",
                context={"url": redact(url), "status": str(response.status_code)},
            )
        base = str(response.url)
        if "json" in response.headers.get("content-type", ""):
            return _parse_json_page(response, base)
        return _parse_html_page(response.text, base)

    def existing_entries(self, project: str, *, token: str | None = None) -> dict[str, RemoteFile]:
        """Every file the index lists for `project` (filename -> RemoteFile); {} on 404.

        Raises TransientError (a PublishError) on transport errors and 5xx, PublishError on
        other unexpected answers.
        """
        page = self._page(project, token)
        return {} if page is None else page.files

    def existing_entries_retrying(self, project: str, retry: Retrier) -> dict[str, RemoteFile]:
        """`existing_entries`, with the run's retries of transient failures (TransientError
        once they are spent). Raises PublishError when the index cannot tell."""
        attempt = 0
        while True:
            try:
                return self.existing_entries(project)
            except TransientError as exc:
                attempt += 1
                if attempt > retry.options.retries:
                    raise
                retry.wait(attempt, exc.retry_after, f"looking up {project}", exc.message)

    def existing_files(self, project: str, *, token: str | None = None) -> dict[str, str]:
        """filename -> sha256 of the files the index has for `project` ({} on 404).

        Files listed without a sha256 are left out. Raises as `existing_entries`.
        """
        return {
            name: entry.sha256
            for name, entry in self.existing_entries(project, token=token).items()
            if entry.sha256
        }

    def version_exists(self, project: str, version: str) -> bool:
        """Whether the index has release `version` of `project` (with at least one file).

        Asks the JSON API (`…/pypi/<project>/<version>/json`), else the simple page's
        versions. Raises TransientError / PublishError as `existing_entries`.
        """
        if self._json_api_has(project, version):
            return True
        # A 404 there may just mean "no JSON API here": the simple page has the last word.
        page = self._page(project)
        if page is None:
            return False
        listed = set(page.versions or [])
        listed |= {str(v) for v in map(file_version, page.files) if v is not None}
        try:
            wanted = Version(version)
        except InvalidVersion:
            return version in listed
        return any(_same_version(v, wanted) for v in listed)

    def _json_api_has(self, project: str, version: str) -> bool:
        base = self.simple_url.rstrip("/")
        if not base.endswith("/simple"):
            return False
        name = quote(canonicalize_name(project))
        url = f"{base[: -len('simple')]}pypi/{name}/{quote(version)}/json"
        try:
            response = self.http.get(
                url, headers={"Accept": "application/json"}, follow_redirects=True
            )
        except httpx.TransportError:
            return False  # the simple page decides
        return response.status_code == 200

    # ----------------------------------------------------------------- uploading

    def upload(
        self,
        dist: LocalDist,
        token: str,
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> httpx.Response:
        """POST `dist` to the upload URL as one streamed multipart request.

        The file is read in chunks as it is sent, never held in memory; `on_progress` gets
        the bytes of the file sent so far. Returns the index's answer whatever its status
        (the caller decides). Raises TransientError for transport errors.
        """
        boundary = _boundary()
        head, tail = _multipart_frame(upload_fields(dist), dist.filename, boundary)
        length = len(head) + dist.size + len(tail)

        def body() -> Iterator[bytes]:
            yield head
            sent = 0
            with dist.path.open("rb") as fp:
                while chunk := fp.read(_CHUNK):
                    yield chunk
                    sent += len(chunk)
                    if on_progress is not None:
                        on_progress(sent)
            if sent != dist.size:
                # The file changed since it was hashed: abort rather than send a body that
                # disagrees with its digests (the index would refuse it anyway).
                raise PublishError(
                    f"{dist.filename} changed on disk while uploading.",
                    context={"file": str(dist.path)},
                )
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
            "Authorization": basic_authorization(token),
            "Accept": "application/json",
        }
        try:
            return self.http.post(self.upload_url, content=body(), headers=headers)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.upload_url) from exc


# ------------------------------------------------------------------- the owners' API


class OwnersClient:
    """A keyless index's owners' API (`/INDEX/api/projects/…`), with an owner's API token.

    Each call returns the index's JSON answer, and raises PublishError with the status and
    the index's message when it refuses, or when it cannot be reached (not retried: these
    calls are made by a person, who sees the error at once).
    """

    def __init__(self, base_url: str, index: str, *, token: str, http: httpx.Client) -> None:
        self.api_url = f"{base_url.rstrip('/')}/{index}/api/projects/"
        self.http = http
        self._token = token

    def yank(self, project: str, version: str, reason: str = "") -> Any:
        return self._post(f"{project}/releases/{version}/yank", {"reason": reason})

    def unyank(self, project: str, version: str) -> Any:
        return self._post(f"{project}/releases/{version}/unyank", {})

    def set_status(self, project: str, status: str, reason: str = "") -> Any:
        return self._post(f"{project}/status", {"status": status, "reason": reason})

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        url = self.api_url + path
        try:
            response = self.http.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc, url) from exc
        if response.status_code != 200:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise PublishError(
                f"{response.status_code} {message}",
                context={"url": redact(url), "status": str(response.status_code)},
            )
        return response.json()


def _same_version(text: str, wanted: Version) -> bool:
    try:
        return Version(text) == wanted
    except InvalidVersion:
        return False


def _parse_json_page(response: httpx.Response, base: str) -> _Page:
    try:
        document: Any = response.json()
    except ValueError as exc:
        raise PublishError(
            f"{redact(base)} answered invalid JSON.", context={"url": redact(base)}
        ) from exc
    if not isinstance(document, dict):
        document = {}
    entries = document.get("files")
    files: dict[str, RemoteFile] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or "filename" not in entry:
            continue
        hashes = entry.get("hashes") or {}
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        url = urljoin(base, str(entry.get("url", "")))
        files[str(entry["filename"])] = RemoteFile(
            str(entry["filename"]), str(sha256).lower() if sha256 else None, url
        )
    versions = document.get("versions")
    return _Page(files, [str(v) for v in versions] if isinstance(versions, list) else None)


def _parse_html_page(text: str, base: str) -> _Page:
    from keyless.publish.htmltext import links

    files: dict[str, RemoteFile] = {}
    for href, label in links(text):
        url = urljoin(base, href)
        fragment = urlsplit(url).fragment
        sha256 = None
        if fragment.startswith("sha256="):
            sha256 = fragment[len("sha256=") :].lower()
        filename = label or _filename_from_url(url)
        files[filename] = RemoteFile(filename, sha256, url.split("#", 1)[0])
    return _Page(files, None)


def basic_authorization(token: str) -> str:
    """The Authorization header of an API token, as every upload API takes it (`__token__`)."""
    return "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode("ascii")


def _boundary() -> str:
    return "keyless-" + secrets.token_hex(16)


def _quote_param(value: str) -> str:
    # The HTML form-data rule for names and filenames: escape only what ends the quoted string.
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def _multipart_frame(
    fields: list[tuple[str, str]], filename: str, boundary: str
) -> tuple[bytes, bytes]:
    """Everything of a multipart/form-data body but the file's bytes: (before, after)."""
    delimiter = f"--{boundary}\r\n".encode()
    head = bytearray()
    for name, value in fields:
        head += delimiter
        head += f'Content-Disposition: form-data; name="{_quote_param(name)}"\r\n\r\n'.encode()
        head += value.encode("utf-8") + b"\r\n"
    head += delimiter
    head += (
        f'Content-Disposition: form-data; name="content"; filename="{_quote_param(filename)}"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return bytes(head), tail
