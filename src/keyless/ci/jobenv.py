"""The environment variables and files a GitHub Actions or GitLab CI job step sees.

Only what a release tool may look at: identity variables, the OIDC wiring, the event payload
and the step's command files. Values agree with the job's token claims because both come from
the same `JobClaims` properties.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keyless.ci.claims import PULL_REQUEST_NUMBER, JobClaims
from keyless.oidc.providers.gitlab import id_token_variable

TOKEN_PATH = "/_apis/token"  # noqa: S105 (a URL path, not a secret)
# The real request URL already carries a query, which is why clients append `&audience=`.
TOKEN_QUERY = "?api-version=2.0"  # noqa: S105
GITHUB_SERVER = "https://github.com"
# Set in every emulated job so a tool can say "this is a rehearsal" instead of guessing.
MARKER = "KEYLESS_CI_EMULATOR"

# Variables through which a real CI job (or a developer's shell) would leak its identity or
# credentials into the emulated job. Removed from the inherited environment so a rehearsal run
# inside a real CI job tests the emulated identity, never the real one.
_CI_NAMES = frozenset(
    {"CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "GOOGLE_SERVICE_ACCOUNT_NAME"}
)
_CI_PREFIXES = ("GITHUB_", "ACTIONS_", "RUNNER_", "CI_", "GITLAB_", "BUILDKITE_", "CIRCLE_")


def without_ci_variables(base: Mapping[str, str]) -> dict[str, str]:
    """`base` minus every variable that identifies a CI job or carries its credentials."""
    return {
        name: value
        for name, value in base.items()
        if name not in _CI_NAMES
        and not name.startswith(_CI_PREFIXES)
        and not name.endswith("_ID_TOKEN")
        and name != MARKER
    }


def github_grants_token(claims: JobClaims) -> bool:
    """Whether GitHub would let this job request an OIDC token at all.

    Never for a `pull_request` from a fork; `pull_request_target` runs in the base repository,
    so it gets one (which is why indexes refuse that event).
    """
    return claims.id_token and not (claims.fork_pr and claims.event_name == "pull_request")


def github_environment(
    claims: JobClaims,
    *,
    issuer: str,
    request_token: str | None,
    folder: Path,
    workspace: Path,
) -> dict[str, str]:
    """The variables of a GitHub Actions step; writes the event payload and command files.

    `request_token` None means the job may not request an OIDC token, so the two
    ACTIONS_ID_TOKEN_REQUEST_* variables are absent, exactly as on GitHub.
    Raises OSError if `folder` cannot be written.
    """
    files = _command_files(folder, ("output", "env", "path", "state", "step_summary"))
    event_path = folder / "event.json"
    event_path.write_text(json.dumps(event_payload(claims), indent=2), encoding="utf-8")
    env = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        MARKER: issuer,
        "GITHUB_SERVER_URL": GITHUB_SERVER,
        "GITHUB_API_URL": "https://api.github.com",
        "GITHUB_GRAPHQL_URL": "https://api.github.com/graphql",
        "GITHUB_REPOSITORY": claims.repo,
        "GITHUB_REPOSITORY_ID": str(claims.repo_number),
        "GITHUB_REPOSITORY_OWNER": claims.owner,
        "GITHUB_REPOSITORY_OWNER_ID": str(claims.owner_number),
        "GITHUB_REF": claims.full_ref,
        "GITHUB_REF_NAME": claims.ref_name,
        "GITHUB_REF_TYPE": claims.ref_type,
        "GITHUB_REF_PROTECTED": "true" if claims.ref_protected else "false",
        "GITHUB_SHA": claims.commit,
        "GITHUB_HEAD_REF": claims.head_ref,
        "GITHUB_BASE_REF": claims.base_ref,
        "GITHUB_EVENT_NAME": claims.event_name,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_WORKFLOW": claims.workflow_title,
        "GITHUB_WORKFLOW_REF": claims.workflow_ref,
        "GITHUB_WORKFLOW_SHA": claims.commit,
        "GITHUB_JOB": claims.job,
        "GITHUB_RUN_ID": str(claims.run_id),
        "GITHUB_RUN_NUMBER": str(claims.run_number),
        "GITHUB_RUN_ATTEMPT": str(claims.run_attempt),
        "GITHUB_RETENTION_DAYS": "90",
        "GITHUB_ACTOR": claims.actor_name,
        "GITHUB_ACTOR_ID": str(claims.actor_number),
        "GITHUB_TRIGGERING_ACTOR": claims.actor_name,
        "GITHUB_ACTION": "__run",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(files["output"]),
        "GITHUB_ENV": str(files["env"]),
        "GITHUB_PATH": str(files["path"]),
        "GITHUB_STATE": str(files["state"]),
        "GITHUB_STEP_SUMMARY": str(files["step_summary"]),
        "RUNNER_TEMP": str(_folder(folder / "runner-temp")),
        "RUNNER_OS": _runner_os(),
        "RUNNER_ARCH": _runner_arch(),
        "RUNNER_NAME": "keyless ci-emulator",
        "RUNNER_ENVIRONMENT": "github-hosted",
    }
    if request_token is not None:
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] = f"{issuer}{TOKEN_PATH}{TOKEN_QUERY}"
        env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = request_token
    return env


def gitlab_environment(
    claims: JobClaims,
    *,
    issuer: str,
    id_tokens: Mapping[str, str],
    workspace: Path,
) -> dict[str, str]:
    """The variables of a GitLab CI job; `id_tokens` maps audience -> JWT.

    GitLab has no token request API: each `id_tokens:` entry of `.gitlab-ci.yml` becomes a
    variable holding a finished JWT, named after its audience.
    """
    server = urlsplit(issuer)
    port = server.port or (443 if server.scheme == "https" else 80)
    project_url = f"{issuer}/{claims.repo}"
    env = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_SERVER": "yes",
        MARKER: issuer,
        # On GitLab the issuer is the instance URL, so the emulator plays the instance too.
        "CI_SERVER_URL": issuer,
        "CI_SERVER_HOST": server.hostname or "",
        "CI_SERVER_PORT": str(port),
        "CI_SERVER_PROTOCOL": server.scheme,
        "CI_API_V4_URL": f"{issuer}/api/v4",
        "CI_PROJECT_PATH": claims.repo,
        "CI_PROJECT_NAMESPACE": claims.owner,
        "CI_PROJECT_NAME": claims.name,
        "CI_PROJECT_ID": str(claims.repo_number),
        "CI_PROJECT_URL": project_url,
        "CI_PROJECT_VISIBILITY": claims.visibility,
        "CI_PROJECT_DIR": str(workspace),
        "CI_CONFIG_PATH": claims.workflow_path,
        "CI_COMMIT_SHA": claims.commit,
        "CI_COMMIT_SHORT_SHA": claims.commit[:8],
        "CI_COMMIT_REF_NAME": claims.ref_name,
        "CI_COMMIT_REF_PROTECTED": "true" if claims.ref_protected else "false",
        "CI_PIPELINE_ID": str(claims.run_id),
        "CI_PIPELINE_IID": str(claims.run_number),
        "CI_PIPELINE_SOURCE": claims.event_name,
        "CI_PIPELINE_URL": f"{project_url}/-/pipelines/{claims.run_id}",
        "CI_JOB_ID": str(claims.job_id),
        "CI_JOB_NAME": claims.job,
        "CI_JOB_STAGE": "deploy",
        "CI_JOB_URL": f"{project_url}/-/jobs/{claims.job_id}",
        "CI_RUNNER_ID": "1",
        "GITLAB_USER_LOGIN": claims.actor_name,
        "GITLAB_USER_ID": str(claims.actor_number),
    }
    env["CI_COMMIT_TAG" if claims.ref_type == "tag" else "CI_COMMIT_BRANCH"] = claims.ref_name
    if claims.environment:
        env["CI_ENVIRONMENT_NAME"] = claims.environment
        env["CI_ENVIRONMENT_TIER"] = "production"
    for audience, token in id_tokens.items():
        env[id_token_variable(audience)] = token
    return env


def event_payload(claims: JobClaims) -> dict[str, Any]:
    """The webhook payload GitHub puts at GITHUB_EVENT_PATH for this job's event."""
    repository = {
        "id": claims.repo_number,
        "name": claims.name,
        "full_name": claims.repo,
        "owner": {"login": claims.owner, "id": claims.owner_number},
        "private": claims.visibility != "public",
        "visibility": claims.visibility,
        "fork": False,
        "default_branch": "main",
        "html_url": f"{GITHUB_SERVER}/{claims.repo}",
    }
    sender = {"login": claims.actor_name, "id": claims.actor_number}
    payload: dict[str, Any] = {"repository": repository, "sender": sender}
    event = claims.event_name
    if event == "push":
        payload.update(
            ref=claims.full_ref,
            before="0" * 40,
            after=claims.commit,
            head_commit={"id": claims.commit},
            pusher={"name": claims.actor_name},
        )
    elif event == "release":
        payload.update(
            action="published",
            release={
                "tag_name": claims.ref_name,
                "target_commitish": "main",
                "draft": False,
                "prerelease": False,
            },
        )
    elif event == "workflow_dispatch":
        payload.update(ref=claims.full_ref, inputs={}, workflow=claims.workflow_path)
    elif claims.is_pull_request:
        head_owner = "fork-contributor" if claims.fork_pr else claims.owner
        payload.update(
            action="synchronize",
            number=PULL_REQUEST_NUMBER,
            pull_request={
                "number": PULL_REQUEST_NUMBER,
                "head": {
                    "ref": claims.head_ref,
                    "sha": claims.commit,
                    "repo": {
                        "full_name": f"{head_owner}/{claims.name}",
                        "fork": claims.fork_pr,
                    },
                },
                "base": {
                    "ref": claims.base_ref,
                    "repo": {"full_name": claims.repo, "fork": False},
                },
            },
        )
    return payload


def _command_files(folder: Path, names: tuple[str, ...]) -> dict[str, Path]:
    commands = _folder(folder / "file-commands")
    paths = {name: commands / name for name in names}
    for path in paths.values():
        path.touch()
    return paths


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _runner_os() -> str:
    return {"Darwin": "macOS", "Windows": "Windows"}.get(platform.system(), "Linux")


def _runner_arch() -> str:
    machine = platform.machine().lower()
    return {"arm64": "ARM64", "aarch64": "ARM64", "armv7l": "ARM"}.get(machine, "X64")
