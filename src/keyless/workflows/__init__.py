"""The CI configuration keyless writes: its templates (``templates/``) and their renderer.

`keyless init` (keyless.publish.init) and the index's Publishing page (the preview in
keyless.index.web.snippets) both call `github_workflow` and `gitlab_pipeline`, so the two
cannot drift apart: a build job without ``id-token`` (GitHub) or ``id_tokens:`` (GitLab) that
keeps the distributions as an artifact, optionally a test matrix, then one publish job per
index, the only jobs that get an OIDC token.

Every action is pinned by the full commit SHA of a release (ACTIONS, the one home of these
pins), with the release in a comment for readers and update bots. A layer of its own, because
both the release client and the web pages use it and neither may import the other; it imports
only the standard library, packaging and, of keyless, the providers' facts (oidc).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from keyless.oidc.providers.gitlab import id_token_variable

from . import templates
from .client import CLIENT_PATH, Client, ClientSource, describe_uv, install_commands, uv_pin

__all__ = [
    "ACTIONS",
    "CLIENT_PATH",
    "DEFAULT_TAGS",
    "Client",
    "ClientSource",
    "PinnedAction",
    "PublishJob",
    "TestJob",
    "comment",
    "describe_uv",
    "flow_list",
    "github_trigger",
    "github_workflow",
    "gitlab_pipeline",
    "gitlab_rule",
    "gitlab_script",
    "install_commands",
    "project_page",
    "publish_command",
    "uv_pin",
    "yaml_command",
    "yaml_str",
]


@dataclass(frozen=True)
class PinnedAction:
    """An action at the commit its release tag names (``git rev-parse TAG^{commit}``)."""

    repository: str
    commit: str
    version: str

    @property
    def uses(self) -> str:
        """The value of ``uses:``, with the release as a trailing YAML comment."""
        return f"{self.repository}@{self.commit} # {self.version}"


# The current majors (all on the node24 runtime; the node20 majors were past their removal
# date), looked up in each action's own repository. To update one: the new tag's commit
# there, then regenerate .github/workflows/release.yml (tests/publish/test_workflow_lint.py
# says so when it is stale).
ACTIONS: dict[str, PinnedAction] = {
    "checkout": PinnedAction(
        "actions/checkout", "3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"
    ),
    "setup_python": PinnedAction(
        "actions/setup-python", "5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"
    ),
    "upload_artifact": PinnedAction(
        "actions/upload-artifact", "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"
    ),
    "download_artifact": PinnedAction(
        "actions/download-artifact", "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"
    ),
}

# Releases are `v*` tags: the one event per release (a GitHub release published from a new
# tag pushes that tag too, so listening to both would run the workflow twice). A release
# run's OIDC token carries ref refs/tags/vX.Y.Z either way.
DEFAULT_TAGS = "v*"

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/*@-]*\Z")
_INDICATORS = frozenset("!&*{}[]|>'\"%@`#,?:-")
_PYPI_SITES = {"upload.pypi.org": "https://pypi.org", "test.pypi.org": "https://test.pypi.org"}


@dataclass(frozen=True)
class TestJob:
    """The test matrix between build and publish (``keyless init`` writes one)."""

    python_versions: Sequence[str]
    command: str


@dataclass(frozen=True)
class PublishJob:
    """One publish job: uploads the build job's artifact to ``upload_url``."""

    job: str  # the job id
    index: str  # the index's name, in the job's and the step's titles
    upload_url: str
    environment: str | None = None
    environment_url: str | None = None
    environment_note: str | None = None  # a comment after the environment's name
    audience: str = ""  # GitLab: the index's Trusted Publishing audience, for `id_tokens:`


def yaml_str(value: str) -> str:
    """A YAML scalar for ``value``: bare when safe, else double-quoted (JSON is valid YAML)."""
    if _PLAIN.match(value) and value.lower() not in ("true", "false", "yes", "no", "null", "on"):
        return value
    return json.dumps(value)


def yaml_command(command: str) -> str:
    """A shell command as a YAML scalar: plain unless YAML would read it otherwise."""
    if (
        command[:1] in _INDICATORS
        or ": " in command
        or " #" in command
        or command != command.strip()
    ):
        return json.dumps(command)
    return command


def flow_list(items: Sequence[str]) -> str:
    """A YAML flow sequence of double-quoted strings."""
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def comment(text: str) -> str:
    """``text`` as one YAML comment line (line breaks in typed values cannot end it)."""
    return ("# " + " ".join(text.splitlines())).rstrip()


def github_trigger(ref: str | None = None) -> str:
    """The ``on:`` block (indented under it) for runs whose ref matches a publisher's ``ref``.

    A tag or branch glob becomes that push filter; no ref (or another kind) means releases:
    pushes of DEFAULT_TAGS tags.
    """
    ref = (ref or "").strip()
    if ref.startswith("refs/heads/"):
        return f"  push:\n    branches: {flow_list([ref.removeprefix('refs/heads/')])}"
    tags = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else DEFAULT_TAGS
    return f"  push:\n    tags: {flow_list([tags])}"


def project_page(upload_url: str, project: str) -> str | None:
    """The web page of ``project`` on the index behind ``upload_url``: PyPI's and TestPyPI's
    project pages, a keyless index's ``/{index}/project/{name}/``; None for other URLs."""
    parts = urlsplit(upload_url)
    name = canonicalize_name(project)
    site = _PYPI_SITES.get((parts.hostname or "").lower())
    if site:
        return f"{site}/project/{name}/"
    path = parts.path.rstrip("/")
    if path.endswith("/legacy"):
        return f"{parts.scheme}://{parts.netloc}{path.removesuffix('legacy')}project/{name}/"
    return None


def publish_command(client: Client, upload_url: str) -> str:
    """The shell command that uploads ``dist/*`` by Trusted Publishing."""
    url = shlex.quote(upload_url)
    if client == "uv":
        return f"uv publish --trusted-publishing always --publish-url {url} dist/*"
    return f"keyless publish --repository-url {url} dist/*"


def _run(commands: Sequence[str], indent: str) -> str:
    """A step's ``run:`` value: one one-line command inline, else a literal block (each line
    of a multi-line command, such as a heredoc, indented with it)."""
    if len(commands) == 1 and "\n" not in commands[0]:
        return commands[0]
    lines = "\n".join(commands).splitlines()
    return "|\n" + "\n".join(f"{indent}{line}" if line else "" for line in lines)


def gitlab_script(commands: Sequence[str], indent: str = "    ") -> str:
    """The items of a GitLab job's ``script:``: a multi-line command as one block item."""
    items = []
    for command in commands:
        if "\n" in command:
            lines = "\n".join(f"{indent}  {line}" for line in command.splitlines())
            items.append(f"{indent}- |\n{lines}")
        else:
            items.append(f"{indent}- {command}")
    return "\n".join(items)


def _environment(job: PublishJob, indent: str) -> str:
    """The job's ``environment:`` block, its keys at ``indent`` ("" without an environment)."""
    if not job.environment:
        return ""
    note = f"  # {' '.join(job.environment_note.split())}" if job.environment_note else ""
    lines = [f"{indent}environment:", f"{indent}  name: {yaml_str(job.environment)}{note}"]
    if job.environment_url:
        lines.append(f"{indent}  url: {yaml_str(job.environment_url)}")
    return "\n".join(lines)


def github_workflow(
    *,
    header: Sequence[str],
    trigger: str,
    client: Client,
    jobs: Sequence[PublishJob],
    client_source: ClientSource | None = None,
    check: bool = False,
    test: TestJob | None = None,
) -> str:
    """The release workflow: build, then ``test`` if given, then each of ``jobs`` in turn.

    ``header``: the comment lines at the top (without ``#``). ``trigger``: the ``on:``
    block (see `github_trigger`). ``client_source``: where the keyless client comes from
    (see `install_commands`). ``check``: run ``keyless check`` on the distributions in
    the build job.
    """
    pins = {name: action.uses for name, action in ACTIONS.items()}
    check_step = ""
    if check and jobs:
        install = _run(install_commands("keyless", client_source), " " * 10)
        check_step = (
            f"      - name: Install keyless\n        run: {install}\n"
            "      - name: Check the distributions\n        run: keyless check dist/*"
        )
    return _staged(
        ("github-release.yml", "github-test-job.yml", "github-publish-job.yml"),
        header=header,
        build={"trigger": trigger, "check_step": check_step},
        test=test,
        jobs=jobs,
        publish=lambda job: {
            "index": job.index,
            "environment": _environment(job, " " * 4),
            "client": client,
            "install": _run(install_commands(client, client_source), " " * 10),
            "publish_command": publish_command(client, job.upload_url),
        },
        common=pins,
    )


def _staged(
    names: tuple[str, str, str],
    *,
    header: Sequence[str],
    build: dict[str, str],
    test: TestJob | None,
    jobs: Sequence[PublishJob],
    publish: Callable[[PublishJob], dict[str, str]],
    common: dict[str, str],
) -> str:
    """What a GitHub workflow and a GitLab pipeline share: the build template (``names[0]``),
    the test job's if any, then the publish job's for each of ``jobs``, each needing every
    job before it, so indexes are staged. ``common`` goes to every template."""
    build_name, test_name, publish_name = names
    comments = "\n".join(comment(line) for line in header)
    parts = [templates.render(build_name, {"header": comments, **build, **common})]
    previous = ["build"]
    if test is not None:
        values = {
            "python_versions": flow_list(test.python_versions),
            "test_command": yaml_command(test.command),
        }
        parts.append(templates.render(test_name, {**values, **common}))
        previous.append("test")
    for job in jobs:
        values = {"job": job.job, "needs": flow_list(previous), **publish(job)}
        parts.append(templates.render(publish_name, {**values, **common}))
        previous = [*previous, job.job]
    return "".join(parts)


def gitlab_rule(ref: str | None = None) -> str:
    """The ``if:`` of a GitLab publish job's rule, for pipelines whose ref matches a
    publisher's ``ref`` (quoted for YAML).

    A branch becomes that branch; a tag glob a regular expression on the tag; no ref (or
    another kind) means releases: DEFAULT_TAGS tags, as `github_trigger` does.
    """
    ref = (ref or "").strip()
    if ref.startswith("refs/heads/"):
        expression = f"$CI_COMMIT_BRANCH == {json.dumps(ref.removeprefix('refs/heads/'))}"
    else:
        tags = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else DEFAULT_TAGS
        pattern = "^" + ".*".join(re.escape(part) for part in tags.split("*"))
        # A trailing '*' is "starts with": `v*` is /^v/; otherwise the whole tag must match.
        pattern = pattern.removesuffix(".*") if tags.endswith("*") else pattern + "$"
        slashes = pattern.replace("/", "\\/")  # '/' ends a GitLab regular expression
        expression = f"$CI_COMMIT_TAG =~ /{slashes}/"
    return "'" + expression.replace("'", "''") + "'"


def gitlab_pipeline(
    *,
    header: Sequence[str],
    client: Client,
    jobs: Sequence[PublishJob],
    client_source: ClientSource | None = None,
    check: bool = False,
    test: TestJob | None = None,
    ref: str | None = None,
) -> str:
    """The release pipeline (``.gitlab-ci.yml``): build, then ``test`` if given, then each of
    ``jobs`` in turn, on pipelines whose ref `gitlab_rule` admits.

    ``header``: the comment lines at the top (without ``#``). ``client_source``: where the
    keyless client comes from (see `install_commands`). ``check``: run ``keyless check`` on
    the distributions in the build job. Each publish job declares an ID token for its
    ``audience`` in the variable publishing clients read (<AUDIENCE>_ID_TOKEN) and needs
    every job before it, so indexes are staged.
    """
    check_step = ""
    if check and jobs:
        check_step = gitlab_script(
            [*install_commands("keyless", client_source), "keyless check dist/*"]
        )
    return _staged(
        ("gitlab-ci.yml", "gitlab-test-job.yml", "gitlab-publish-job.yml"),
        header=header,
        build={"test_stage": "  - test" if test is not None else "", "check_step": check_step},
        test=test,
        jobs=jobs,
        publish=lambda job: {
            "rule": gitlab_rule(ref),
            "environment": _environment(job, " " * 2),
            "token_variable": id_token_variable(job.audience),
            "audience": json.dumps(job.audience),
            "install": gitlab_script(install_commands(client, client_source)),
            "publish_command": publish_command(client, job.upload_url),
        },
        common={},
    )
