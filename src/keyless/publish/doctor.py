"""`keyless doctor`: will this CI job be able to publish, and if not, why and what to change.

Runnable before anything is built. In a GitHub Actions or GitLab CI/CD job it asks the index
for its Trusted Publishing audience, gets the job's OIDC token the way publishing clients do
(the `id` library), decodes its claims (no verification: the index does that) and explains what
the index will see — a missing ``id-token: write`` permission or ``id_tokens:`` entry, a pull
request from a fork, ``pull_request_target``, a reusable workflow, a missing or different
environment — and the exact publisher registration that accepts this job, checked against the
claims with the index's own matching rules. It also asks the index whether the version in
pyproject.toml is already released. Outside CI it says so, and how to rehearse under
``keyless ci-emulator``.

Only the index can say yes: a keyless index answers a dry run of its Trusted Publishing match
(``POST /_/oidc/{index}/dry-run``, next to its PEP 807 mint endpoint) — would this very token
be allowed to upload to this project, and if not, the exact mismatch. The verdict
(`Diagnosis.status`) is ``ready`` only when the index said yes, ``not-ready`` when anything
says no, and ``unknown`` when the index could not be asked (not a keyless index or an older
one, unreachable, no OIDC token here).

    with httpx.Client() as http:
        diagnosis = diagnose("https://pypi.example.com/prod/legacy/", environ=os.environ, http=http)
    for note in diagnosis.findings:
        print(note.level, note.message)

The token itself is never returned, stored or printed; nothing here prints at all.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import id as id_library

from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import GITHUB_ISSUER, GITLAB_ISSUER, PROVIDERS
from keyless.oidc.providers.gitlab import id_token_variable
from keyless.publish.ambient import detect_ci, is_fork_pull_request
from keyless.publish.credentials import PYTP_TYPE, discover, unverified_claims
from keyless.publish.errors import PublishError
from keyless.publish.indexclient import IndexClient, check_upload_url, redact
from keyless.publish.init import certificate_untrusted, origin_repository
from keyless.publish.project import ProjectInfo, read_project

__all__ = [
    "PYPI_UPLOAD_URL",
    "Diagnosis",
    "IndexAnswer",
    "Note",
    "Registration",
    "diagnose",
]

# "unknown": something could not be checked, so the doctor cannot say ready (nor not ready).
Level = Literal["ok", "info", "warning", "unknown", "error"]
Status = Literal["ready", "not-ready", "unknown"]
Detector = Callable[[str], str | None]

PYPI_UPLOAD_URL = "https://upload.pypi.org/legacy/"
_PYPI_SITES = {"upload.pypi.org": "https://pypi.org", "test.pypi.org": "https://test.pypi.org"}
_WORKFLOW_IN_REF = re.compile(r"^(?P<repo>[^/]+/[^/]+)/\.github/workflows/(?P<file>[^/@]+)@")
_GITLAB_CONFIG = re.compile(r"//(?P<path>.+)@")
# Claims shown to the user: what identifies the job. (The token is never shown; its id,
# `jti`, is left out too — it is only useful to replay the token.)
_HIDDEN_CLAIMS = frozenset({"jti"})

GITHUB_PERMISSION_YAML = """\
jobs:
  publish:
    runs-on: ubuntu-latest
    environment: pypi          # the environment the publisher names (recommended)
    permissions:
      id-token: write          # at the JOB level: only this job can get an OIDC token
    steps:
      ..."""

GITHUB_TRIGGER_YAML = """\
on:
  release:
    types: [published]
  push:
    tags: ["v*"]"""


def _gitlab_id_tokens_yaml(audience: str) -> str:
    return (
        "publish:\n"
        "  environment: pypi            # the environment the publisher names (recommended)\n"
        "  id_tokens:\n"
        f"    {id_token_variable(audience)}:\n"
        f"      aud: {audience}\n"
        "  script:\n"
        "    - ..."
    )


@dataclass(frozen=True)
class Note:
    """One thing the doctor found: ``ok`` (checked, fine), ``info``, ``warning`` (will publish,
    but maybe not as meant), ``unknown`` (could not be checked) or ``error`` (will not
    publish). ``fix`` may be several lines (YAML to paste)."""

    level: Level
    code: str
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        """The note as JSON-ready data."""
        return {"level": self.level, "code": self.code, "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class Registration:
    """The trusted publisher that accepts this job: what to enter on the index.

    ``fields`` are the publisher's configuration fields (keyless' names, as
    ``keyless.oidc.providers.PROVIDERS[kind].fields`` lists them), only those to fill in;
    ``form`` the same with the web form's labels; ``command`` the ``keyless publisher add``
    command for a keyless index (None for PyPI and TestPyPI, whose settings page is
    ``settings_url``). ``mismatches`` is what the index's matching rules still object to in
    these claims (empty: this registration accepts the job).
    """

    kind: str
    fields: dict[str, str]
    form: list[tuple[str, str]]
    project: str
    index: str | None
    command: str | None
    settings_url: str | None
    mismatches: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The registration as JSON-ready data."""
        return {
            "kind": self.kind,
            "fields": self.fields,
            "form": [{"label": label, "value": value} for label, value in self.form],
            "project": self.project,
            "index": self.index,
            "command": self.command,
            "settings_url": self.settings_url,
            "mismatches": self.mismatches,
        }


@dataclass(frozen=True)
class IndexAnswer:
    """The index's answer to the dry run: may this job's token upload to ``project``?

    ``errors``: (code, description) pairs in the mint's words when it may not; ``publisher``:
    the publisher that accepts it when it may; ``pending``: its first publish creates the
    project.
    """

    allowed: bool
    index: str
    project: str
    errors: list[tuple[str, str]] = field(default_factory=list)
    publisher: str = ""
    pending: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The answer as JSON-ready data."""
        return {
            "allowed": self.allowed,
            "index": self.index,
            "project": self.project,
            "errors": [{"code": code, "description": text} for code, text in self.errors],
            "publisher": self.publisher,
            "pending": self.pending,
        }


@dataclass
class Diagnosis:
    """Everything `diagnose` found; `status` is the verdict."""

    upload_url: str
    ci: str | None = None
    findings: list[Note] = field(default_factory=list)
    audience: str | None = None
    discovery: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    registration: Registration | None = None
    project: str | None = None
    version: str | None = None
    version_exists: bool | None = None
    dry_run_url: str | None = None
    index_answer: IndexAnswer | None = None

    @property
    def status(self) -> Status:
        """``not-ready`` when a note is an error (the index's no included); ``ready`` only
        when the index said yes to this job's token; ``unknown`` otherwise."""
        if any(note.level == "error" for note in self.findings):
            return "not-ready"
        if self.index_answer is not None and self.index_answer.allowed:
            return "ready"
        return "unknown"

    @property
    def ok(self) -> bool:
        """Ready to publish: the index said yes, and nothing else says no."""
        return self.status == "ready"

    @property
    def errors(self) -> list[Note]:
        return [note for note in self.findings if note.level == "error"]

    def note(self, level: Level, code: str, message: str, fix: str = "") -> None:
        self.findings.append(Note(level, code, message, fix))

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis as JSON-ready data (what `keyless doctor --json` prints)."""
        return {
            "ok": self.ok,
            "status": self.status,
            "upload_url": self.upload_url,
            "ci": self.ci,
            "audience": self.audience,
            "discovery": self.discovery,
            "project": self.project,
            "version": self.version,
            "version_exists": self.version_exists,
            "claims": self.claims,
            "registration": self.registration.to_dict() if self.registration else None,
            "index_answer": self.index_answer.to_dict() if self.index_answer else None,
            "findings": [note.to_dict() for note in self.findings],
        }


def _ci_kind(environ: Mapping[str, str]) -> str | None:
    """``github``, ``gitlab``, ``other`` (another CI job) or None (not a CI job)."""
    ci = detect_ci(environ)
    if ci is None or not ci.job:
        return None
    return ci.kind if ci.kind in ("github", "gitlab") else "other"


def diagnose(
    upload_url: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    http: httpx.Client,
    project_dir: str | Path | None = None,
    detect: Detector | None = None,
    expected: Mapping[str, str] | None = None,
    index_name: str | None = None,
) -> Diagnosis:
    """Explain whether this job can publish to ``upload_url`` (default PyPI) with Trusted
    Publishing, and what to register on the index so that it can.

    ``environ``: the job's environment (default ``os.environ``). ``http``: the client used to
    ask the index. ``project_dir``: where pyproject.toml is (default the current folder).
    ``detect``: gets the OIDC token for an audience; default ``id.detect_credential``, which
    reads ``os.environ`` — pass ``environ`` = ``os.environ`` with it. ``expected``: publisher
    fields already registered on the index (e.g. ``{"environment": "pypi"}``), compared with
    the job's claims. ``index_name``: the index's name for the ``keyless publisher add``
    command (default: taken from an upload URL shaped ``…/NAME/legacy/``).

    With the job's OIDC token in hand, asks the index's dry run whether it would accept it for
    the project (see the module's docstring); ``Diagnosis.status`` is the verdict.

    Every problem is a `Note` in the result. Never raises for what it diagnoses (an
    unreachable index, a missing permission, a malformed token); raises only what ``http``
    raises for reasons other than HTTP errors.
    """
    env = os.environ if environ is None else environ
    folder = Path(project_dir) if project_dir is not None else Path.cwd()
    url = upload_url or PYPI_UPLOAD_URL
    result = Diagnosis(upload_url=redact(url))
    project = read_project(folder)
    if project is not None and project.name is None:
        project = None  # the doctor needs a name to ask the index and to register
    if project is not None:
        result.project, result.version = project.name, project.version

    checked_url = _check_url(result, url)
    if checked_url is not None:
        _check_version(result, checked_url, project, http)
        _discover(result, checked_url, http)

    result.ci = _ci_kind(env)
    if env.get("KEYLESS_CI_EMULATOR"):
        result.note(
            "info",
            "emulator",
            f"This job runs under keyless ci-emulator (issuer {env['KEYLESS_CI_EMULATOR']}): "
            "a rehearsal; only an index that trusts that issuer accepts its tokens.",
        )
    if result.ci is None:
        _outside_ci(result, folder, project)
        return result

    token = _token(result, env, detect)
    if token is None:
        return result
    claims = _decode(result, token)
    if claims is None:
        return result
    result.claims = {k: v for k, v in claims.items() if k not in _HIDDEN_CLAIMS}
    if result.audience and claims.get("aud") != result.audience:
        result.note(
            "error",
            "audience",
            f"The token's audience is {claims.get('aud')!r}, the index expects "
            f"{result.audience!r}.",
        )
    if result.ci == "github":
        _explain_github(result, claims, project, url, index_name, expected)
    elif result.ci == "gitlab":
        _explain_gitlab(result, claims, project, url, index_name, expected)
    else:
        result.note(
            "info",
            "other-ci",
            f"Got an OIDC token (issuer {claims.get('iss')!r}); keyless doctor explains "
            "GitHub Actions and GitLab CI/CD jobs in detail. For this CI, register a generic "
            "OIDC publisher for this issuer whose identifying claim is one of the claims shown.",
        )
    _ask_index(result, token, http)
    return result


# ------------------------------------------------------------------------------ the index


def _check_url(result: Diagnosis, url: str) -> str | None:
    try:
        checked = check_upload_url(url)
    except PublishError as exc:
        result.note("error", "upload-url", exc.message, exc.hint or "")
        return None
    if checked != url:
        result.note(
            "warning",
            "upload-url",
            f"{redact(url)} lacks its trailing slash: keyless takes uploads there too, but "
            "an index that redirects them makes the upload fail (a redirected POST loses "
            "its body).",
            f"Use {redact(checked)}",
        )
    if urlsplit(checked).scheme != "https":
        result.note(
            "warning",
            "upload-url",
            f"{redact(checked)} is plain http: Trusted Publishing clients (uv, twine, the "
            "GitHub action) require https, and an upload token must not travel in clear.",
            "Serve the index over TLS (keyless serve --tls-cert/--tls-key, or behind a proxy).",
        )
    return checked


def _check_version(
    result: Diagnosis, url: str, project: ProjectInfo | None, http: httpx.Client
) -> None:
    if project is None or project.name is None:
        result.note(
            "info",
            "project",
            "No pyproject.toml with a [project] name here, so the index was not asked about "
            "the version.",
            "Run keyless doctor in the project's folder.",
        )
        return
    if project.version is None:
        result.note(
            "info",
            "version",
            f"{project.name}'s version is dynamic (set at build time), so the index was not "
            "asked about it.",
            "After building, `keyless check` and `keyless publish --dry-run` compare the files "
            "with the index.",
        )
        return
    try:
        exists = IndexClient(url, http=http).version_exists(project.name, project.version)
    except PublishError as exc:
        result.note(
            "warning",
            "version",
            f"Could not ask the index whether {project.name} {project.version} exists: "
            f"{exc.message}",
            exc.hint or "",
        )
        return
    except httpx.HTTPError as exc:
        result.note(
            "warning",
            "version",
            f"Could not ask the index whether {project.name} {project.version} exists: {exc}",
        )
        return
    result.version_exists = exists
    if exists:
        result.note(
            "warning",
            "version",
            f"{project.name} {project.version} is already on the index: files with the very "
            "same bytes count as published, anything rebuilt differently is refused (a file "
            "name can never be reused).",
            "Bump the version in pyproject.toml before tagging the release.",
        )
    else:
        result.note(
            "ok",
            "version",
            f"{project.name} {project.version} is not on the index yet.",
        )


def _discover(result: Diagnosis, url: str, http: httpx.Client) -> None:
    try:
        found = discover(url, http)
    except PublishError as exc:
        _unreachable(result, exc, exc.message, exc.hint or "")
        return
    except httpx.HTTPError as exc:
        _unreachable(result, exc, f"Cannot reach {redact(url)}: {exc}", "")
        return
    if found is None:
        result.note(
            "error",
            "audience",
            f"{redact(url)} does not offer Trusted Publishing (no PEP 807 discovery document, "
            "and /_/oidc/audience is not there).",
            "Check the upload URL; an index without Trusted Publishing needs an API token.",
        )
        return
    result.audience, result.discovery = found.audience, found.source
    if found.source == "pep807" and found.mint_url.endswith("/mint-token"):
        # keyless serves its dry run next to each index's PEP 807 mint endpoint.
        result.dry_run_url = found.mint_url.removesuffix("/mint-token") + "/dry-run"
    result.note(
        "ok",
        "audience",
        f"The index takes OIDC tokens for audience {found.audience!r} (found via {found.source}).",
    )


def _unreachable(result: Diagnosis, exc: Exception, message: str, fix: str) -> None:
    if certificate_untrusted(exc):
        # The publish in this job would fail the same way: a no, not an unknown.
        result.note("error", "audience", message, fix)
    else:
        result.note(
            "unknown",
            "audience",
            f"{message} — so whether this job can publish is unknown.",
            fix,
        )


def _ask_index(result: Diagnosis, token: str, http: httpx.Client) -> None:
    """The index's own answer: would it accept this token for the project? (a dry run)"""
    if result.dry_run_url is None:
        result.note(
            "unknown",
            "index",
            "The index offers no dry run of its Trusted Publishing match (not a keyless index, "
            "or an older one), so whether it accepts this job is unknown.",
            "Publish, or ask the index's admins whether a publisher matches the claims below.",
        )
        return
    if result.project is None:
        result.note(
            "unknown",
            "index",
            "No project name (pyproject.toml) to ask the index about, so whether it accepts "
            "this job is unknown.",
            "Run keyless doctor in the project's folder.",
        )
        return
    try:
        response = http.post(
            result.dry_run_url,
            json={"token": token, "project": result.project},
            headers={"Accept": PYTP_TYPE},
        )
    except httpx.HTTPError as exc:
        result.note(
            "unknown",
            "index",
            f"Could not ask the index whether it accepts this job: {exc}",
        )
        return
    answer = _read_answer(response)
    if answer is None:
        result.note(
            "unknown",
            "index",
            f"The index did not answer the dry run (HTTP {response.status_code}; an older "
            "keyless?), so whether it accepts this job is unknown.",
        )
        return
    result.index_answer = answer
    where = f"{answer.project!r} on index {answer.index!r}"
    if answer.allowed:
        created = " (its first publish creates the project)" if answer.pending else ""
        result.note(
            "ok",
            "index",
            f"The index accepts this job's token for {where}: {answer.publisher}{created}.",
        )
        return
    for code, description in answer.errors or [("", "no reason given")]:
        result.note(
            "error",
            "index",
            f"The index refuses this job's token for {where}: {code}: {description}",
            "Change the job to match the registered publisher, or have a project owner "
            "register the publisher shown below."
            if code == "invalid-publisher"
            else "",
        )


def _read_answer(response: httpx.Response) -> IndexAnswer | None:
    if response.status_code != 200:
        return None
    try:
        document = response.json()
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("allowed"), bool):
        return None
    errors = document.get("errors")
    return IndexAnswer(
        allowed=document["allowed"],
        index=str(document.get("index", "")),
        project=str(document.get("project", "")),
        errors=[
            (str(e.get("code", "")), str(e.get("description", "")))
            for e in (errors if isinstance(errors, list) else [])
            if isinstance(e, dict)
        ],
        publisher=str(document.get("publisher") or ""),
        pending=document.get("pending") is True,
    )


# -------------------------------------------------------------------------- outside CI


def _outside_ci(result: Diagnosis, folder: Path, project: ProjectInfo | None) -> None:
    repository = origin_repository(folder) or "OWNER/REPO"
    version = project.version if project and project.version else "1.0.0"
    command = [
        *("keyless", "ci-emulator", "run", "--repo", repository),
        *("--workflow", "release.yml", "--environment", "pypi"),
        *("--ref", f"refs/tags/v{version}", "--event", "push"),
        *("--", "keyless", "doctor", "--repository-url", result.upload_url),
    ]
    result.note(
        "unknown",
        "not-ci",
        "Not running in a CI job (no GITHUB_ACTIONS or GITLAB_CI): there is no OIDC token to "
        "inspect. Run keyless doctor as a step of the publishing job, or rehearse that job "
        "here under the CI emulator (the index must trust the emulator's issuer).",
        shlex.join(command),
    )


# ------------------------------------------------------------------------------- the token


def _token(result: Diagnosis, env: Mapping[str, str], detect: Detector | None) -> str | None:
    if result.ci == "github" and not _github_can_request(result, env):
        return None
    audience = result.audience
    if audience is None:
        result.note(
            "info",
            "token",
            "Without the index's audience no OIDC token was requested.",
        )
        return None
    if result.ci == "gitlab" and not _gitlab_has_variable(result, env, audience):
        return None
    get = detect if detect is not None else id_library.detect_credential
    try:
        token = get(audience)
    except id_library.IdentityError as exc:
        result.note("error", "token", f"Getting the job's OIDC token failed: {exc}")
        return None
    if not token:
        result.note(
            "error",
            "token",
            "No OIDC token could be obtained in this job.",
            "Supported: GitHub Actions, GitLab CI/CD, Google Cloud, Buildkite, CircleCI.",
        )
        return None
    result.note("ok", "token", f"Got the job's OIDC token for audience {audience!r}.")
    return token


def _github_can_request(result: Diagnosis, env: Mapping[str, str]) -> bool:
    event = env.get("GITHUB_EVENT_NAME", "")
    if event == "pull_request_target":
        result.note(
            "error",
            "pull-request-target",
            "This run was triggered by pull_request_target: indexes refuse tokens from such "
            "runs, which act for pull requests (forks included) with the base repository's "
            "credentials.",
            "Publish from a workflow triggered by a tag or a published release:\n"
            + GITHUB_TRIGGER_YAML,
        )
    elif is_fork_pull_request(env):
        result.note(
            "error",
            "fork-pull-request",
            "This is a pull request from a fork: GitHub gives such runs no OIDC token at all, "
            "whatever the workflow's permissions, so nothing can be published from it.",
            "Publish from a tag or a published release of the repository itself:\n"
            + GITHUB_TRIGGER_YAML,
        )
        return False
    missing = [
        name
        for name in ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if not env.get(name)
    ]
    if missing:
        result.note(
            "error",
            "id-token-permission",
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: this job "
            "lacks the `id-token: write` permission, so it cannot get an OIDC token.",
            "Give the publishing job (only it) the permission:\n" + GITHUB_PERMISSION_YAML,
        )
        return False
    result.note("ok", "id-token-permission", "The job may request an OIDC token.")
    return True


def _gitlab_has_variable(result: Diagnosis, env: Mapping[str, str], audience: str) -> bool:
    variable = id_token_variable(audience)
    if env.get(variable):
        result.note("ok", "id-tokens", f"{variable} is set (an id_tokens: entry).")
        return True
    others = []
    for name, value in sorted(env.items()):
        if name.endswith("_ID_TOKEN") and value:
            aud = unverified_claims(value).get("aud")
            others.append(f"{name} (aud {aud!r})")
    message = (
        f"{variable} is not set: the job declares no id_tokens: entry for audience "
        f"{audience!r}, so it has no OIDC token for this index."
    )
    if others:
        message += f" It has {', '.join(others)}: the audience must be {audience!r}."
    result.note(
        "error", "id-tokens", message, "In .gitlab-ci.yml:\n" + _gitlab_id_tokens_yaml(audience)
    )
    return False


def _decode(result: Diagnosis, token: str) -> dict[str, Any] | None:
    claims = unverified_claims(token)
    if not claims:
        result.note("error", "token", "The OIDC token is not a JWT with claims.")
        return None
    return claims


# ------------------------------------------------------------------------- registrations


def _index_for(url: str, index_name: str | None) -> tuple[str | None, str | None]:
    """(keyless index name, PyPI site) of an upload URL."""
    parts = urlsplit(url)
    site = _PYPI_SITES.get((parts.hostname or "").lower())
    if site:
        return None, site
    if index_name:
        return index_name, None
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[-1] == "legacy":
        return segments[-2], None
    return "INDEX", None


def _register(
    result: Diagnosis,
    kind: str,
    fields: dict[str, str],
    claims: Mapping[str, Any],
    project: ProjectInfo | None,
    url: str,
    index_name: str | None,
    expected: Mapping[str, str] | None,
) -> None:
    provider = PROVIDERS[kind]
    fields = {k: v for k, v in fields.items() if v}
    try:
        config = provider.validate_config(fields)
    except PublisherConfigError as exc:
        problems = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
        result.note(
            "error",
            "publisher",
            f"No publisher can be registered for this job's identity: {problems}",
        )
        return
    mismatches = [m.message for m in provider.check(config, {}, claims)]
    name = project.name if project and project.name else "PROJECT"
    index, site = _index_for(url, index_name)
    command = None
    if index is not None:
        options = [
            f"--{key.replace('_', '-')} {shlex.quote(value)}" for key, value in fields.items()
        ]
        command = " ".join(
            [
                *("keyless", "publisher", "add", "--index", shlex.quote(index)),
                *("--project", shlex.quote(name), kind, *options),
            ]
        )
    settings_url = None
    if site is not None:
        settings_url = (
            f"{site}/manage/project/{name}/settings/publishing/"
            if project
            else f"{site}/manage/account/publishing/"
        )
    labels = {spec.name: spec.label for spec in provider.fields}
    result.registration = Registration(
        kind=kind,
        fields=fields,
        form=[(labels.get(key, key), value) for key, value in fields.items()],
        project=name,
        index=index,
        command=command,
        settings_url=settings_url,
        mismatches=mismatches,
    )
    for message in mismatches:
        result.note("error", "publisher", f"The index would still refuse this job: {message}")
    if expected:
        _compare_expected(result, kind, fields, claims, expected)


def _compare_expected(
    result: Diagnosis,
    kind: str,
    fields: Mapping[str, str],
    claims: Mapping[str, Any],
    expected: Mapping[str, str],
) -> None:
    provider = PROVIDERS[kind]
    config = {**fields, **{k: v for k, v in expected.items()}}
    try:
        validated = provider.validate_config(config)
    except PublisherConfigError as exc:
        for key, problem in exc.errors.items():
            result.note("error", "expected", f"The expected publisher's {key}: {problem}")
        return
    found = provider.check(validated, {}, claims)
    for mismatch in found:
        result.note(
            "error",
            "expected",
            f"The registered publisher refuses this job: "
            f"{mismatch.message.replace('the publisher', 'the registered publisher')}",
            "Change the job to match, or register the publisher shown below.",
        )
    if not found:
        result.note("ok", "expected", "The registered publisher accepts this job.")


def _job_facts(
    result: Diagnosis,
    claims: Mapping[str, Any],
    fields: dict[str, str],
    default_issuer: str,
    *,
    no_environment: str,
    fix: str,
) -> None:
    """The job's environment and issuer, into the publisher's ``fields``.

    A job without an environment gets a warning; the issuer goes in only when it is not the
    provider's own (the web form's empty issuer field).
    """
    environment = claims.get("environment")
    if isinstance(environment, str) and environment:
        fields["environment"] = environment
        result.note("ok", "environment", f"The job runs in environment {environment!r}.")
    else:
        result.note("warning", "environment", no_environment, fix)
    issuer = str(claims.get("iss") or "")
    if issuer and issuer.rstrip("/") != default_issuer:
        fields["issuer"] = issuer


def _explain_github(
    result: Diagnosis,
    claims: Mapping[str, Any],
    project: ProjectInfo | None,
    url: str,
    index_name: str | None,
    expected: Mapping[str, str] | None,
) -> None:
    repository = str(claims.get("repository") or "")
    owner, _, name = repository.partition("/")
    caller = _WORKFLOW_IN_REF.match(str(claims.get("workflow_ref") or ""))
    callee = _WORKFLOW_IN_REF.match(str(claims.get("job_workflow_ref") or ""))
    # Without a reusable workflow both refs name the same file; with one, the publisher's
    # workflow is the caller's.
    running = caller or callee
    fields: dict[str, str] = {
        "owner": str(claims.get("repository_owner") or owner),
        "repository": name,
        "workflow": running.group("file") if running else "",
    }
    if claims.get("event_name") == "pull_request_target" and not any(
        n.code == "pull-request-target" for n in result.findings
    ):
        result.note(
            "error",
            "pull-request-target",
            "The token says event pull_request_target: indexes refuse it.",
            GITHUB_TRIGGER_YAML,
        )
    if (
        caller is not None
        and callee is not None
        and (caller["repo"], caller["file"]) != (callee["repo"], callee["file"])
    ):
        target = str(claims["job_workflow_ref"]).split("@", 1)[0]
        fields["reusable_workflow"] = target
        pypi = urlsplit(url).hostname in _PYPI_SITES
        result.note(
            "warning",
            "reusable-workflow",
            f"This job runs the reusable workflow {target}, called by "
            f"{caller.group('repo')}/.github/workflows/{caller.group('file')}. Register the "
            f"CALLING workflow ({caller.group('file')!r}) as the workflow and the called one "
            "in keyless' reusable_workflow field (optionally pinned with @ref); the publisher "
            "below does."
            + (
                " PyPI matches only the workflow that runs the job, so a reusable workflow "
                "from another repository cannot publish there."
                if pypi
                else ""
            ),
        )
    _job_facts(
        result,
        claims,
        fields,
        GITHUB_ISSUER,
        no_environment="The job has no environment: a publisher that names one (as "
        "recommended) refuses it, and one that names none accepts every job of this workflow.",
        fix="Give the publishing job an environment (it can require a reviewer's approval):\n"
        + GITHUB_PERMISSION_YAML,
    )
    _register(result, "github", fields, claims, project, url, index_name, expected)


def _explain_gitlab(
    result: Diagnosis,
    claims: Mapping[str, Any],
    project: ProjectInfo | None,
    url: str,
    index_name: str | None,
    expected: Mapping[str, str] | None,
) -> None:
    path = str(claims.get("project_path") or "")
    namespace, _, project_name = path.rpartition("/")
    config_path = _GITLAB_CONFIG.search(str(claims.get("ci_config_ref_uri") or ""))
    fields = {
        "namespace": namespace,
        "project": project_name,
        "workflow_filepath": config_path.group("path") if config_path else "",
    }
    _job_facts(
        result,
        claims,
        fields,
        GITLAB_ISSUER,
        no_environment="The job has no environment: a publisher that names one refuses it.",
        fix="Give the publishing job an environment in .gitlab-ci.yml:\n"
        + _gitlab_id_tokens_yaml(result.audience or "pypi"),
    )
    _register(result, "gitlab", fields, claims, project, url, index_name, expected)
