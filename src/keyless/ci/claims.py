"""What a CI job is (repository, workflow, ref, …) and the OIDC claims its tokens carry.

The claim sets follow what GitHub Actions and GitLab CI really issue (as documented by them and
seen in decoded tokens): ids are strings, GitHub tokens are valid from 5 minutes before `iat`
to 5 minutes after it, GitLab tokens from 5 seconds before `iat` for the job's duration.
Defaults that an index pins on first use (owner and repository ids) are derived from the names,
so a rehearsal repeated tomorrow presents the same identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from keyless.ci.errors import EmulatorError

Provider = Literal["github", "gitlab"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab")
GITHUB_EVENTS = (
    "push",
    "release",
    "workflow_dispatch",
    "pull_request",
    "pull_request_target",
    "schedule",
    "workflow_run",
    "merge_group",
)
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")
# GitLab's CI_PIPELINE_SOURCE values.
GITLAB_SOURCES = (
    "push",
    "web",
    "schedule",
    "api",
    "trigger",
    "pipeline",
    "parent_pipeline",
    "merge_request_event",
    "external_pull_request_event",
    "chat",
    "webide",
    "external",
    "security_orchestration_policy",
    "ondemand_dast_scan",
    "ondemand_dast_validation",
)
VISIBILITIES = ("public", "private", "internal")
DEFAULT_LIFETIME: dict[Provider, int] = {
    "github": 300,  # GitHub's tokens live 5 minutes
    "gitlab": 3600,  # GitLab's live as long as the job may (default timeout: 1 hour)
}
NOT_BEFORE: dict[Provider, int] = {"github": 300, "gitlab": 5}
PULL_REQUEST_NUMBER = 1
HEAD_BRANCH = "feature"  # the pull request's branch in the emulated pull-request events

_GITHUB_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}\Z")
_GITLAB_PROJECT = re.compile(r"^[\w.-]+(?:/[\w.-]+)+\Z")
_WORKFLOW_FILE = re.compile(r"^[^/\s]+\.ya?ml\Z")
_REUSABLE = re.compile(r"^[^/\s]+/[^/\s]+/\.github/workflows/[^/@\s]+\.ya?ml@\S+\Z")
_SHA = re.compile(r"^[0-9a-f]{40}\Z")


def _new_run_id() -> int:
    # Real run ids are 10-11 digit numbers; a fresh one per job, as on GitHub.
    return 10_000_000_000 + secrets.randbelow(9_000_000_000)


def stable_id(name: str) -> int:
    """A numeric id derived from a name, the same on every run (as a real account id is)."""
    digest = hashlib.sha256(name.lower().encode()).digest()
    return 10_000_000 + int.from_bytes(digest[:8], "big") % 90_000_000


def stable_sha(*parts: str) -> str:
    """40 hex characters derived from `parts`: a commit id that repeats with its inputs."""
    return hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()


def parse_claim(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` (a string claim) or `KEY:=JSON` (any JSON value) -> (key, value).

    Raises EmulatorError if there is no `=`, the key is empty, or the JSON does not parse.
    """
    key, sep, value = text.partition("=")
    if not sep:
        raise EmulatorError(f"--claim {text!r}: write KEY=VALUE, or KEY:=JSON for a non-string.")
    if key.endswith(":"):
        key = key[:-1]
        try:
            parsed: Any = json.loads(value)
        except ValueError as exc:
            raise EmulatorError(f"--claim {text!r}: the value is not JSON ({exc}).") from None
    else:
        parsed = value
    if not key:
        raise EmulatorError(f"--claim {text!r}: the claim name is empty.")
    return key, parsed


@dataclass(frozen=True)
class JobClaims:
    """One CI job: who runs it, from which workflow and ref, with which permissions.

    Every field has a realistic default except `repo`. Fields left None are derived (see the
    properties below). `extra` adds or overrides claims verbatim and `drop` removes claims:
    that is how tests forge tokens an index must refuse.

    Raises EmulatorError (from the constructor) when a field cannot describe a real job.
    """

    repo: str
    """`owner/repo` on GitHub; `namespace/project` (namespaces may nest) on GitLab."""
    provider: Provider = "github"
    workflow: str | None = None
    """GitHub: the workflow file in .github/workflows (default release.yml).
    GitLab: the CI configuration path (default .gitlab-ci.yml)."""
    workflow_name: str | None = None
    """GitHub's `workflow` claim; default the file's path, as GitHub names unnamed workflows."""
    ref: str | None = None
    """The full git ref; default refs/heads/main (refs/pull/1/merge for a pull_request)."""
    sha: str | None = None
    environment: str | None = None
    event: str | None = None
    """GitHub's event name (default push, or pull_request with `fork_pr`); GitLab's pipeline
    source (default push)."""
    fork_pr: bool = False
    """A pull request from a fork: GitHub grants such a job no OIDC token at all."""
    id_token: bool = True
    """GitHub: the job has `permissions: id-token: write`. GitLab: it declares `id_tokens:`."""
    reusable_workflow: str | None = None
    """`org/repo/.github/workflows/x.yml@ref`: the job runs this reusable workflow, so
    `job_workflow_ref` names it while `workflow_ref` stays the caller's."""
    owner_id: int | None = None
    repo_id: int | None = None
    actor: str | None = None
    actor_id: int | None = None
    run_id: int = field(default_factory=_new_run_id)
    run_number: int = 1
    run_attempt: int = 1
    job: str = "publish"
    ref_protected: bool = False
    visibility: str = "public"
    lifetime: int | None = None
    """Seconds from `iat` to `exp`; default 300 (GitHub) or 3600 (GitLab)."""
    audiences: tuple[str, ...] = ("keyless",)
    """GitLab only: one `<AUD>_ID_TOKEN` variable per audience (GitLab has no request API)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    drop: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise EmulatorError("; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        github = self.provider == "github"
        if self.provider not in PROVIDERS:
            return [f"provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}"]
        if github and not _GITHUB_REPO.match(self.repo):
            problems.append(f"repo {self.repo!r} is not OWNER/REPO")
        if not github and not _GITLAB_PROJECT.match(self.repo):
            problems.append(f"repo {self.repo!r} is not NAMESPACE/PROJECT")
        if github and self.workflow is not None and not _WORKFLOW_FILE.match(self.workflow):
            problems.append(
                f"workflow {self.workflow!r} must be a file name in .github/workflows "
                "ending .yml or .yaml (no folder)"
            )
        if self.ref is not None and not self.ref.startswith("refs/"):
            problems.append(f"ref {self.ref!r} must be a full ref such as refs/heads/main")
        if self.sha is not None and not _SHA.match(self.sha):
            problems.append(f"sha {self.sha!r} must be 40 lowercase hex characters")
        events = GITHUB_EVENTS if github else GITLAB_SOURCES
        if self.event is not None and self.event not in events:
            kind = "event" if github else "event (GitLab pipeline source)"
            problems.append(f"{kind} {self.event!r} is not one of {', '.join(events)}")
        if self.fork_pr and (not github or self.event_name not in PULL_REQUEST_EVENTS):
            problems.append("fork_pr needs the github provider and a pull_request(_target) event")
        if self.reusable_workflow is not None and (
            not github or not _REUSABLE.match(self.reusable_workflow)
        ):
            problems.append(
                f"reusable workflow {self.reusable_workflow!r} must be "
                "OWNER/REPO/.github/workflows/FILE.yml@REF (GitHub only)"
            )
        if self.visibility not in VISIBILITIES:
            problems.append(f"visibility must be one of {', '.join(VISIBILITIES)}")
        if self.lifetime is not None and self.lifetime <= 0:
            problems.append(f"lifetime must be a positive number of seconds, not {self.lifetime}")
        if isinstance(self.audiences, str) or not all(
            isinstance(a, str) and a for a in self.audiences
        ):
            problems.append("audiences must be a sequence of non-empty strings")
        return problems

    # Derived values, shared by the claims and the job environment so they always agree.

    @property
    def owner(self) -> str:
        return self.repo.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repo.rsplit("/", 1)[1]

    @property
    def event_name(self) -> str:
        if self.event is not None:
            return self.event
        return "pull_request" if self.fork_pr else "push"

    @property
    def is_pull_request(self) -> bool:
        return self.provider == "github" and self.event_name in PULL_REQUEST_EVENTS

    @property
    def full_ref(self) -> str:
        if self.ref is not None:
            return self.ref
        if self.provider == "github" and self.event_name == "pull_request":
            return f"refs/pull/{PULL_REQUEST_NUMBER}/merge"
        return "refs/heads/main"

    @property
    def ref_type(self) -> str:
        return "tag" if self.full_ref.startswith("refs/tags/") else "branch"

    @property
    def ref_name(self) -> str:
        """The short ref, as GITHUB_REF_NAME / CI_COMMIT_REF_NAME give it."""
        for prefix in ("refs/heads/", "refs/tags/", "refs/pull/"):
            if self.full_ref.startswith(prefix):
                return self.full_ref.removeprefix(prefix)
        return self.full_ref.removeprefix("refs/")

    @property
    def commit(self) -> str:
        return self.sha or stable_sha(self.repo, self.full_ref)

    @property
    def owner_number(self) -> int:
        return self.owner_id if self.owner_id is not None else stable_id(self.owner)

    @property
    def repo_number(self) -> int:
        return self.repo_id if self.repo_id is not None else stable_id(self.repo)

    @property
    def actor_name(self) -> str:
        return self.actor or self.owner.split("/")[0]

    @property
    def actor_number(self) -> int:
        return self.actor_id if self.actor_id is not None else stable_id(self.actor_name)

    @property
    def workflow_file(self) -> str:
        if self.workflow is not None:
            return self.workflow
        return "release.yml" if self.provider == "github" else ".gitlab-ci.yml"

    @property
    def workflow_path(self) -> str:
        if self.provider == "github":
            return f".github/workflows/{self.workflow_file}"
        return self.workflow_file

    @property
    def workflow_title(self) -> str:
        return self.workflow_name or self.workflow_path

    @property
    def workflow_ref(self) -> str:
        return f"{self.repo}/{self.workflow_path}@{self.full_ref}"

    @property
    def job_workflow_ref(self) -> str:
        return self.reusable_workflow or self.workflow_ref

    @property
    def job_workflow_sha(self) -> str:
        if self.reusable_workflow is None:
            return self.commit
        called_ref = self.reusable_workflow.rsplit("@", 1)[1]
        return called_ref if _SHA.match(called_ref) else stable_sha(self.reusable_workflow)

    @property
    def head_ref(self) -> str:
        return HEAD_BRANCH if self.is_pull_request else ""

    @property
    def base_ref(self) -> str:
        if not self.is_pull_request:
            return ""
        # pull_request_target runs on the base branch; a pull_request's merge ref names none.
        return self.ref_name if self.event_name == "pull_request_target" else "main"

    @property
    def token_lifetime(self) -> int:
        return self.lifetime if self.lifetime is not None else DEFAULT_LIFETIME[self.provider]

    @property
    def job_id(self) -> int:
        return self.run_id * 10 + self.run_attempt

    @property
    def subject(self) -> str:
        if self.provider == "gitlab":
            return f"project_path:{self.repo}:ref_type:{self.ref_type}:ref:{self.ref_name}"
        if self.environment:
            return f"repo:{self.repo}:environment:{self.environment}"
        if self.event_name == "pull_request":
            return f"repo:{self.repo}:pull_request"
        return f"repo:{self.repo}:ref:{self.full_ref}"

    def claims(self, issuer: str, audience: str, now: float | None = None) -> dict[str, Any]:
        """The claim set of an ID token this job would get from `issuer` for `audience`.

        `now` (Unix seconds) fixes `iat`; by default the current time. A fresh `jti` each call.
        """
        iat = int(time.time() if now is None else now)
        github = self.provider == "github"
        claims = self._github_claims() if github else self._gitlab_claims(issuer)
        claims.update(
            jti=str(uuid.uuid4()),
            sub=self.subject,
            aud=audience,
            iss=issuer,
            iat=iat,
            nbf=iat - NOT_BEFORE[self.provider],
            exp=iat + self.token_lifetime,
        )
        claims.update(self.extra)
        for name in self.drop:
            claims.pop(name, None)
        return claims

    def _github_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "ref": self.full_ref,
            "sha": self.commit,
            "repository": self.repo,
            "repository_owner": self.owner,
            "repository_owner_id": str(self.owner_number),
            "repository_visibility": self.visibility,
            "repository_id": str(self.repo_number),
            "actor_id": str(self.actor_number),
            "actor": self.actor_name,
            "run_id": str(self.run_id),
            "run_number": str(self.run_number),
            "run_attempt": str(self.run_attempt),
            "runner_environment": "github-hosted",
            "workflow": self.workflow_title,
            "head_ref": self.head_ref,
            "base_ref": self.base_ref,
            "event_name": self.event_name,
            "ref_protected": _flag(self.ref_protected),
            "ref_type": self.ref_type,
            "workflow_ref": self.workflow_ref,
            "workflow_sha": self.commit,
            "job_workflow_ref": self.job_workflow_ref,
            "job_workflow_sha": self.job_workflow_sha,
        }
        if self.environment:
            claims["environment"] = self.environment
        return claims

    def _gitlab_claims(self, issuer: str) -> dict[str, Any]:
        parts = urlsplit(issuer)
        server = parts.netloc + parts.path.rstrip("/")
        claims: dict[str, Any] = {
            "namespace_id": str(self.owner_number),
            "namespace_path": self.owner,
            "project_id": str(self.repo_number),
            "project_path": self.repo,
            "user_id": str(self.actor_number),
            "user_login": self.actor_name,
            "pipeline_id": str(self.run_id),
            "pipeline_source": self.event_name,
            "job_id": str(self.job_id),
            "ref": self.ref_name,
            "ref_type": self.ref_type,
            "ref_path": self.full_ref,
            "ref_protected": _flag(self.ref_protected),
            "runner_id": 1,
            "runner_environment": "gitlab-hosted",
            "sha": self.commit,
            "project_visibility": self.visibility,
            "ci_config_ref_uri": f"{server}/{self.repo}//{self.workflow_path}@{self.full_ref}",
            "ci_config_sha": self.commit,
        }
        if self.environment:
            claims.update(
                environment=self.environment,
                environment_protected="false",
                deployment_tier="production",
                environment_action="start",
            )
        return claims

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict that `from_json` turns back into an equal JobClaims."""
        data = dataclasses.asdict(self)
        data["audiences"] = list(self.audiences)
        data["drop"] = sorted(self.drop)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobClaims:
        """The inverse of `to_json`.

        Raises EmulatorError for unknown fields or values a job cannot have.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise EmulatorError(f"unknown job fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["audiences"] = tuple(values.get("audiences", ()))
        values["drop"] = frozenset(values.get("drop", ()))
        try:
            return cls(**values)
        except TypeError as exc:
            raise EmulatorError(f"not a job description: {exc}") from None


def _flag(value: bool) -> str:
    # GitHub and GitLab write booleans in tokens as the strings "true" / "false".
    return "true" if value else "false"
