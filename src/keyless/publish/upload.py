"""Publishing a set of distributions: check, look up by hash, upload in parallel, report.
How a caller gets the credentials and calls `publish`: the example in keyless.publish.

Rules, in order: every file is read and hashed before anything is sent; the index is asked
what it already has (PEP 691, by sha256) — identical bytes count as done, different bytes
under the same name fail loudly and are never sent; wheels go up in parallel, each release's
sdist only after all of its wheels are on the index; failures worth retrying (transport
errors, 5xx, 429) are retried with jittered exponential backoff honouring Retry-After, and
after an ambiguous failure the index is asked again by hash (the earlier attempt may have
landed). Uploading the identical file twice is harmless, which is what makes retrying safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from keyless.publish.credentials import Credentials, RenewableCredentials
from keyless.publish.errors import PublishError
from keyless.publish.indexclient import (
    IndexClient,
    RemoteFile,
    TransientError,
    new_http_client,
    redact,
    retry_after_seconds,
    server_message,
)
from keyless.publish.localdist import LocalDist, load_dist
from keyless.publish.options import DEFAULTS, Retrier, UploadOptions
from keyless.publish.reporter import FileResult, Reporter


@dataclass
class PublishResult:
    """The outcome of one `publish` call: a FileResult per distribution, in the given order."""

    files: list[FileResult]
    ok: bool
    repository_url: str | None = None  # redacted
    dry_run: bool = False
    # How the files went up: "session" (PEP 694, keyless.publish.session), "legacy", or None
    # when nothing was sent (dry run, everything already there).
    upload_api: str | None = "legacy"
    sessions: list[dict[str, Any]] = field(default_factory=list)  # Session.to_json()

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "repository_url": self.repository_url,
            "dry_run": self.dry_run,
            "upload_api": self.upload_api,
            "sessions": self.sessions,
            "files": [result.to_json() for result in self.files],
        }


def result_document(result: PublishResult | None, error: PublishError | None) -> dict[str, Any]:
    """What `keyless publish --json` prints: the result, when publishing got that far, and the
    error that stopped it (or failed a dry run: no credentials); with an error `ok` is false.
    """
    document = result.to_json() if result is not None else {"ok": False, "files": []}
    if error is not None:
        document["ok"] = False
        document["error"] = error.to_json()
    return document


def load_all(paths: Iterable[Path | LocalDist]) -> list[LocalDist]:
    """Read every distribution, or none: all problems are reported together.

    Items already loaded (LocalDist) are taken as they are. The same path given twice counts
    once. Raises PublishError when there is nothing to publish, a file cannot be read, or two
    different files have the same name.
    """
    dists: list[LocalDist] = []
    problems: list[PublishError] = []
    seen_paths: set[Path] = set()
    by_name: dict[str, Path] = {}
    for item in paths:
        path = item.path if isinstance(item, LocalDist) else Path(item)
        resolved = path.resolve()
        if resolved in seen_paths:
            continue
        seen_paths.add(resolved)
        try:
            dist = item if isinstance(item, LocalDist) else load_dist(path)
        except PublishError as exc:
            problems.append(exc)
            continue
        if dist.filename in by_name:
            problems.append(
                PublishError(
                    f"{dist.filename} is given twice: {by_name[dist.filename]} and {path}.",
                    hint="publish one of them.",
                    context={"file": str(path)},
                )
            )
            continue
        by_name[dist.filename] = Path(path)
        dists.append(dist)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise PublishError(
            f"{len(problems)} distributions cannot be published:\n"
            + "\n".join(f"  - {p.message}" for p in problems),
            hint=problems[0].hint,
            context={"files": ", ".join(p.context.get("file", "?") for p in problems)},
        )
    if not dists:
        raise PublishError(
            "no distributions to publish.",
            hint="build them first (`python -m build`), or name the files.",
        )
    return dists


def read_dists(paths: Sequence[Path | LocalDist], reporter: Reporter) -> list[LocalDist]:
    """`load_all`, announced: a stage and one line per file. Raises as `load_all`."""
    reporter.stage(f"Checking {len(paths)} distribution file(s)")
    dists = load_all(paths)
    for dist in dists:
        reporter.info(f"{dist.filename}: {dist.name} {dist.version}, {dist.size} bytes")
    return dists


def _conflict(dist: LocalDist, remote_sha256: str) -> str:
    return (
        f"{dist.filename} is already on the index with DIFFERENT content: index sha256 "
        f"{remote_sha256}, local sha256 {dist.sha256}. A filename can never be reused: "
        "bump the version (or give the wheel a build tag) and rebuild."
    )


class _Release:
    """One publish run's shared state and steps."""

    def __init__(
        self,
        client: IndexClient,
        credentials: Credentials,
        reporter: Reporter,
        options: UploadOptions,
    ) -> None:
        self.client = client
        self.credentials = credentials
        self.reporter = reporter
        self.options = options
        self.retry = Retrier(options, reporter.warning)

    def recheck(self, dist: LocalDist) -> str | None:
        """After an ambiguous answer: the sha256 the index now has for this filename (None
        when it has none, or cannot say right now)."""
        try:
            entry = self.client.existing_entries(dist.normalized).get(dist.filename)
        except PublishError:
            return None
        return entry.sha256 if entry is not None else None

    def upload(self, dist: LocalDist) -> FileResult:
        """Upload one file with retries; never raises (a failure is a FileResult)."""
        self.reporter.file_started(dist.filename, dist.size)

        def progress(sent: int) -> None:
            self.reporter.file_progress(dist.filename, sent)

        retried = 0
        renewed = False
        while True:
            try:
                # Before every file and attempt: minted credentials renew here near expiry.
                token = self.credentials.token()
            except PublishError as exc:
                return _file(dist, "failed", exc.message)
            retry_after: float | None = None
            try:
                response = self.client.upload(dist, token, on_progress=progress)
            except TransientError as exc:
                # The connection broke, but the upload may have landed: ask before resending.
                if (settled := self._settled(dist, fresh=False)) is not None:
                    return settled
                problem = exc.message
            except PublishError as exc:
                return _file(dist, "failed", exc.message)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return _file(dist, "uploaded")
                message = server_message(response)
                if (
                    status in (401, 403)
                    and not renewed
                    and isinstance(self.credentials, RenewableCredentials)
                ):
                    # The index may have expired or revoked the minted token early (clock
                    # skew, a shorter life than announced): mint once more and try again.
                    renewed = True
                    self.reporter.warning(
                        f"{dist.filename}: the index refused the upload token ({message}); "
                        "minting a new one"
                    )
                    try:
                        self.credentials.renew()
                    except PublishError as exc:
                        return _file(dist, "failed", f"{message}; re-minting: {exc.message}")
                    continue
                if status in (400, 409, 429) or status >= 500:
                    # Decided by hash, never by the error text: identical bytes there = done.
                    fresh = retried == 0 and status < 500
                    if (settled := self._settled(dist, fresh=fresh)) is not None:
                        return settled
                if status < 500 and status != 429:
                    return _file(dist, "failed", message)
                problem = message
                retry_after = retry_after_seconds(response)
            retried += 1
            if retried > self.options.retries:
                return _file(dist, "failed", f"{problem} (gave up after {retried} attempts)")
            self.retry.wait(retried, retry_after, dist.filename, problem)

    def _settled(self, dist: LocalDist, *, fresh: bool) -> FileResult | None:
        """The file's outcome if the index now lists its name: identical = success ("exists"
        when someone else put it there, else "uploaded"), different = conflict."""
        remote = self.recheck(dist)
        if remote is None:
            return None
        if remote == dist.sha256:
            return _file(dist, "exists" if fresh else "uploaded")
        return _file(dist, "failed", _conflict(dist, remote))


def _file(
    dist: LocalDist, status: str, error: str | None = None, *, url: str | None = None
) -> FileResult:
    return FileResult(dist.filename, status, url, dist.sha256, dist.size, error)


def publish(
    paths: Sequence[Path | LocalDist],
    upload_url: str,
    *,
    credentials: Credentials,
    reporter: Reporter,
    http: httpx.Client | None = None,
    options: UploadOptions = DEFAULTS,
    dry_run: bool = False,
    simple_url: str | None = None,
    session: bool = True,
) -> PublishResult:
    """Upload `paths` to `upload_url`; see the module docstring for the rules.

    `session`: when the index offers PEP 694 upload sessions, publish through them (all files
    at once, atomically; keyless.publish.session); False, or an index without them: the
    legacy API, file by file.

    `paths` may hold dists already read with `load_dist`/`load_all` (a caller that checks
    them before fetching credentials need not read them twice).
    `credentials` are the caller's: fetched before every file, never closed here.
    `options`: files at once, retries, and whether an identical file already on the index is
    done (keyless.publish.options). `dry_run` reads, checks and looks up, and uploads nothing.
    Raises PublishError before uploading anything when a file cannot be read or the index
    cannot be asked what it has; per-file failures are FileResults, not exceptions.
    """
    if all(isinstance(p, LocalDist) for p in paths):
        dists = load_all(paths)  # checked by the caller already
    else:
        dists = read_dists(paths, reporter)
    owned = http is None
    client_http = new_http_client() if http is None else http
    try:
        client = IndexClient(upload_url, http=client_http, simple_url=simple_url)
        if session and not dry_run:
            from keyless.publish.session import publish_in_sessions

            through_session = publish_in_sessions(
                dists, client, credentials=credentials, reporter=reporter, options=options
            )
            if through_session is not None:
                return through_session
        return _publish(_Release(client, credentials, reporter, options), dists, dry_run=dry_run)
    finally:
        if owned:
            client_http.close()


def _publish(release: _Release, dists: list[LocalDist], *, dry_run: bool) -> PublishResult:
    client, reporter = release.client, release.reporter
    parallel = release.options.parallel
    results: dict[str, FileResult] = {}

    def finish(result: FileResult) -> None:
        results[result.filename] = result
        reporter.file_done(result)

    reporter.stage(f"Asking {redact(client.simple_url)} which files it has")
    remote: dict[str, dict[str, RemoteFile]] = {}
    for project in dict.fromkeys(d.normalized for d in dists):
        remote[project] = client.existing_entries_retrying(project, release.retry)
    pending: list[LocalDist] = []
    for dist in dists:
        entry = remote[dist.normalized].get(dist.filename)
        if entry is None or entry.sha256 is None:
            # Unknown or listed without a hash: let the index decide on upload.
            pending.append(dist)
        elif entry.sha256 != dist.sha256:
            finish(_file(dist, "failed", _conflict(dist, entry.sha256), url=entry.url))
        elif release.options.skip_existing:
            reporter.info(f"{dist.filename}: already on the index (same sha256), skipped")
            finish(_file(dist, "exists", url=entry.url))
        else:
            identical = f"{dist.filename} is already on the index (identical)."
            finish(_file(dist, "failed", identical, url=entry.url))

    if dry_run:
        for dist in pending:
            finish(_file(dist, "would-upload"))
        return _result(client, dists, results, dry_run=True)

    wheels = [d for d in pending if not d.is_sdist]
    sdists = [d for d in pending if d.is_sdist]
    if pending:
        reporter.stage(
            f"Uploading {len(pending)} file(s) to {redact(client.upload_url)}"
            + (f" ({min(parallel, len(pending))} at a time)" if len(pending) > 1 else "")
        )
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="keyless-upload") as pool:
        for result in pool.map(release.upload, wheels):
            finish(result)
        # The sdist goes last, and only when every wheel of its release made it: a release
        # with a broken wheel must not become installable from source instead.
        ready: list[LocalDist] = []
        for dist in sdists:
            broken = [
                other.filename
                for other in dists
                if other.release == dist.release
                and other is not dist
                and other.filename in results
                and not results[other.filename].ok
            ]
            if broken:
                finish(
                    _file(
                        dist,
                        "failed",
                        f"not uploaded because {', '.join(broken)} of the same release failed; "
                        "the sdist goes last so a broken release gets none.",
                    )
                )
            else:
                ready.append(dist)
        for result in pool.map(release.upload, ready):
            finish(result)
    return _result(client, dists, results, dry_run=False)


def _result(
    client: IndexClient, dists: list[LocalDist], results: dict[str, FileResult], *, dry_run: bool
) -> PublishResult:
    _fill_urls(client, dists, results)
    ordered = [results[d.filename] for d in dists]
    return PublishResult(
        files=ordered,
        ok=all(r.ok for r in ordered),
        repository_url=redact(client.upload_url),
        dry_run=dry_run,
        upload_api=None if dry_run else "legacy",
    )


def _fill_urls(client: IndexClient, dists: list[LocalDist], results: dict[str, FileResult]) -> None:
    """Where the index serves each uploaded file (one lookup per project; best effort, as a
    caching index may not list a fresh file yet)."""
    wanted = [d for d in dists if results[d.filename].status == "uploaded"]
    for project in dict.fromkeys(d.normalized for d in wanted):
        try:
            listed = client.existing_entries(project)
        except PublishError:
            continue
        for dist in wanted:
            entry = listed.get(dist.filename)
            if dist.normalized == project and entry is not None and entry.sha256 == dist.sha256:
                results[dist.filename].url = entry.url
