"""`release()`: the staged release pipeline in one call.

    result = release(Path("."), staging_url="https://idx/test/legacy/",
                     production_url="https://idx/prod/legacy/", reporter=reporter)

Stages, in order; the first that fails ends the release, and production is touched only after
staging passed:

1. project    read pyproject.toml: name, version, `[tool.keyless]` (version-scheme, notify);
2. version    PEP 440 (SemVer-shaped with `version-scheme = "semver"`); on a git tag, the tag
              is the version; not on production yet and newer than its newest live release
              (a dynamic version is checked right after the build, before any upload);
3. build      `python -m build` (sdist, then the wheel from the sdist) into a fresh folder;
4. check      `keyless check` rules on the built files, with the production index's policy;
5. staging    publish the files to the staging index;
6. install-test  a fresh virtual environment installs `name==version` from the staging index
              ONLY (`--index-url`, no extra index: what the release needs must be installable
              from staging, so its dependencies must be there too — that is what the test
              proves), imports every top-level module of the wheel, checks the installed
              version, and runs the optional smoke command;
7. production `promote`: the staging index's keyless server puts the very same files (same
              sha256, no bytes copied) on the production index; when the two are not indexes
              of one keyless server, the same files are published there instead (said so);
              `publish`: the same files are published to production;
8. notes      the release's section of the changelog (see `keyless.publish.changelog`);
9. notify     webhook / Slack / email, on success and on failure (see `keyless.publish.notify`).

Credentials come from `keyless.publish.credentials` for each index separately, so Trusted
Publishing mints a token per index; for API tokens, KEYLESS_STAGING_TOKEN and
KEYLESS_PRODUCTION_TOKEN (a user's token is scoped to one index) take precedence over
KEYLESS_TOKEN for their stage. Promotion uses the production credentials.

The build, the install and the smoke command run without the release's credentials in their
environment (tokens, the CI's OIDC request variables, SMTP password): the code being released
never sees them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from keyless.publish import changelog, notify, promote, versioning
from keyless.publish.credentials import Credentials, resolve_credentials
from keyless.publish.errors import PublishError
from keyless.publish.indexclient import (
    IndexClient,
    check_upload_url,
    file_version,
    new_http_client,
    redact,
    simple_url_for,
)
from keyless.publish.localdist import LocalDist, load_dist
from keyless.publish.project import ProjectInfo, current_git_tag, git_output, read_project
from keyless.publish.reporter import FileResult, Reporter
from keyless.publish.upload import PublishResult, publish

MODES = ("promote", "publish")
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
OUTPUT_TAIL = 25  # lines of a failed command's output kept in the error
# Never handed to the build, the install or the smoke command.
_SECRET_VARIABLES = re.compile(
    r"^(KEYLESS_.*TOKEN.*|KEYLESS_SMTP_PASSWORD|KEYLESS_NOTIFY_.*|UV_PUBLISH_TOKEN|"
    r"UV_PUBLISH_PASSWORD|TWINE_PASSWORD|ACTIONS_ID_TOKEN_REQUEST_.*|.*_ID_TOKEN|"
    r"SIGSTORE_ID_TOKEN|CI_JOB_JWT.*)$"
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
    production_method: str | None = None  # "promote" | "publish"
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
            "error": None
            if self.error is None
            else {
                "message": self.error.message,
                "hint": self.error.hint,
                "context": self.error.context,
            },
            "stages": [stage.to_json() for stage in self.stages],
            "dist_dir": str(self.dist_dir) if self.dist_dir else None,
            "built": [
                {"filename": d.filename, "sha256": d.sha256, "size": d.size} for d in self.built
            ],
            "staging": [r.to_json() for r in self.staging],
            "production": [r.to_json() for r in self.production],
            "production_method": self.production_method,
            "notes": self.notes,
            "notes_file": str(self.notes_file) if self.notes_file else None,
            "notifications": [
                {"channel": d.channel, "target": d.target, "ok": d.ok, "error": d.error}
                for d in self.notifications
            ],
        }


class _StageFailed(Exception):
    def __init__(self, stage: str, error: PublishError) -> None:
        super().__init__(error.message)
        self.stage = stage
        self.error = error


def _read_project(project_dir: Path) -> ProjectInfo:
    project = read_project(project_dir)
    if project is None:
        path = project_dir / "pyproject.toml"
        raise PublishError(
            f"{path} does not exist.",
            hint="run keyless release in the project's folder (or pass --project-dir).",
            context={"file": str(path)},
        )
    return project


# ------------------------------------------------------------------ subprocesses


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the release's credentials (for the build, install and smoke test)."""
    return {k: v for k, v in environ.items() if not _SECRET_VARIABLES.match(k)}


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    shown = lines[-OUTPUT_TAIL:]
    prefix = ["  …"] if len(lines) > OUTPUT_TAIL else []
    return "\n".join(prefix + [f"  {line}" for line in shown])


def _run(
    command: Sequence[str],
    *,
    what: str,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    hint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `command`; raises PublishError (with the output's tail) when it fails or hangs."""
    try:
        done = subprocess.run(
            list(command),
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PublishError(
            f"{what} did not finish within {timeout:.0f} s.", hint=hint, context={"cwd": str(cwd)}
        ) from None
    except OSError as exc:
        raise PublishError(f"{what} could not start: {exc}", hint=hint) from exc
    if done.returncode != 0:
        output = _tail((done.stdout or "") + "\n" + (done.stderr or ""))
        raise PublishError(
            f"{what} failed (exit code {done.returncode}):\n{output}",
            hint=hint,
            context={"command": shlex.join(command)},
        )
    return done


def _source_date_epoch(project_dir: Path, env: dict[str, str]) -> None:
    # Reproducible archives: the same commit builds the same bytes, so a re-run of a
    # release finds its files already on staging instead of clashing with them.
    if env.get("SOURCE_DATE_EPOCH"):
        return
    committed = git_output(["log", "-1", "--format=%ct"], project_dir)
    if committed and committed.isdigit():
        env["SOURCE_DATE_EPOCH"] = committed


def build_dists(
    project_dir: Path,
    out_dir: Path,
    *,
    environ: Mapping[str, str],
    no_isolation: bool = False,
    python: str = sys.executable,
    timeout: float = 900,
) -> list[Path]:
    """`python -m build` the sdist, then the wheel from it, into `out_dir`; the files.

    Raises PublishError when the build fails or makes no sdist or no wheel.
    """
    env = clean_environment(environ)
    _source_date_epoch(project_dir, env)
    command = [python, "-m", "build", "--outdir", str(out_dir)]
    if no_isolation:
        command.append("--no-isolation")
    command.append(str(project_dir))
    _run(
        command,
        what="the build (python -m build)",
        cwd=project_dir,
        env=env,
        timeout=timeout,
        hint="run `python -m build` in the project to see the whole output"
        + ("; --no-isolation needs the build backend installed" if no_isolation else ""),
    )
    files = sorted(p for p in out_dir.iterdir() if p.name.endswith((".whl", ".tar.gz")))
    if not any(p.name.endswith(".whl") for p in files) or not any(
        p.name.endswith(".tar.gz") for p in files
    ):
        raise PublishError(
            f"the build made {', '.join(p.name for p in files) or 'no files'}; a release needs "
            "an sdist and a wheel.",
            context={"dir": str(out_dir)},
        )
    return files


def top_level_modules(wheel: Path) -> list[str]:
    """The importable top-level names a wheel installs (top_level.txt, else its RECORD)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
            if top_level:
                text = archive.read(top_level[0]).decode("utf-8", "replace")
                listed = [line.strip().replace("/", ".") for line in text.splitlines()]
                return sorted({m for m in listed if m and m.split(".")[0].isidentifier()})
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    found: set[str] = set()
    for name in names:
        first, sep, _rest = name.partition("/")
        if sep:
            if first.endswith((".dist-info", ".data")) or first == "__pycache__":
                continue
            candidate = first
        elif first.endswith(".py"):
            candidate = first[: -len(".py")]
        elif first.endswith((".so", ".pyd")):
            candidate = first.split(".", 1)[0]
        else:
            continue
        if candidate.isidentifier():
            found.add(candidate)
    return sorted(found)


# Runs inside the fresh environment, which has nothing but the release installed: no
# `packaging` there, so versions are compared by their normalized text from our side.
_CHECK_SCRIPT = (
    "import importlib, importlib.metadata, sys\n"
    "name, modules = sys.argv[1], sys.argv[2:]\n"
    "for module in modules:\n"
    "    importlib.import_module(module)\n"
    "print(importlib.metadata.version(name))\n"
)


def _venv_python(venv: Path) -> Path:
    return (
        venv
        / ("Scripts" if os.name == "nt" else "bin")
        / ("python.exe" if os.name == "nt" else "python")
    )


def install_test(
    name: str,
    version: str,
    simple_url: str,
    *,
    modules: Sequence[str],
    smoke: str | None,
    environ: Mapping[str, str],
    reporter: Reporter,
    python: str = sys.executable,
    timeout: float = 600,
) -> None:
    """Install `name==version` from `simple_url` alone into a fresh virtual environment,
    import `modules`, check the installed version, and run `smoke` (split like a shell
    command line, run without a shell, with the environment's `bin` first on PATH).

    Raises PublishError saying which step failed and its output.
    """
    with tempfile.TemporaryDirectory(prefix="keyless-install-test-") as scratch:
        workdir = Path(scratch)
        venv = workdir / "venv"
        base = clean_environment(environ)
        for key in list(base):
            if key.startswith("PIP_") or key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
                del base[key]
        reporter.info(f"creating a fresh virtual environment ({python} -m venv)")
        _run(
            [python, "-m", "venv", str(venv)],
            what="creating the virtual environment",
            cwd=workdir,
            env=base,
            timeout=timeout,
        )
        venv_python = str(_venv_python(venv))
        env = {
            **base,
            # Only the staging index: no user or site pip configuration may add another.
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "VIRTUAL_ENV": str(venv),
            "PATH": os.pathsep.join([str(Path(venv_python).parent), base.get("PATH", "")]),
        }
        requirement = f"{name}=={version}"
        command = [
            venv_python,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--timeout",
            "60",
            "--index-url",
            simple_url,
        ]
        cert = environ.get("SSL_CERT_FILE") or environ.get("REQUESTS_CA_BUNDLE")
        if cert:
            command += ["--cert", cert]
        command.append(requirement)
        reporter.info(f"pip install {requirement} --index-url {redact(simple_url)}")
        _run(
            command,
            what=f"installing {requirement} from the staging index",
            cwd=workdir,
            env=env,
            timeout=timeout,
            hint="the install test uses the staging index only: every dependency of the "
            "release must be installable from it too (upload them there first).",
        )
        reporter.info(f"importing {', '.join(modules) or '(no top-level module found)'}")
        checked = _run(
            # -I: isolated, so the project folder or PYTHONPATH cannot shadow what pip
            # installed; the import must come from the installed release.
            [venv_python, "-I", "-c", _CHECK_SCRIPT, name, *modules],
            what=f"importing {', '.join(modules) or name} in the fresh environment",
            cwd=workdir,
            env=env,
            timeout=timeout,
            hint="the installed release does not import: a module missing from the wheel, or "
            "a dependency not declared?",
        )
        installed = checked.stdout.strip().splitlines()[-1] if checked.stdout.strip() else ""
        if not _same_version(installed, version):
            raise PublishError(
                f"the fresh environment has {name} {installed or '?'}, not {version}.",
                hint="is an older build of this version on the staging index?",
            )
        if smoke:
            try:
                smoke_command = shlex.split(smoke)
            except ValueError as exc:
                raise PublishError(f"the smoke command cannot be parsed: {exc}") from exc
            if not smoke_command:
                return
            found = shutil.which(smoke_command[0], path=env["PATH"])
            if found:
                smoke_command[0] = found
            reporter.info(f"smoke test: {smoke}")
            ran = _run(
                smoke_command,
                what=f"the smoke command ({smoke})",
                cwd=workdir,
                env=env,
                timeout=timeout,
                hint="it ran in the fresh environment with the release installed from staging.",
            )
            if ran.stdout.strip():
                reporter.info("smoke test output:\n" + _tail(ran.stdout))


def _same_version(installed: str, expected: str) -> bool:
    try:
        return Version(installed) == Version(expected)
    except InvalidVersion:
        return installed == expected


# ------------------------------------------------------------------ the pipeline


class _NoCredentials:
    """A dry run uploads nothing, so it asks for no token."""

    source = "none (dry run)"

    def token(self) -> str:
        raise PublishError("a dry run uploads nothing.")

    def close(self) -> None:
        pass


def _stage_environ(environ: Mapping[str, str], which: str) -> Mapping[str, str]:
    specific = environ.get(f"KEYLESS_{which}_TOKEN")
    return {**environ, "KEYLESS_TOKEN": specific} if specific else environ


def _release_url(production_simple: str, production_upload: str, name: str, version: str) -> str:
    host = (httpx.URL(production_upload).host or "").lower()
    if host == "upload.pypi.org":
        return f"https://pypi.org/project/{name}/{version}/"
    if host == "test.pypi.org":
        return f"https://test.pypi.org/project/{name}/{version}/"
    return f"{production_simple.rstrip('/')}/{canonicalize_name(name)}/"


@dataclass
class _Run:
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
        if self.config is None:  # pragma: no cover - read_project runs first
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
            raise _StageFailed(name, exc) from exc
        except Exception as exc:
            # Whatever broke, the release failed at this stage and is notified as such.
            error = PublishError(f"{name}: unexpected {type(exc).__name__}: {exc}")
            outcome.status = "failed"
            outcome.detail = error.message
            raise _StageFailed(name, error) from exc
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
            return _NoCredentials()
        return resolve_credentials(
            upload_url,
            mode=self.trusted_publishing,
            http=self.http,
            reporter=self.reporter,
            environ=_stage_environ(self.environ, which),
        )

    # ---------------------------------------------------------------- stages

    def read_project(self, notify_config: notify.NotifyConfig | None) -> notify.NotifyConfig:
        """The project stage; returns the notification settings (given, or configured)."""
        with self.stage("project", f"Reading {self.project_dir / 'pyproject.toml'}") as out:
            self.notify_config = notify_config
            try:
                self.config = _read_project(self.project_dir)
                if self.notify_config is None:
                    self.notify_config = notify.load_notify_config(self.config.notify, self.environ)
            except PublishError:
                # The failure is still worth notifying wherever the environment says.
                if self.notify_config is None:
                    with suppress(PublishError):
                        self.notify_config = notify.load_notify_config(None, self.environ)
                raise
            self.result.project = self.config.name
            self.result.version = self.config.version
            out.detail = f"{self.config.name or '?'} {self.config.version or '(dynamic)'}"
        return self.notify_config or notify.NotifyConfig()

    def check_version(self, name: str | None, version: str | None) -> None:
        with self.stage("version", "Checking the version policy") as out:
            if name is None or version is None:
                out.detail = "the version is known after the build; checked then"
                self.reporter.info(out.detail)
                return
            self._version_policy(name, version)
            out.detail = f"{name} {version}"

    def _version_policy(self, name: str, version: str) -> None:
        versioning.parse_version(version, self.project.version_scheme)
        tag = current_git_tag(self.project_dir)
        versioning.check_tag(tag, version)
        if tag:
            self.reporter.info(f"on tag {tag}: matches {version}")
        production = versioning.fetch_versions(self.http, self.production_simple, name)
        if Version(version) in production:
            self.already_released = True
            self.reporter.info(
                f"{version} is already on production: a re-run succeeds only if the build "
                "makes exactly the files production holds (compared by sha256)"
            )
            self.version_checked = True
            return
        versioning.check_progression(version, production, redact(self.production_simple))
        newest = production.newest
        self.reporter.info(
            f"production has {len(production.all)} version(s) of {name}"
            + (f", newest {newest}" if newest else "")
            + f"; {version} is new"
        )
        staging = versioning.fetch_versions(self.http, self.staging_simple, name)
        if Version(version) in staging:
            self.reporter.info(
                f"{version} is already on staging: identical files count as uploaded, "
                "different bytes under the same names are refused"
            )
        self.version_checked = True

    def build(self) -> None:
        with self.stage("build", "Building the sdist and the wheel") as out:
            if self.dist_dir is not None:
                out_dir = self.dist_dir
                if out_dir.exists() and any(out_dir.iterdir()):
                    raise PublishError(
                        f"{out_dir} is not empty; a release builds into a fresh folder.",
                        hint="remove it, or pass another folder.",
                    )
                out_dir.mkdir(parents=True, exist_ok=True)
            else:
                out_dir = Path(tempfile.mkdtemp(prefix="keyless-release-"))
            self.result.dist_dir = out_dir
            self.reporter.info(f"building into {out_dir}")
            paths = build_dists(
                self.project_dir,
                out_dir,
                environ=self.environ,
                no_isolation=self.no_isolation,
                python=self.python,
            )
            # Read and hashed once, here: the check and both uploads reuse these.
            self.result.built = [load_dist(path) for path in paths]
            releases = {dist.release for dist in self.result.built}
            if len(releases) != 1:
                raise PublishError(
                    "the build made files of several releases: "
                    + ", ".join(d.filename for d in self.result.built)
                )
            first = self.result.built[0]
            self._agree(first)
            self.result.project, self.result.version = first.name, first.version
            out.detail = ", ".join(d.filename for d in self.result.built)
            for dist in self.result.built:
                self.reporter.info(f"built {dist.filename} (sha256 {dist.sha256})")
        if not self.version_checked:
            with self.stage("version", "Checking the version policy (built version)") as out:
                self._version_policy(first.name, first.version)
                out.detail = f"{first.name} {first.version}"

    def confirm_released(self) -> None:
        """A re-run: production must hold exactly the built files; then nothing is uploaded."""
        with self.stage("production", "Comparing the build with what production holds") as out:
            client = IndexClient(
                self.production_url, http=self.http, simple_url=self.production_simple
            )
            held = client.existing_entries(self.result.project or "")
            different = [
                f"{d.filename}: built sha256 {d.sha256}, production has "
                + (f"sha256 {held[d.filename].sha256}" if d.filename in held else "no such file")
                for d in self.result.built
                if d.filename not in held or held[d.filename].sha256 != d.sha256
            ]
            if different:
                raise PublishError(
                    f"version {self.result.version} is already on production with other "
                    "files:\n  " + "\n  ".join(different),
                    hint="a released version never changes: bump the version for a new release.",
                )
            self.result.production = [
                FileResult(d.filename, "exists", held[d.filename].url, d.sha256, d.size)
                for d in self.result.built
            ]
            out.detail = "already released with these exact files: nothing to do"
        for name in ("staging", "install-test"):
            self.skip(name, "already released")

    def _agree(self, dist: LocalDist) -> None:
        config = self.project
        if config.name and canonicalize_name(config.name) != dist.normalized:
            raise PublishError(
                f"pyproject.toml names {config.name}, but the build made {dist.name}."
            )
        if config.version and Version(config.version) != Version(dist.version):
            raise PublishError(
                f"pyproject.toml says version {config.version}, but the build made {dist.version}."
            )

    def check(self) -> None:
        from keyless.publish.check import check_dists

        pair = self.locate()
        profile = pair.target_profile if pair and pair.target_profile else "pypi"
        with self.stage("check", f"Checking the files (policy {profile!r})") as out:
            report = check_dists(
                self.result.built, git_tag=current_git_tag(self.project_dir), policy=profile
            )
            for finding in report.warnings:
                self.reporter.warning(f"{finding.file or 'release'}: {finding.message}")
            if not report.ok:
                lines = [
                    f"  - {f.file or 'release'}: {f.message}" + (f" ({f.fix})" if f.fix else "")
                    for f in report.errors
                ]
                raise PublishError(
                    f"{len(report.errors)} problem(s) in the built files:\n" + "\n".join(lines),
                    hint="`keyless check` on the files explains each one.",
                )
            out.detail = f"{len(self.result.built)} file(s), {len(report.warnings)} warning(s)"

    def _publish(self, upload_url: str, which: str) -> PublishResult:
        credentials = self.credentials(upload_url, which)
        try:
            published = publish(
                self.result.built,  # read once, at the build
                upload_url,
                credentials=credentials,
                reporter=self.reporter,
                http=self.http,
                dry_run=self.dry_run,
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

    def staging(self) -> None:
        with self.stage("staging", f"Publishing to staging {redact(self.staging_url)}") as out:
            published = self._publish(self.staging_url, "STAGING")
            self.result.staging = published.files
            out.detail = ", ".join(f"{f.filename}: {f.status}" for f in published.files)

    def install(self) -> None:
        name, version = self.result.project or "", self.result.version or ""
        if self.dry_run:
            self.skip(
                "install-test",
                f"dry run: would install {name}=={version} from {redact(self.staging_simple)}",
            )
            return
        wheel = next(d for d in self.result.built if not d.is_sdist)
        modules = top_level_modules(wheel.path)
        if not modules:
            self.reporter.warning(
                f"{wheel.filename} installs no top-level module: only the install is tested"
            )
        with self.stage("install-test", "Installing from staging in a fresh environment") as out:
            install_test(
                name,
                version,
                self.staging_simple,
                modules=modules,
                smoke=self.smoke,
                environ=self.environ,
                reporter=self.reporter,
                python=self.python,
            )
            out.detail = f"imported {', '.join(modules) or '-'}" + (
                f"; smoke test passed: {self.smoke}" if self.smoke else ""
            )

    def production(self) -> None:
        target = redact(self.production_url)
        with self.stage("production", f"Releasing to production {target}") as out:
            pair = self.locate() if self.mode == "promote" else None
            if self.mode == "promote" and pair is None:
                self.reporter.warning(
                    f"cannot promote: {redact(self.staging_url)} and {target} are not two "
                    "indexes of one keyless server; publishing the same files to production "
                    "instead"
                )
            if pair is not None:
                try:
                    self._promote(pair)
                    out.detail = f"promoted from {pair.source!r} to {pair.target!r}"
                    return
                except promote.PromoteUnsupported as exc:
                    self.reporter.warning(
                        f"{exc.message} Publishing the same files to production instead."
                    )
            published = self._publish(self.production_url, "PRODUCTION")
            self.result.production = published.files
            self.result.production_method = "publish"
            out.detail = "published the same files"

    def _promote(self, pair: promote.IndexPair) -> None:
        name, version = self.result.project or "", self.result.version or ""
        self.result.production_method = "promote"
        if self.dry_run:
            self.reporter.info(
                f"dry run: would promote {name} {version} from {pair.source!r} to "
                f"{pair.target!r} on {pair.base}"
            )
            return
        built = {d.filename: d.sha256 for d in self.result.built}
        # Promotion moves the staged RELEASE, every file of it: it must be exactly what was
        # built and tested (a leftover file of an earlier attempt would be promoted too).
        staged = {
            filename: sha256
            for filename, sha256 in IndexClient(self.staging_url, http=self.http)
            .existing_files(name)
            .items()
            if file_version(filename) == Version(version)
        }
        if staged != built:
            extra = sorted(set(staged) - set(built))
            raise PublishError(
                f"staging holds other files for {name} {version} than this build: "
                + (f"{', '.join(extra)} too; " if extra else "")
                + "promoting would release files that were not tested together.",
                hint="release a new version (or remove the extra files from staging).",
            )
        credentials = self.credentials(self.production_url, "PRODUCTION")
        try:
            files = promote.promote(pair, name, version, token=credentials.token(), http=self.http)
        finally:
            credentials.close()
        promoted = {f.filename: f.sha256 for f in files}
        if promoted != built:
            raise PublishError(
                "the promoted release is not the files that were built and tested: "
                f"production has {sorted(promoted.items())}, the build made "
                f"{sorted(built.items())}.",
                hint="another build of this version was staged earlier; release a new version.",
            )
        for result in files:
            what = "promoted" if result.status == "uploaded" else "already on production"
            self.reporter.info(f"{what}: {result.filename} (sha256 {result.sha256})")
        self.result.production = files

    def notes(self) -> None:
        version = self.result.version or ""
        with self.stage("notes", "Extracting the release notes") as out:
            found = changelog.release_notes(self.project_dir, version)
            if found is None:
                where = changelog.find_changelog(self.project_dir)
                out.detail = (
                    f"no section for {version} in {where.name}" if where else "no changelog"
                )
                self.reporter.warning(f"release notes: {out.detail}")
                return
            self.result.notes = found.text
            self.result.notes_file = found.path
            out.detail = f"{found.path.name}: {found.heading}"


def release(
    project_dir: Path,
    *,
    staging_url: str,
    production_url: str,
    mode: str = "promote",
    reporter: Reporter,
    http: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
    smoke: str | None = None,
    notify_config: notify.NotifyConfig | None = None,
    trusted_publishing: str = "auto",
    dry_run: bool = False,
    no_isolation: bool = False,
    dist_dir: Path | None = None,
    python: str = sys.executable,
) -> ReleaseResult:
    """Run the staged release of the project in `project_dir` (see the module docstring).

    `staging_url`/`production_url` are upload URLs (…/legacy/). `mode`: "promote" or
    "publish". `notify_config`: None reads `[tool.keyless.notify]` and the environment.
    `environ` (default os.environ) is where credentials, CA settings and notification
    settings come from. Stage failures do not raise: they are in the result (`ok`,
    `failed_stage`, `error`) and were reported through `reporter.error`.

    Raises PublishError only for arguments that cannot start a release: an unknown mode, an
    upload URL that is not one, or the same URL for staging and production.
    """
    if mode not in MODES:
        raise PublishError(f"unknown release mode {mode!r}.", hint="use promote or publish.")
    env = os.environ if environ is None else environ
    staging_url = check_upload_url(staging_url)
    production_url = check_upload_url(production_url)
    if staging_url.rstrip("/") == production_url.rstrip("/"):
        raise PublishError(
            "the staging and production URLs are the same index.",
            hint="stage on a separate index (e.g. …/test/legacy/ and …/prod/legacy/).",
        )
    for variable in ("KEYLESS_STAGING_TOKEN", "KEYLESS_PRODUCTION_TOKEN"):
        if env.get(variable):
            reporter.mask(env[variable])
    owned = http is None
    client = new_http_client(environ=env) if http is None else http
    result = ReleaseResult(dry_run=dry_run)
    run = _Run(
        project_dir=Path(project_dir).resolve(),
        staging_url=staging_url,
        production_url=production_url,
        staging_simple=simple_url_for(staging_url),
        production_simple=simple_url_for(production_url),
        mode=mode,
        trusted_publishing=trusted_publishing,
        reporter=reporter,
        http=client,
        environ=env,
        smoke=smoke,
        dry_run=dry_run,
        no_isolation=no_isolation,
        dist_dir=dist_dir,
        python=python,
        result=result,
    )
    try:
        try:
            run.read_project(notify_config)
            _pipeline(run, run.project)
            result.ok = True
        except _StageFailed as failed:
            result.failed_stage = failed.stage
            result.error = failed.error
            reporter.error(failed.error.with_context(stage=failed.stage))
        _notify(run, run.notify_config)
    finally:
        if owned:
            client.close()
    return result


def _pipeline(run: _Run, config: ProjectInfo) -> None:
    run.check_version(config.name, config.version)
    run.build()
    run.check()
    if run.already_released:
        run.confirm_released()
    else:
        run.staging()
        run.install()
        run.production()
    run.notes()


def _event(run: _Run) -> notify.ReleaseEvent:
    result = run.result
    name, version = result.project or "?", result.version or "?"
    if result.ok:
        files = notify.files_of(result.production)
    elif result.staging:
        files = notify.files_of(result.staging)
    else:
        files = tuple(
            {"filename": d.filename, "sha256": d.sha256, "size": d.size, "url": None}
            for d in result.built
        )
    error = None
    if result.error is not None:
        error = result.error.message + (f"\nhint: {result.error.hint}" if result.error.hint else "")
    return notify.ReleaseEvent(
        succeeded=result.ok,
        project=name,
        version=version,
        index=redact(run.production_simple),
        files=files,
        stage=result.failed_stage,
        error=error,
        notes=result.notes,
        url=_release_url(run.production_simple, run.production_url, name, version)
        if result.ok
        else None,
    )


def _notify(run: _Run, config: notify.NotifyConfig | None) -> None:
    if config is None or config.empty:
        run.result.stages.append(StageOutcome("notify", "skipped", "no notification configured"))
        return
    channels = ", ".join(config.describe())
    if run.dry_run:
        run.skip("notify", f"dry run: would notify {channels}")
        return
    started = time.monotonic()
    run.reporter.stage(f"[{len(STAGES)}/{len(STAGES)}] Notifying {channels}")
    deliveries = notify.notify(
        _event(run), config, http=run.http, reporter=run.reporter, environ=run.environ
    )
    run.result.notifications = deliveries
    failed = [d for d in deliveries if not d.ok]
    run.result.stages.append(
        StageOutcome(
            "notify",
            "passed" if not failed else "failed",
            f"{len(deliveries) - len(failed)} of {len(deliveries)} delivered",
            time.monotonic() - started,
        )
    )
