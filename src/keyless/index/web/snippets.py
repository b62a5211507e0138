"""The CI configuration that matches a publisher entry, shown next to the form as a preview.

The text is plain (escaped when rendered); values the user typed are quoted as YAML strings
when they are not simple words, so a preview of a half-typed entry is still valid YAML. The
GitHub workflow is the one `keyless init` writes (keyless.workflows renders both),
and every preview installs the client with the same commands.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from keyless.oidc.providers import GITHUB_ISSUER, GITLAB_ISSUER
from keyless.workflows import (
    CLIENT_PATH,
    ClientSource,
    PublishJob,
    comment,
    github_trigger,
    github_workflow,
    gitlab_script,
    install_commands,
    publish_command,
    yaml_str,
)

__all__ = ["Snippet", "env_var_for", "snippet", "yaml_str"]


@dataclass(frozen=True)
class Snippet:
    where: str  # the file (and repository) the text belongs in
    text: str


def env_var_for(audience: str) -> str:
    """Where a GitLab job finds its ID token: `<AUD>_ID_TOKEN`, non [A-Z0-9_] as '_'.

    The rule of the `id` library (and so of `keyless publish`, see
    publish.ambient.gitlab_token_variable): a leading digit becomes '_' too.
    """
    return re.sub(r"[^A-Z0-9_]|^[^A-Z_]", "_", audience.upper()) + "_ID_TOKEN"


def snippet(
    kind: str,
    values: Mapping[str, str],
    *,
    upload_url: str,
    audience: str,
    client_source: ClientSource | None,
) -> Snippet:
    """The CI configuration for a publisher of `kind` with these (possibly unchecked) values.

    ``client_source``: the keyless client this index serves, which the jobs install pinned by
    sha256; without one (the index cannot serve its client) the text says so instead.
    """
    if client_source is None:
        return Snippet(
            "(no preview)",
            f"# This index cannot serve its release client (see {CLIENT_PATH}), so there is\n"
            "# no pinned install step to show. Run `keyless init` against a keyless index that\n"
            "# serves one.\n",
        )
    if kind == "github":
        return _github(values, upload_url, client_source)
    publish = publish_command("keyless", upload_url)
    install = ["python -m pip install build", *install_commands("keyless", client_source)]
    if kind == "gitlab":
        return _gitlab(values, install, publish, audience)
    if kind == "google":
        return _google(values, install, publish)
    return _generic(values, install, publish, audience)


def _get(values: Mapping[str, str], name: str, placeholder: str) -> str:
    return (values.get(name) or "").strip() or placeholder


def _index_name(upload_url: str) -> str:
    """The index of a keyless upload URL (``…/{index}/legacy/``), else its host."""
    parts = urlsplit(upload_url)
    segments = parts.path.rstrip("/").split("/")
    if len(segments) >= 2 and segments[-1] == "legacy" and segments[-2]:
        return segments[-2]
    return parts.hostname or "the index"


def _github(values: Mapping[str, str], upload_url: str, source: ClientSource) -> Snippet:
    owner = _get(values, "owner", "OWNER")
    repository = _get(values, "repository", "REPOSITORY")
    workflow = _get(values, "workflow", "release.yml")
    environment = (values.get("environment") or "").strip()
    reusable = (values.get("reusable_workflow") or "").strip()
    issuer = (values.get("issuer") or "").strip()
    ref = (values.get("ref") or "").strip()
    header = [f".github/workflows/{workflow} in {owner}/{repository}"]
    if issuer and issuer.rstrip("/") != GITHUB_ISSUER:
        header.append(f"tokens issued by {issuer}")
    if reusable:
        target = reusable if "@" in reusable else f"{reusable}@REF"
        lines = [
            *(comment(line) for line in header),
            "name: release",
            "on:",
            github_trigger(ref),
            "jobs:",
            "  publish:",
            "    # The reusable workflow's publishing job runs the upload"
            + (f" in environment {yaml_str(environment)}" if environment else "")
            + ".",
            "    permissions:",
            "      id-token: write  # lets the called workflow ask GitHub for an OIDC token",
            "      contents: read",
            f"    uses: {yaml_str(target)}",
        ]
        return Snippet(f".github/workflows/{workflow}", "\n".join(lines) + "\n")
    text = github_workflow(
        header=header,
        trigger=github_trigger(ref),
        client="keyless",
        client_source=source,
        check=True,
        jobs=[
            PublishJob(
                job="publish",
                index=_index_name(upload_url),
                upload_url=upload_url,
                environment=environment or None,
                environment_note="must match the publisher",
            )
        ],
    )
    return Snippet(f".github/workflows/{workflow}", text)


def _gitlab(values: Mapping[str, str], install: list[str], publish: str, audience: str) -> Snippet:
    namespace = _get(values, "namespace", "NAMESPACE")
    project = _get(values, "project", "PROJECT")
    path = _get(values, "workflow_filepath", ".gitlab-ci.yml")
    environment = (values.get("environment") or "").strip()
    ref = (values.get("ref") or "").strip()
    issuer = (values.get("issuer") or "").strip() or GITLAB_ISSUER
    host = urlsplit(issuer).netloc or "gitlab.com"
    lines = [f"# {path} in {host}/{namespace}/{project} (the top-level pipeline file)"]
    lines += ["publish:", "  image: python:3-slim", "  stage: deploy"]
    if environment:
        lines.append(f"  environment: {yaml_str(environment)}  # must match the publisher")
    if ref.startswith("refs/tags/"):
        lines += ["  rules:", "    - if: $CI_COMMIT_TAG"]
    elif ref.startswith("refs/heads/"):
        branch = ref.removeprefix("refs/heads/")
        lines += ["  rules:", f"    - if: $CI_COMMIT_BRANCH == {json.dumps(branch)}"]
    lines += [
        "  id_tokens:",
        f"    {env_var_for(audience)}:  # the job's OIDC token for this index",
        f"      aud: {yaml_str(audience)}",
        "  script:",
        gitlab_script(install),
        "    - python -m build",
        f"    - {publish}",
    ]
    return Snippet(path, "\n".join(lines) + "\n")


def _google(values: Mapping[str, str], install: list[str], publish: str) -> Snippet:
    email = _get(values, "email", "SERVICE-ACCOUNT@PROJECT.iam.gserviceaccount.com")
    lines = [
        "# cloudbuild.yaml: the build runs as the publisher's service account",
        f"serviceAccount: {yaml_str('projects/PROJECT/serviceAccounts/' + email)}",
        "options:",
        "  logging: CLOUD_LOGGING_ONLY",
        "steps:",
        "  - name: python:3-slim",
        "    entrypoint: bash",
        "    args:",
        "      - -c",
        f"      - {json.dumps(' && '.join([*install, 'python -m build', publish]))}",
    ]
    return Snippet("cloudbuild.yaml", "\n".join(lines) + "\n")


def _generic(values: Mapping[str, str], install: list[str], publish: str, audience: str) -> Snippet:
    issuer = _get(values, "issuer", "https://ci.example.com")
    claim = _get(values, "subject_claim", "sub")
    subject = _get(values, "subject", "VALUE")
    lines = [
        f"# Any CI whose OIDC tokens come from {issuer}:",
        f"#   audience (aud): {audience}",
        f"#   {claim}: {subject}",
        "# In the publishing step:",
        *install,
        "python -m build",
        publish,
    ]
    return Snippet("your CI's publishing step", "\n".join(lines) + "\n")
