"""Which CI this process runs in, and that CI's OIDC token for an audience.

The first half of Trusted Publishing, on the job's side: `ambient_oidc_token` gets the token
the CI hands out (through the `id` library), after diagnosing the GitHub Actions and GitLab
misconfigurations it can see in the environment, for errors that name the fix. Exchanging the
token with the index for an upload token is `keyless.publish.credentials`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import id as id_library

from keyless.oidc.providers.gitlab import id_token_variable
from keyless.publish.errors import PublishError

GITHUB_PERMISSION_SNIPPET = """\
jobs:
  publish:
    permissions:
      id-token: write   # lets this job ask GitHub for an OIDC token
      contents: read"""

FORK_MESSAGE = "GitHub gives pull requests from forks no OIDC token; publish from a tag or release"


def gitlab_snippet(audience: str) -> str:
    return f"publish:\n  id_tokens:\n    {id_token_variable(audience)}:\n      aud: {audience}"


def _github_event(environ: Mapping[str, str]) -> dict[str, Any]:
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def is_fork_pull_request(environ: Mapping[str, str]) -> bool:
    """A GitHub `pull_request` job whose head repository is a fork."""
    if environ.get("GITHUB_EVENT_NAME") != "pull_request":
        return False
    pull = _github_event(environ).get("pull_request") or {}
    head = pull.get("head") if isinstance(pull, dict) else None
    repo = head.get("repo") if isinstance(head, dict) else None
    return isinstance(repo, dict) and repo.get("fork") is True


@dataclass(frozen=True)
class CI:
    """The CI (or cloud machine) this process runs in.

    `oidc`: it hands out OIDC tokens the `id` library can get (Trusted Publishing is possible).
    `job`: the environment says this is a CI job; a Google Cloud machine is not one unless its
    environment says CI too (it still has tokens, from its metadata server).
    """

    kind: str  # "github" | "gitlab" | "buildkite" | "circleci" | "google" | "other"
    name: str  # for people: "GitHub Actions", "GitLab CI/CD", …
    oidc: bool
    job: bool


# The CIs that say so in their own variable, all of which hand out OIDC tokens.
_CI_VARIABLES = (
    ("GITHUB_ACTIONS", "github", "GitHub Actions"),
    ("GITLAB_CI", "gitlab", "GitLab CI/CD"),
    ("BUILDKITE", "buildkite", "Buildkite"),
    ("CIRCLECI", "circleci", "CircleCI"),
)


def detect_ci(environ: Mapping[str, str]) -> CI | None:
    """Which CI this process runs in, from `environ` (and, for Google Cloud, the machine's
    DMI product name); None when none. The one place that decides it: publishing and
    `keyless doctor` both ask here."""
    for variable, kind, name in _CI_VARIABLES:
        if environ.get(variable) == "true":
            return CI(kind, name, oidc=True, job=True)
    declared = environ.get("CI") in ("true", "1", "True")
    if environ.get("GOOGLE_SERVICE_ACCOUNT_NAME") or _google_machine():
        return CI("google", "Google Cloud", oidc=True, job=declared)
    if declared:
        return CI("other", "CI", oidc=False, job=True)
    return None


def _google_machine() -> bool:
    try:
        return "Google" in Path("/sys/class/dmi/id/product_name").read_text(encoding="utf-8")
    except OSError:
        return False


def ci_name(environ: Mapping[str, str]) -> str | None:
    """The name of the CI this process runs in, when it hands out OIDC tokens; else None."""
    ci = detect_ci(environ)
    return ci.name if ci is not None and ci.oidc else None


def ambient_oidc_token(audience: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The CI's OIDC token for `audience`; None when not in a CI that provides one.

    GitHub Actions and GitLab misconfigurations are diagnosed from `environ` (default
    os.environ) first, for errors that name the fix; the token itself comes from the `id`
    library (GitHub, GitLab, Google Cloud, Buildkite, CircleCI), which reads os.environ.
    Raises PublishError when this is a CI job that cannot get a token.
    """
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") == "true" and not (
        env.get("ACTIONS_ID_TOKEN_REQUEST_URL") and env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    ):
        if is_fork_pull_request(env):
            raise PublishError(
                f"GitHub Actions: this job runs for a pull request from a fork. {FORK_MESSAGE}.",
                hint="trigger the publishing workflow on `release: published` or on "
                "`push: tags: ['v*']`; let pull requests only build and test.",
                context={"ci": "GitHub Actions", "event": "pull_request (fork)"},
            )
        raise PublishError(
            "GitHub Actions: this job may not request an OIDC token "
            "(ACTIONS_ID_TOKEN_REQUEST_URL / ACTIONS_ID_TOKEN_REQUEST_TOKEN are unset): "
            "the `id-token: write` permission is missing.",
            hint="give the publishing job the permission, at job level:\n"
            + GITHUB_PERMISSION_SNIPPET,
            context={"ci": "GitHub Actions"},
        )
    if env.get("GITLAB_CI") == "true":
        variable = id_token_variable(audience)
        if not env.get(variable):
            others = sorted(k for k in env if k.endswith("_ID_TOKEN") and env.get(k))
            found = (
                f" The job has {', '.join(others)}, for another audience; this index wants "
                f"aud {audience!r}."
                if others
                else ""
            )
            raise PublishError(
                f"GitLab CI/CD: no OIDC token for audience {audience!r}: {variable} is not "
                f"set.{found}",
                hint="declare it in the publishing job of .gitlab-ci.yml:\n"
                + gitlab_snippet(audience),
                context={"ci": "GitLab CI/CD"},
            )
    try:
        return id_library.detect_credential(audience)
    except id_library.AmbientCredentialError as exc:
        raise PublishError(
            f"cannot get the CI's OIDC token: {exc}",
            hint="check the job's OIDC settings for audience " + repr(audience) + ".",
            context={"ci": ci_name(env) or "unknown"},
        ) from exc
