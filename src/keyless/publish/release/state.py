"""What one release holds while its stages run (`Run`), and what it did (`ReleaseResult`).

`Run.stage` is how a stage reports: it numbers the stage, times it, records its outcome and
turns any failure into `StageFailed`, which ends the release.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from keyless.publish import notify, promote
from keyless.publish.credentials import Credentials, NoCredentials, resolve_credentials
from keyless.publish.errors import PublishError
from keyless.publish.indexclient import redact
from keyless.publish.localdist import LocalDist
from keyless.publish.project import ProjectInfo
from keyless.publish.reporter import FileResult, Reporter
from keyless.publish.upload import PublishResult, publish

if TYPE_CHECKING:
    from keyless.publish.session import Staged

MODES = ("promote", "publish")
# The stages in the order they run, for "[3/9] Building…"; the pipeline itself is
# `keyless.publish.release._pipeline`, which reads them top to bottom.
STAGES = (
    "project",
    "version",
    "build",
    "check",
    "staging",
    "install-test",
    "production",
    "notes",
    "notify",
)


@dataclass
class StageOutcome:
    name: str
    status: str  # "passed" | "failed" | "skipped"
    detail: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ReleaseResult:
    """What `release` did. `ok` is False when a stage failed: `failed_stage` and `error` say
    which and why. Notifications that failed are warnings, never a failed release."""

    ok: bool = False
    dry_run: bool = False
    project: str | None = None
    version: str | None = None
    stages: list[StageOutcome] = field(default_factory=list)
    failed_stage: str | None = None
    error: PublishError | None = None
    dist_dir: Path | None = None
    built: list[LocalDist] = field(default_factory=list)
    staging: list[FileResult] = field(default_factory=list)
    production: list[FileResult] = field(default_factory=list)
    production_method: str | None = None  # "promote" | "publish" | "session"
    # The PEP 694 upload session on production, when the release went through one:
    # Session.to_json() (its status URL, stage URL and final status).
    session: dict[str, Any] | None = None
    notes: str | None = None
    notes_file: Path | None = None
    notifications: list[notify.Delivery] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready; holds no secret."""
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "project": self.project,
            "version": self.version,
            "failed_stage": self.failed_stage,
            "error": None if self.error is None else self.error.to_json(),
            "stages": [stage.to_json() for stage in self.stages],
            "dist_dir": str(self.dist_dir) if self.dist_dir else None,
            "built": [
                {"filename": d.filename, "sha256": d.sha256, "size": d.size} for d in self.built
            ],
            "staging": [r.to_json() for r in self.staging],
            "production": [r.to_json() for r in self.production],
            "production_method": self.production_method,
            "session": self.session,
            "notes": self.notes,
            "notes_file": str(self.notes_file) if self.notes_file else None,
            "notifications": [
                {"channel": d.channel, "target": d.target, "ok": d.ok, "error": d.error}
                for d in self.notifications
            ],
        }


class StageFailed(Exception):
    def __init__(self, stage: str, error: PublishError) -> None:
        super().__init__(error.message)
        self.stage = stage
        self.error = error


def _stage_environ(environ: Mapping[str, str], which: str) -> Mapping[str, str]:
    specific = environ.get(f"KEYLESS_{which}_TOKEN")
    return {**environ, "KEYLESS_TOKEN": specific} if specific else environ


@dataclass
class Run:
    """One release's state, shared by the stages."""

    project_dir: Path
    staging_url: str
    production_url: str
    staging_simple: str
    production_simple: str
    mode: str
    trusted_publishing: str
    reporter: Reporter
    http: httpx.Client
    environ: Mapping[str, str]
    smoke: str | None
    dry_run: bool
    no_isolation: bool
    dist_dir: Path | None
    python: str
    result: ReleaseResult
    # Stage the release in a PEP 694 upload session on production when it offers them.
    use_session: bool = True
    staged: Staged | None = None  # that session, once the files are in it
    session_credentials: Credentials | None = None  # production's, kept until it is settled
    config: ProjectInfo | None = None
    notify_config: notify.NotifyConfig | None = None
    pair: promote.IndexPair | None = None
    located: bool = False
    version_checked: bool = False
    # The version is already on production: a re-run of a release that went out, which is a
    # no-op success if production holds exactly the files this build makes (decided by hash).
    already_released: bool = False

    @property
    def project(self) -> ProjectInfo:
        if self.config is None:  # pragma: no cover - the project stage runs first
            raise RuntimeError("the project stage has not run")
        return self.config

    @contextmanager
    def stage(self, name: str, title: str) -> Iterator[StageOutcome]:
        outcome = StageOutcome(name, "passed")
        number = STAGES.index(name) + 1
        self.reporter.stage(f"[{number}/{len(STAGES)}] {title}")
        started = time.monotonic()
        try:
            yield outcome
        except PublishError as exc:
            outcome.status = "failed"
            outcome.detail = exc.message.splitlines()[0]
            raise StageFailed(name, exc) from exc
        except Exception as exc:
            # Whatever broke, the release failed at this stage and is notified as such.
            error = PublishError(f"{name}: unexpected {type(exc).__name__}: {exc}")
            outcome.status = "failed"
            outcome.detail = error.message
            raise StageFailed(name, error) from exc
        finally:
            outcome.seconds = time.monotonic() - started
            self.result.stages.append(outcome)

    def skip(self, name: str, detail: str) -> None:
        self.reporter.info(f"{name}: {detail}")
        self.result.stages.append(StageOutcome(name, "skipped", detail))

    def locate(self) -> promote.IndexPair | None:
        if not self.located:
            self.pair = promote.locate(self.staging_url, self.production_url, http=self.http)
            self.located = True
        return self.pair

    def credentials(self, upload_url: str, which: str) -> Credentials:
        if self.dry_run:
            return NoCredentials(source="none (dry run)", reason="a dry run uploads nothing.")
        return resolve_credentials(
            upload_url,
            mode=self.trusted_publishing,
            http=self.http,
            reporter=self.reporter,
            environ=_stage_environ(self.environ, which),
        )

    @property
    def install_index(self) -> str:
        """Where the install test installs from: the session's stage preview, else staging."""
        if self.staged is not None and self.staged.sessions:
            stage_url = self.staged.sessions[0].stage_url
            if stage_url is None:
                raise PublishError(
                    f"{redact(self.production_url)} offers no stage preview of the session: "
                    "the release cannot be install-tested before it is published.",
                    hint="release with --no-session (staging index, then promotion).",
                )
            return stage_url
        return self.staging_simple

    def stage_in_session(self) -> Staged | None:
        """Upload the built files into a PEP 694 session on production, unpublished; None
        when production has no upload sessions (nothing was sent). Raises PublishError when
        a file was not accepted (the session is canceled then)."""
        from keyless.publish.indexclient import IndexClient
        from keyless.publish.session import stage

        credentials = self.credentials(self.production_url, "PRODUCTION")
        try:
            staged = stage(
                self.result.built,
                IndexClient(self.production_url, http=self.http, simple_url=self.production_simple),
                credentials=credentials,
                reporter=self.reporter,
            )
        except BaseException:
            credentials.close()
            raise
        if staged is None:
            credentials.close()
            return None
        self.staged = staged
        self.session_credentials = credentials
        self.result.staging = staged.files
        self.result.session = staged.sessions[0].to_json() if staged.sessions else None
        if not staged.ok:
            failed = [f for f in staged.files if not f.ok]
            raise PublishError(
                f"{len(failed)} file(s) not accepted into the upload session on "
                f"{redact(self.production_url)}:\n"
                + "\n".join(f"  - {f.filename}: {f.error}" for f in failed),
                context={"url": redact(self.production_url)},
            )
        return staged

    def settle_session(self) -> None:
        """After the release succeeded or failed: a session not published is canceled (its
        files never become visible); production's credentials are given up."""
        staged = self.staged
        if staged is not None:
            if not staged.published:
                staged.cancel()
            if staged.sessions:
                self.result.session = staged.sessions[0].to_json()
        if self.session_credentials is not None:
            self.session_credentials.close()
            self.session_credentials = None

    def publish(self, upload_url: str, which: str) -> PublishResult:
        """Publish the built files to `upload_url` (staging or production) with that stage's
        credentials. Raises PublishError when a file was not accepted."""
        credentials = self.credentials(upload_url, which)
        try:
            published = publish(
                self.result.built,  # read once, at the build
                upload_url,
                credentials=credentials,
                reporter=self.reporter,
                http=self.http,
                dry_run=self.dry_run,
                session=self.use_session,
            )
        finally:
            credentials.close()
        if not published.ok:
            failed = [f for f in published.files if not f.ok]
            raise PublishError(
                f"{len(failed)} file(s) not accepted by {redact(upload_url)}:\n"
                + "\n".join(f"  - {f.filename}: {f.error}" for f in failed),
                context={"url": redact(upload_url)},
            )
        return published
