"""GitHub Actions publishers (GitHub.com, GitHub Enterprise Server, the keyless CI emulator).

Claim rules follow PyPI's (https://docs.pypi.org/trusted-publishers/) and extend them
(ARCHITECTURE.md, "Beyond PyPI"): a ref glob constraint, a reusable workflow constrained on both
sides (caller ``workflow_ref`` and callee ``job_workflow_ref``), a configurable issuer, and
``repository_owner_id`` pinned on first use because keyless cannot ask GitHub's API at registration
time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Final

from keyless.oidc.providers._common import (
    Check,
    ClaimTableProvider,
    FieldSpec,
    Mismatch,
    at_run_ref,
    cfg,
    check_environment,
    check_issuer,
    check_ref_glob,
    claim_text,
    compare_claim,
    differs,
    has_control_chars,
    issued_by,
    job_registration_hint,
    mismatch,
    missing,
    present,
    raise_if,
    read_fields,
    run_refs,
    same_issuer,
    scalar_text,
    validate_issuer_url,
    validate_ref_glob,
)

GITHUB_ISSUER: Final = "https://token.actions.githubusercontent.com"
TITLE: Final = "GitHub Actions"

# GitHub's own rules: logins are letters, digits and '-' (at most 39); repository names add
# '_' and '.' (at most 100).
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}\Z", re.ASCII)
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]{1,100}\Z", re.ASCII)
# GitHub refuses these in environment names; they would also break the YAML users copy.
_ENVIRONMENT_BAD = re.compile(r"[\x00-\x1f\x7f'\"`,;\\]")
_SHA = re.compile(r"[0-9a-f]{40}\Z")
_REUSABLE = re.compile(
    r"(?P<repo>[^/@\s]+/[^/@\s]+)(?P<tail>/\.github/workflows/[^/\s]+?\.ya?ml)"
    r"(?:@(?P<ref>\S+))?\Z"
)
# The workflow file name inside a workflow ref: "owner/repo/.github/workflows/NAME@ref".
_WORKFLOW_FILE = re.compile(r"/\.github/workflows/(?P<file>[^/]+?\.ya?ml)@")
_GHES_SUFFIX: Final = "/_services/token"

FIELDS: Final = (
    FieldSpec(
        "owner",
        "Owner",
        True,
        "The GitHub user or organization that owns the repository, e.g. 'pypa'. Compared "
        "exactly, case included: type it as GitHub shows it.",
    ),
    FieldSpec(
        "repository",
        "Repository",
        True,
        "The repository's name without the owner, e.g. 'sampleproject'. Not case-sensitive.",
    ),
    FieldSpec(
        "workflow",
        "Workflow file",
        True,
        "The file name of the workflow that publishes, e.g. 'release.yml' (the file in "
        ".github/workflows/, without the directory). Case-sensitive.",
    ),
    FieldSpec(
        "environment",
        "Environment",
        False,
        "The GitHub environment the publishing job runs in, e.g. 'pypi'. Recommended: "
        "environments can require approval. Not case-sensitive. Empty: any environment.",
    ),
    FieldSpec(
        "ref",
        "Ref pattern",
        False,
        "Publish only from refs matching this pattern, e.g. 'refs/tags/v*' or "
        "'refs/heads/main'; '*' matches any characters, '/' included. Case-sensitive. "
        "Empty: any ref.",
    ),
    FieldSpec(
        "reusable_workflow",
        "Reusable workflow",
        False,
        "When the workflow above calls a reusable workflow that publishes: "
        "'org/repo/.github/workflows/publish.yml', optionally pinned with '@refs/tags/v1' or "
        "'@<commit sha>'. The file name is case-sensitive.",
    ),
    FieldSpec(
        "owner_id",
        "Owner id",
        False,
        "GitHub's numeric id of the owner (https://api.github.com/users/OWNER). Empty: it is "
        "pinned on the first successful publish.",
    ),
    FieldSpec(
        "issuer",
        "Issuer",
        False,
        "Empty for GitHub.com. GitHub Enterprise Server: 'https://HOST/_services/token'; the "
        "keyless CI emulator: its URL.",
        default=GITHUB_ISSUER,
    ),
)


class GitHubProvider(ClaimTableProvider):
    """Publishers that accept tokens from GitHub Actions workflows."""

    kind: str = "github"
    title: str = TITLE
    short_title: str = "GitHub"
    fields: tuple[FieldSpec, ...] = FIELDS
    default_issuer: str | None = GITHUB_ISSUER

    def recognises(self, claims: Mapping[str, Any]) -> bool:
        """GitHub.com's issuer, or GitHub's shape (Enterprise Server, the CI emulator)."""
        return issued_by(claims, GITHUB_ISSUER) or (
            "job_workflow_ref" in claims and "repository" in claims
        )

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The normalized config (every field, "" when unset; issuer resolved).

        Raises ``PublisherConfigError`` with every field's problem.
        """
        values, errors = read_fields(config, FIELDS, TITLE)

        owner = values["owner"]
        if not owner:
            errors["owner"] = "required: the GitHub user or organization owning the repository"
        elif not _OWNER.match(owner):
            errors["owner"] = (
                "not a GitHub user or organization name (letters, digits and '-', not "
                "starting with '-', at most 39 characters)"
            )

        repository = values["repository"]
        if not repository:
            errors["repository"] = "required: the repository's name, e.g. 'sampleproject'"
        elif "/" in repository:
            errors["repository"] = "the repository's name only, without the owner"
        elif not _REPOSITORY.match(repository) or repository in (".", ".."):
            errors["repository"] = (
                "not a GitHub repository name (letters, digits, '-', '_' and '.')"
            )

        workflow = values["workflow"]
        if not workflow:
            errors["workflow"] = "required: the workflow's file name, e.g. 'release.yml'"
        elif "/" in workflow:
            errors["workflow"] = (
                "the workflow's file name only, e.g. 'release.yml', without '.github/workflows/'"
            )
        elif not workflow.endswith((".yml", ".yaml")):
            errors["workflow"] = "must end with .yml or .yaml"
        elif has_control_chars(workflow) or "@" in workflow:
            errors["workflow"] = "must not contain '@' or control characters"

        environment = values["environment"]
        if len(environment) > 255:
            errors["environment"] = "too long (GitHub allows at most 255 characters)"
        elif _ENVIRONMENT_BAD.search(environment):
            errors["environment"] = "must not contain control characters or any of ' \" ` , ; \\"

        if values["ref"] and (
            problem := validate_ref_glob(values["ref"], require_refs_prefix=True)
        ):
            errors["ref"] = problem

        if values["reusable_workflow"]:
            problem = _reusable_problem(values["reusable_workflow"])
            if problem:
                errors["reusable_workflow"] = problem

        if values["owner_id"] and not values["owner_id"].isdigit():
            errors["owner_id"] = "must be GitHub's numeric id of the owner, e.g. '2009'"

        if not values["issuer"]:
            values["issuer"] = GITHUB_ISSUER
        elif problem := validate_issuer_url(values["issuer"]):
            errors["issuer"] = problem

        raise_if(errors)
        return values

    def issuer(self, config: Mapping[str, Any]) -> str:
        """The configured issuer, GitHub.com's by default."""
        return cfg(config, "issuer") or GITHUB_ISSUER

    def lookup_key(self, config: Mapping[str, Any]) -> str:
        """``github:owner/repo`` (lowercase); the issuer is included when it is not GitHub.com's.

        Including a non-default issuer keeps publishers for an emulator or an Enterprise
        Server from ever being candidates for GitHub.com tokens, and vice versa.
        """
        return _key(self.issuer(config), f"{cfg(config, 'owner')}/{cfg(config, 'repository')}")

    def lookup_key_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> str | None:
        """The lookup key for the token's ``repository``; None without one."""
        repository = claims.get("repository")
        if not isinstance(repository, str) or "/" not in repository:
            return None
        return _key(issuer, repository)

    def pins(
        self, claims: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """``repository_owner_id``: a re-registered account of the same name gets a new id."""
        owner_id = scalar_text(claims.get("repository_owner_id"))
        return {"repository_owner_id": owner_id} if owner_id else {}

    def specificity(self, config: Mapping[str, Any]) -> int:
        """One point per optional constraint: environment, ref pattern, reusable workflow."""
        return sum(bool(cfg(config, name)) for name in ("environment", "ref", "reusable_workflow"))

    def describe(self, claims: Mapping[str, Any]) -> dict[str, str | None]:
        """Repository, workflow, ref, sha, environment, run and commit URLs, event name."""
        repository = claim_text(claims, "repository")
        sha = claim_text(claims, "sha")
        run_id = scalar_text(claims.get("run_id"))
        attempt = scalar_text(claims.get("run_attempt"))
        server = _server_url(claims)
        run_url = commit_url = None
        if server and repository and run_id:
            run_url = f"{server}/{repository}/actions/runs/{run_id}"
            if attempt:
                run_url += f"/attempts/{attempt}"
        if server and repository and sha:
            commit_url = f"{server}/{repository}/commit/{sha}"
        return {
            "identity": repository,
            "repository": repository,
            "workflow": claim_text(claims, "job_workflow_ref"),
            "ref": claim_text(claims, "ref"),
            "sha": sha,
            "environment": claim_text(claims, "environment"),
            "run_url": run_url,
            "commit_url": commit_url,
            "event_name": claim_text(claims, "event_name"),
        }

    def publisher_url(self, config: Mapping[str, Any]) -> str | None:
        """The repository's page on GitHub.com or the Enterprise Server; None otherwise."""
        server = _server_for_issuer(self.issuer(config))
        if server is None:
            return None
        return f"{server}/{cfg(config, 'owner')}/{cfg(config, 'repository')}"

    def summary(self, config: Mapping[str, Any]) -> str:
        """E.g. "GitHub owner/repo, workflow release.yml, environment pypi, refs refs/tags/v*"."""
        parts = [
            f"GitHub {cfg(config, 'owner')}/{cfg(config, 'repository')}",
            f"workflow {cfg(config, 'workflow')}",
        ]
        if env := cfg(config, "environment"):
            parts.append(f"environment {env}")
        if ref := cfg(config, "ref"):
            parts.append(f"refs {ref}")
        if reusable := cfg(config, "reusable_workflow"):
            parts.append(f"reusable workflow {reusable}")
        if not same_issuer(self.issuer(config), GITHUB_ISSUER):
            parts.append(f"issuer {self.issuer(config)}")
        return ", ".join(parts)

    def identity(self, claims: Mapping[str, Any]) -> str:
        """E.g. "GitHub repository 'owner/repo'"."""
        where = "" if issued_by(claims, GITHUB_ISSUER) else (f" (issuer {claims.get('iss')!r})")
        return f"GitHub repository {claims.get('repository')!r}{where}"

    def registration_hint(self, claims: Mapping[str, Any]) -> str:
        """The publisher settings that would accept this token."""
        repository = claim_text(claims, "repository") or "?/?"
        owner, _, name = repository.partition("/")
        settings = [f"owner {owner!r}", f"repository {name!r}"]
        caller = _WORKFLOW_FILE.search(claim_text(claims, "workflow_ref") or "")
        callee = _WORKFLOW_FILE.search(claim_text(claims, "job_workflow_ref") or "")
        if found := caller or callee:
            settings.append(f"workflow {found.group('file')!r}")
        return job_registration_hint(TITLE, settings, claims, GITHUB_ISSUER)

    @cached_property
    def _checks(self) -> tuple[Check, ...]:
        # Built once per provider: check() runs for every candidate of every mint request.
        return (
            check_issuer(self.issuer),
            _check_repository,
            _check_repository_owner,
            _check_owner_id,
            _check_event_name,
            _check_workflow,
            _check_reusable_workflow,
            # GitHub environment names are case-insensitive (PyPI compares them lowercased).
            check_environment(case_sensitive=False),
            check_ref_glob(lambda _config: "ref"),
            present("ref", TITLE),
            present("sha", TITLE),
            present("jti", TITLE),
        )


# --- the claim checks -----------------------------------------------------------------------


def _check_repository(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    want = f"{cfg(config, 'owner')}/{cfg(config, 'repository')}"
    # GitHub owner and repository names are case-insensitive: 'Octo/Demo' is 'octo/demo'.
    return compare_claim(claims, "repository", want, TITLE, case_sensitive=False)


def _check_repository_owner(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    # Compared exactly, as PyPI does (which stores GitHub's canonical spelling of the login).
    return compare_claim(
        claims, "repository_owner", cfg(config, "owner"), TITLE, case_sensitive=True
    )


def _check_owner_id(
    config: Mapping[str, Any], pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    got = scalar_text(claims.get("repository_owner_id"))
    if got is None:
        return missing("repository_owner_id", TITLE)
    owner = cfg(config, "owner")
    if (configured := cfg(config, "owner_id")) and got != configured:
        return mismatch(
            "repository_owner_id",
            "repository_owner_id: the token says {got!r}, {publisher} expects owner id "
            "{want!r}: the GitHub account {owner!r} is not the one the publisher was registered "
            "for (deleted and re-created, or renamed and its name taken by someone else?)",
            got=got,
            want=configured,
            owner=owner,
        )
    if (first := pinned.get("repository_owner_id")) and got != first:
        return mismatch(
            "repository_owner_id",
            "repository_owner_id: the token says {got!r}, but {publisher} was pinned to owner "
            "id {want!r} on its first use: the owner id changed, so the GitHub account {owner!r} "
            "is not the one that published before (deleted and re-created, or renamed and its "
            "name taken by someone else?) — a project owner must confirm the publisher again",
            got=got,
            want=first,
            owner=owner,
        )
    return None


def _check_event_name(
    _config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    got = claims.get("event_name")
    if got is None:
        return missing("event_name", TITLE)
    if got == "pull_request_target":
        # Such runs carry the base repository's credentials while acting for a pull request,
        # possibly from a fork: publishing from them hands a release to outsiders.
        return mismatch(
            "event_name",
            "event_name: the workflow was triggered by 'pull_request_target', which is "
            "refused: such runs act on pull requests, including ones from forks, and must not "
            "publish",
        )
    return None


def _check_workflow(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    # Without a reusable workflow the job itself runs the publisher's workflow
    # (job_workflow_ref); with one, the publisher's workflow is the caller (workflow_ref).
    claim = "workflow_ref" if cfg(config, "reusable_workflow") else "job_workflow_ref"
    repository = f"{cfg(config, 'owner')}/{cfg(config, 'repository')}"
    tail = f"/.github/workflows/{cfg(config, 'workflow')}"
    got = claims.get(claim)
    if got is None:
        return missing(claim, TITLE)
    refs = run_refs(claims, "ref")
    if at_run_ref(got, repository, tail, refs):
        return None
    want = f"{repository}{tail}@{refs[0] if refs else '<ref>'}"
    if claim == "job_workflow_ref" and at_run_ref(
        claims.get("workflow_ref"), repository, tail, refs
    ):
        # The right workflow called a reusable one: say so rather than just "mismatch".
        return mismatch(
            claim,
            "{claim}: the token says {got!r}, {publisher} expects {want!r} (the workflow "
            "calls the reusable workflow {got!r}; to publish from it, set it as the "
            "publisher's reusable workflow)",
            claim=claim,
            got=got,
            want=want,
        )
    return differs(claim, got, want, exact=False)


def _check_reusable_workflow(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    configured = cfg(config, "reusable_workflow")
    if not configured:
        return None
    parsed = _REUSABLE.match(configured)
    if parsed is None:
        # validate_config refuses this; a corrupted stored config must not match anything.
        return mismatch(
            "job_workflow_ref",
            "job_workflow_ref: {publisher} has an unusable reusable workflow {want!r}",
            want=configured,
        )
    got = claims.get("job_workflow_ref")
    if got is None:
        return missing("job_workflow_ref", TITLE)
    repository, tail, pinned_ref = parsed.group("repo"), parsed.group("tail"), parsed.group("ref")
    if isinstance(got, str) and _repository_prefix(got, repository):
        rest = got[len(repository) :]
        if pinned_ref and rest == f"{tail}@{pinned_ref}":
            return None
        if not pinned_ref and rest.startswith(f"{tail}@") and len(rest) > len(tail) + 1:
            return None
    want = configured if pinned_ref else f"{configured}@<any ref>"
    return mismatch(
        "job_workflow_ref",
        "job_workflow_ref: the token says {got!r}, {publisher} expects the reusable workflow "
        "{want!r}",
        got=got,
        want=want,
    )


# --- helpers --------------------------------------------------------------------------------


def _repository_prefix(value: str, repository: str) -> bool:
    return value[: len(repository)].lower() == repository.lower()


def _reusable_problem(value: str) -> str | None:
    parsed = _REUSABLE.match(value)
    if parsed is None:
        return (
            "must look like 'org/repo/.github/workflows/publish.yml', optionally followed by "
            "'@refs/tags/v1' or '@<40-character commit sha>'"
        )
    ref = parsed.group("ref")
    if ref and not (ref.startswith("refs/") or _SHA.match(ref)):
        return (
            f"give the full ref after '@' (GitHub writes '@v1' as '@refs/tags/v1' in the "
            f"token) or a 40-character commit sha, not {ref!r}"
        )
    return None


def _key(issuer: str, repository: str) -> str:
    if same_issuer(issuer, GITHUB_ISSUER):
        return f"github:{repository.lower()}"
    return f"github:{issuer.rstrip('/')}:{repository.lower()}"


def _server_for_issuer(issuer: str) -> str | None:
    if same_issuer(issuer, GITHUB_ISSUER):
        return "https://github.com"
    if issuer.rstrip("/").endswith(_GHES_SUFFIX):
        return issuer.rstrip("/")[: -len(_GHES_SUFFIX)]
    return None


def _server_url(claims: Mapping[str, Any]) -> str | None:
    iss = claim_text(claims, "iss") or ""
    if same_issuer(iss, GITHUB_ISSUER):
        return "https://github.com"
    server = claim_text(claims, "server_url")
    if server and server.startswith(("https://", "http://")):
        return server.rstrip("/")
    # Any other GitHub-type issuer that is not an Enterprise Server (e.g. the keyless CI
    # emulator rehearsing a github.com job) stands for github.com.
    return _server_for_issuer(iss) or "https://github.com"
