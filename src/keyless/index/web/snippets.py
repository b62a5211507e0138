"""The CI configuration that matches a publisher entry, shown next to the form as a preview.

The text is plain (escaped when rendered); values the user typed are quoted as YAML strings
when they are not simple words, so a preview of a half-typed entry is still valid YAML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from keyless.oidc.providers import GITHUB_ISSUER, GITLAB_ISSUER

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/*@-]*\Z")


@dataclass(frozen=True)
class Snippet:
    where: str  # the file (and repository) the text belongs in
    text: str


def yaml_str(value: str) -> str:
    """A YAML scalar for `value`: bare when safe, else double-quoted (JSON is valid YAML)."""
    if _PLAIN.match(value) and value.lower() not in ("true", "false", "yes", "no", "null", "on"):
        return value
    return json.dumps(value)


def env_var_for(audience: str) -> str:
    """Where a GitLab job finds its ID token: `<AUD>_ID_TOKEN`, non [A-Z0-9_] as '_'.

    The rule of the `id` library (and so of `keyless publish`, see
    publish.credentials.gitlab_token_variable): a leading digit becomes '_' too.
    """
    return re.sub(r"[^A-Z0-9_]|^[^A-Z_]", "_", audience.upper()) + "_ID_TOKEN"


def snippet(kind: str, values: Mapping[str, str], *, upload_url: str, audience: str) -> Snippet:
    """The CI configuration for a publisher of `kind` with these (possibly unchecked) values."""
    publish = f"keyless publish --repository-url {upload_url} dist/*"
    if kind == "github":
        return _github(values, publish)
    if kind == "gitlab":
        return _gitlab(values, publish, audience)
    if kind == "google":
        return _google(values, publish)
    return _generic(values, publish, audience)


def _get(values: Mapping[str, str], name: str, placeholder: str) -> str:
    return (values.get(name) or "").strip() or placeholder


def _github_trigger(ref: str) -> list[str]:
    if ref.startswith("refs/tags/"):
        return ["on:", "  push:", f"    tags: [{yaml_str(ref.removeprefix('refs/tags/'))}]"]
    if ref.startswith("refs/heads/"):
        return ["on:", "  push:", f"    branches: [{yaml_str(ref.removeprefix('refs/heads/'))}]"]
    return ["on:", "  release:", "    types: [published]"]


def _github(values: Mapping[str, str], publish: str) -> Snippet:
    owner = _get(values, "owner", "OWNER")
    repository = _get(values, "repository", "REPOSITORY")
    workflow = _get(values, "workflow", "release.yml")
    environment = (values.get("environment") or "").strip()
    reusable = (values.get("reusable_workflow") or "").strip()
    issuer = (values.get("issuer") or "").strip()
    lines = [f"# .github/workflows/{workflow} in {owner}/{repository}"]
    if issuer and issuer.rstrip("/") != GITHUB_ISSUER:
        lines.append(f"# tokens issued by {issuer}")
    lines += ["name: release", *_github_trigger((values.get("ref") or "").strip()), "jobs:"]
    lines += ["  publish:"]
    if reusable:
        target = reusable if "@" in reusable else f"{reusable}@REF"
        lines += [
            "    # The reusable workflow's publishing job runs the upload"
            + (f" in environment {yaml_str(environment)}" if environment else "")
            + ".",
            "    permissions:",
            "      id-token: write  # lets the called workflow ask GitHub for an OIDC token",
            "      contents: read",
            f"    uses: {yaml_str(target)}",
        ]
        return Snippet(f".github/workflows/{workflow}", "\n".join(lines) + "\n")
    lines.append("    runs-on: ubuntu-latest")
    if environment:
        lines.append(f"    environment: {yaml_str(environment)}  # must match the publisher")
    lines += [
        "    permissions:",
        "      id-token: write  # at job level: lets this job ask GitHub for an OIDC token",
        "      contents: read",
        "    steps:",
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5",
        '        with: {python-version: "3.x"}',
        "      - run: python -m pip install build keyless",
        "      - run: python -m build",
        f"      - run: {publish}",
    ]
    return Snippet(f".github/workflows/{workflow}", "\n".join(lines) + "\n")


def _gitlab(values: Mapping[str, str], publish: str, audience: str) -> Snippet:
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
        "    - python -m pip install build keyless",
        "    - python -m build",
        f"    - {publish}",
    ]
    return Snippet(path, "\n".join(lines) + "\n")


def _google(values: Mapping[str, str], publish: str) -> Snippet:
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
        f"      - {json.dumps('pip install build keyless && python -m build && ' + publish)}",
    ]
    return Snippet("cloudbuild.yaml", "\n".join(lines) + "\n")


def _generic(values: Mapping[str, str], publish: str, audience: str) -> Snippet:
    issuer = _get(values, "issuer", "https://ci.example.com")
    claim = _get(values, "subject_claim", "sub")
    subject = _get(values, "subject", "VALUE")
    lines = [
        f"# Any CI whose OIDC tokens come from {issuer}:",
        f"#   audience (aud): {audience}",
        f"#   {claim}: {subject}",
        "# In the publishing step:",
        "python -m pip install build keyless",
        "python -m build",
        publish,
    ]
    return Snippet("your CI's publishing step", "\n".join(lines) + "\n")
