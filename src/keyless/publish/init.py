"""`keyless init`: write the release workflow for a project, and say which publishers to register.

GitHub Actions (``.github/workflows/release.yml``, rendered by keyless.workflows):
triggered by pushing a ``v*`` tag; a build job (``python -m build``, uploaded as an
artifact), a test matrix over the Python versions the project supports, then one publish job
per index, staged (``test`` before ``prod``), each with ``permissions: id-token: write`` at
the job level and its own ``environment`` (whose URL is the project's page there).
GitLab CI/CD (``.gitlab-ci.yml``): stages build, test, publish, the publish jobs with
``id_tokens:`` for each index's audience.

    result = init_workflow(Path("."), indexes=[("test", TEST_URL), ("prod", PROD_URL)])
    for publisher in result.publishers:
        print(publisher.command)

Nothing is printed; an existing file is never overwritten unless ``force``.
"""

from __future__ import annotations

import re
import shlex
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from keyless.oidc.providers import PROVIDERS
from keyless.publish.errors import PublishError
from keyless.publish.project import ProjectInfo, git_output, read_project
from keyless.workflows import (
    CLIENT_PATH,
    DEFAULT_TAGS,
    Client,
    ClientSource,
    PublishJob,
    TestJob,
    describe_uv,
    github_trigger,
    github_workflow,
    gitlab_pipeline,
    project_page,
)

__all__ = [
    "PYPI_INDEXES",
    "SUPPORTED_PYTHONS",
    "InitResult",
    "PublisherSettings",
    "discover_audiences",
    "init_workflow",
    "origin_repository",
    "python_versions_for",
]

Provider = Literal["github", "gitlab"]

# The CPython releases a test matrix may name, each with its newest stable patch release in
# the manifest setup-python installs from (actions/python-versions, versions-manifest.json)
# and as python:X.Y images. `python-version: "3.12"` installs the newest 3.12.x, so a version
# is tested only when requires-python admits that one. Add a version when it is stable there.
SUPPORTED_PYTHONS: dict[str, str] = {
    "3.10": "3.10.21",
    "3.11": "3.11.16",
    "3.12": "3.12.14",
    "3.13": "3.13.15",
    "3.14": "3.14.7",
}
PYPI_INDEXES: tuple[tuple[str, str], ...] = (
    ("testpypi", "https://test.pypi.org/legacy/"),
    ("pypi", "https://upload.pypi.org/legacy/"),
)
# The audiences PyPI and TestPyPI answer on /_/oidc/audience.
KNOWN_AUDIENCES = {"upload.pypi.org": "pypi", "test.pypi.org": "testpypi"}
_PYPI_SITES = {"upload.pypi.org": "https://pypi.org", "test.pypi.org": "https://test.pypi.org"}
GITHUB_WORKFLOW = Path(".github/workflows/release.yml")
GITLAB_CONFIG = Path(".gitlab-ci.yml")
# Index and environment names become job ids and YAML scalars: keep them plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_REMOTE = re.compile(
    r"^(?:[a-z+]+://(?:[^@/]+@)?[^/:]+(?::\d+)?/|[^@/]+@[^:/]+:)(?P<path>.+?)(?:\.git)?/?$"
)


@dataclass(frozen=True)
class PublisherSettings:
    """A trusted publisher to register on one index so the generated workflow may publish.

    ``fields`` use keyless' field names (see ``keyless.oidc.providers.PROVIDERS[kind].fields``),
    ``form`` the web form's labels. ``command`` registers it on a keyless index (run where
    the index's data lives); PyPI and TestPyPI take the same settings on ``settings_url``.
    """

    index: str
    upload_url: str
    environment: str
    kind: str
    fields: dict[str, str]
    form: list[tuple[str, str]]
    project: str
    command: str | None
    settings_url: str | None
    audience: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data."""
        return {
            "index": self.index,
            "upload_url": self.upload_url,
            "environment": self.environment,
            "kind": self.kind,
            "fields": self.fields,
            "form": [{"label": label, "value": value} for label, value in self.form],
            "project": self.project,
            "command": self.command,
            "settings_url": self.settings_url,
            "audience": self.audience,
        }


@dataclass
class InitResult:
    """What `init_workflow` wrote (or would write) and what to register."""

    files: list[Path]
    publishers: list[PublisherSettings]
    project: ProjectInfo
    provider: str
    python_versions: list[str]
    client: str
    contents: dict[Path, str] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)
    client_install: str = ""  # where the jobs' client comes from and how it is pinned

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "files": [str(path) for path in self.files],
            "provider": self.provider,
            "client": self.client,
            "client_install": self.client_install,
            "project": self.project.name,
            "python_versions": self.python_versions,
            "publishers": [p.to_dict() for p in self.publishers],
            "notes": self.notes,
        }


# ------------------------------------------------------------------------- reading inputs


def origin_repository(project_dir: str | Path) -> str | None:
    """The repository path (``owner/repo``, GitLab ``group/sub/project``) of the git remote
    ``origin``, from an https or ssh URL; None without git, a checkout or that remote.

    Never raises.
    """
    url = git_output(["remote", "get-url", "origin"], project_dir)
    match = _REMOTE.match(url) if url else None
    return match.group("path") if match else None


def python_versions_for(requires_python: str | None) -> list[str]:
    """The supported CPython versions (SUPPORTED_PYTHONS) that ``requires_python`` admits.

    A version counts when requires-python admits its newest release, the one CI installs:
    ``>=3.11.2`` admits 3.11, ``<=3.12`` (3.12.0 only) and ``!=3.12.*`` do not admit 3.12.
    Raises PublishError for a specifier that does not parse or admits none of them.
    """
    if not requires_python:
        return list(SUPPORTED_PYTHONS)
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier as exc:
        raise PublishError(
            f"requires-python {requires_python!r} is not a version specifier: {exc}",
            hint="write it like '>=3.10'.",
        ) from exc
    chosen = [
        python for python, newest in SUPPORTED_PYTHONS.items() if spec.contains(Version(newest))
    ]
    if not chosen:
        raise PublishError(
            f"requires-python {requires_python!r} admits none of the supported Python "
            f"versions ({', '.join(SUPPORTED_PYTHONS)}).",
            hint="widen requires-python in pyproject.toml, or pass the versions to test.",
        )
    return chosen


def discover_audiences(
    indexes: Sequence[tuple[str, str]], http: httpx.Client, *, client: Client = "keyless"
) -> dict[str, str]:
    """Each index's Trusted Publishing audience, as the chosen client will ask for it.

    ``keyless publish`` tries PEP 807 discovery first (an index may have its own audience);
    ``uv publish`` asks the host's ``/_/oidc/audience``. PyPI's and TestPyPI's are known
    without asking. Indexes that cannot be asked are left out (pass their audience).

    Raises PublishError for an index whose TLS certificate this machine does not trust: it
    answered, and "its audience is not known" would send the user looking in the wrong place.
    Never raises for an index that does not answer.
    """
    from keyless.publish.credentials import discover

    found: dict[str, str] = {}
    for name, url in indexes:
        host = (urlsplit(url).hostname or "").lower()
        if host in KNOWN_AUDIENCES:
            found[name] = KNOWN_AUDIENCES[host]
            continue
        try:
            if client == "keyless":
                discovery = discover(url, http)
                if discovery is not None:
                    found[name] = discovery.audience
            else:
                parts = urlsplit(url)
                answer = http.get(f"{parts.scheme}://{parts.netloc}/_/oidc/audience")
                audience = answer.json().get("audience") if answer.status_code == 200 else None
                if isinstance(audience, str) and audience:
                    found[name] = audience
        except (PublishError, httpx.HTTPError, ValueError, AttributeError) as exc:
            if certificate_untrusted(exc):
                raise _untrusted(name, url) from exc
            continue
    return found


def certificate_untrusted(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a TLS certificate this machine does not trust.

    httpx wraps the ``ssl`` error in its own, and callers wrap that in PublishError: the
    chain is walked rather than the message read, which the TLS library may word differently.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _untrusted(name: str, url: str) -> PublishError:
    parts = urlsplit(url)
    return PublishError(
        f"the TLS certificate of {parts.scheme}://{parts.netloc} (index {name}) is not "
        "trusted by this machine, so its Trusted Publishing audience could not be asked.",
        hint=(
            "trust the CA that signed it: pass its PEM file with --cert (for a certificate "
            "made by `keyless dev-cert`, the ca.pem it wrote) or set SSL_CERT_FILE to it; "
            f"or give the audience yourself with --audience {name}=AUDIENCE."
        ),
        context={"url": f"{parts.scheme}://{parts.netloc}"},
    )


# --------------------------------------------------------------------------- the workflow


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise PublishError(
            f"{kind} name {name!r} is not usable in a workflow.",
            hint="use letters, digits, '-', '_' and '.', starting with a letter or digit.",
        )
    return name


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.username:
        raise PublishError(
            f"{url!r} is not an upload URL (https://HOST/…/legacy/, without credentials).",
            hint="for keyless indexes: https://HOST/INDEX/legacy/",
        )
    if not parts.path.endswith("/"):
        url += "/"
    return url


def _import_name(folder: Path, project: str) -> str:
    """The package a smoke test imports: the project's own, found under src/ or the root."""
    wanted = canonicalize_name(project).replace("-", "_")
    for base in (folder / "src", folder):
        if (base / wanted / "__init__.py").is_file() or (base / f"{wanted}.py").is_file():
            return wanted
    source = folder / "src"
    if source.is_dir():
        packages = sorted(p.parent.name for p in source.glob("*/__init__.py"))
        if packages:
            return packages[0]
    return wanted


def _test_command(folder: Path, project: str) -> str:
    if any((folder / name).is_dir() for name in ("tests", "test")):
        return "python -m pip install pytest && python -m pytest"
    return f'python -c "import {_import_name(folder, project)}"'


def _publisher(
    *,
    provider: Provider,
    index: str,
    url: str,
    environment: str,
    repository: str,
    project: str,
    audience: str | None,
) -> PublisherSettings:
    if provider == "github":
        owner, _, name = repository.partition("/")
        fields = {
            "owner": owner,
            "repository": name,
            "workflow": GITHUB_WORKFLOW.name,
            "environment": environment,
        }
    else:
        namespace, _, name = repository.rpartition("/")
        fields = {
            "namespace": namespace,
            "project": name,
            "workflow_filepath": str(GITLAB_CONFIG),
            "environment": environment,
        }
    spec = PROVIDERS[provider]
    labels = {f.name: f.label for f in spec.fields}
    host = (urlsplit(url).hostname or "").lower()
    site = _PYPI_SITES.get(host)
    command = None
    settings_url = None
    if site:
        settings_url = f"{site}/manage/account/publishing/"
    else:
        options = [
            f"--{key.replace('_', '-')} {shlex.quote(value)}" for key, value in fields.items()
        ]
        command = " ".join(
            [
                *("keyless", "publisher", "add", "--index", shlex.quote(index)),
                *("--project", shlex.quote(project), provider, *options),
            ]
        )
    return PublisherSettings(
        index=index,
        upload_url=url,
        environment=environment,
        kind=provider,
        fields=fields,
        form=[(labels[key], value) for key, value in fields.items()],
        project=project,
        command=command,
        settings_url=settings_url,
        audience=audience,
    )


def _registrations(publishers: Sequence[PublisherSettings]) -> list[str]:
    """The header's lines naming each publisher to register (comment text, without '#')."""
    lines = []
    for publisher in publishers:
        summary = ", ".join(f"{label}: {value}" for label, value in publisher.form)
        lines.append(f"  {publisher.index} ({publisher.upload_url}): {summary}")
    return lines


def init_workflow(
    project_dir: str | Path,
    *,
    provider: Provider = "github",
    indexes: Sequence[tuple[str, str]] | None = None,
    python_versions: Sequence[str] | None = None,
    environments: Sequence[str] | None = None,
    audiences: Mapping[str, str] | None = None,
    repository: str | None = None,
    client: Client = "keyless",
    test_command: str | None = None,
    client_source: ClientSource | None = None,
    force: bool = False,
    write: bool = True,
) -> InitResult:
    """Write the release workflow for the project in ``project_dir``.

    ``indexes``: (name, upload URL) pairs, published to in this order, each after the one
    before succeeded (default TestPyPI then PyPI). ``environments``: the CI environment of
    each publish job (default: ``testpypi``/``pypi`` for PyPI's, else the index names).
    ``python_versions``: the test matrix (default: the supported versions requires-python
    admits). ``audiences``: index name -> Trusted Publishing audience, needed for GitLab's
    ``id_tokens:`` (PyPI's are known; see `discover_audiences`). ``repository``:
    ``owner/repo`` (GitLab ``namespace/project``) for the publisher settings (default: the
    git remote ``origin``). ``client``: what publishes (``keyless publish`` or
    ``uv publish``). ``test_command``: the test job's shell command (default: pytest when
    the project has tests, else importing its package). ``client_source``: the keyless index
    the jobs install the keyless client from (see keyless.publish.client_source; uv comes from
    PyPI). ``write=False`` computes everything and writes nothing.

    Raises PublishError when pyproject.toml is missing or has no [project] name, a name or
    URL cannot go in a workflow, a GitLab index's audience is unknown, the keyless client
    has no source, or the file exists and ``force`` is false.
    """
    folder = Path(project_dir)
    project = read_project(folder)
    if project is None or project.name is None:
        raise PublishError(
            f"{folder / 'pyproject.toml'} is missing or has no [project] name.",
            hint="keyless init reads the project's name and requires-python from it.",
            context={"file": str(folder / "pyproject.toml")},
        )
    targets = list(indexes or PYPI_INDEXES)
    if not targets:
        raise PublishError("no index to publish to.", hint="give at least one index.")
    names = [_check_name("index", name) for name, _ in targets]
    if len(set(names)) != len(names):
        raise PublishError(f"index names repeat: {', '.join(names)}.")
    urls = [_check_url(url) for _, url in targets]
    if environments is None:
        chosen_environments = names
    elif len(environments) != len(targets):
        raise PublishError(
            f"{len(environments)} environment(s) for {len(targets)} index(es).",
            hint="give one environment per index, in the same order.",
        )
    else:
        chosen_environments = [_check_name("environment", e) for e in environments]
    versions = list(python_versions or python_versions_for(project.requires_python))
    for version in versions:
        if not re.fullmatch(r"3\.\d+", version):
            raise PublishError(f"Python version {version!r} is not like '3.12'.")
    known = dict(audiences or {})
    for name, url in zip(names, urls, strict=True):
        host = (urlsplit(url).hostname or "").lower()
        if name not in known and host in KNOWN_AUDIENCES:
            known[name] = KNOWN_AUDIENCES[host]
    if provider == "gitlab":
        unknown = [name for name in names if name not in known]
        if unknown:
            raise PublishError(
                f"the Trusted Publishing audience of {', '.join(unknown)} is not known; "
                "GitLab's id_tokens: must name it.",
                hint="pass --audience NAME=AUDIENCE (keyless init asks reachable indexes).",
            )
    notes: list[str] = []
    slug = repository or origin_repository(folder)
    if not slug or "/" not in slug:
        slug = "OWNER/REPO" if provider == "github" else "NAMESPACE/PROJECT"
        notes.append(
            f"No git remote 'origin' names the repository: the publisher settings say {slug}; "
            "pass --repository to fill it in."
        )

    publishers = [
        _publisher(
            provider=provider,
            index=name,
            url=url,
            environment=environment,
            repository=slug,
            project=project.name,
            audience=known.get(name),
        )
        for name, url, environment in zip(names, urls, chosen_environments, strict=True)
    ]
    test = (test_command or "").strip() or _test_command(folder, project.name)
    if "\n" in test:
        raise PublishError("the test command is one line of shell.", hint="join lines with &&.")
    path = folder / (GITHUB_WORKFLOW if provider == "github" else GITLAB_CONFIG)
    if path.exists() and not force:
        raise PublishError(
            f"{path} already exists.",
            hint="pass --force to overwrite it (or move it aside first).",
            context={"file": str(path)},
        )
    if client == "keyless" and client_source is None:
        raise PublishError(
            "keyless is not on PyPI, so a job cannot install it from there pinned by sha256.",
            hint="pass --client-source with the URL of a keyless index (it serves its own "
            f"client at {CLIENT_PATH}), or --client uv to publish with uv.",
        )
    if provider == "github":
        text = _github(project, publishers, versions, client, test, client_source)
    else:
        text = _gitlab(project, publishers, versions, client, test, client_source)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return InitResult(
        files=[path],
        publishers=publishers,
        project=project,
        provider=provider,
        python_versions=versions,
        client=client,
        contents={path: text},
        notes=notes,
        client_install=client_source.describe() if client_source else describe_uv(),
    )


def _github(
    project: ProjectInfo,
    publishers: Sequence[PublisherSettings],
    versions: list[str],
    client: Client,
    test_command: str,
    client_source: ClientSource | None,
) -> str:
    assert project.name is not None  # init_workflow refuses a project without one
    header = [
        f"Release {project.name}: build, test, publish",
        "",
        f"Written by `keyless init`. Pushing a tag `{DEFAULT_TAGS}` releases {project.name} with",
        "Trusted Publishing: no API token is stored anywhere. Each index must know this",
        "workflow as a trusted publisher first:",
        *_registrations(publishers),
    ]
    return github_workflow(
        header=header,
        trigger=github_trigger(),
        client=client,
        client_source=client_source,
        check=client == "keyless",
        test=TestJob(versions, test_command),
        jobs=_publish_jobs(project.name, publishers),
    )


def _gitlab(
    project: ProjectInfo,
    publishers: Sequence[PublisherSettings],
    versions: list[str],
    client: Client,
    test_command: str,
    client_source: ClientSource | None,
) -> str:
    assert project.name is not None  # init_workflow refuses a project without one
    header = [
        f"Release {project.name}: build, test, publish",
        "",
        "Written by `keyless init`. Every pipeline builds and tests; pipelines of "
        f"`{DEFAULT_TAGS}` tags also",
        f"release {project.name} with Trusted Publishing: no API token is stored anywhere. "
        "Each index",
        "must know this pipeline as a trusted publisher first:",
        *_registrations(publishers),
        "",
        "The publish jobs get their OIDC tokens from `id_tokens:`; each variable is named "
        "after its",
        "audience (<AUDIENCE>_ID_TOKEN), which is where publishing clients look for it.",
    ]
    return gitlab_pipeline(
        header=header,
        client=client,
        client_source=client_source,
        check=client == "keyless",
        test=TestJob(versions, test_command),
        jobs=_publish_jobs(project.name, publishers),
    )


def _publish_jobs(project: str, publishers: Sequence[PublisherSettings]) -> list[PublishJob]:
    """One publish job per publisher, in order, its environment linked to the project's page."""
    return [
        PublishJob(
            job=f"publish-{publisher.index}",
            index=publisher.index,
            upload_url=publisher.upload_url,
            environment=publisher.environment,
            environment_url=project_page(publisher.upload_url, project),
            audience=publisher.audience or "",
        )
        for publisher in publishers
    ]
