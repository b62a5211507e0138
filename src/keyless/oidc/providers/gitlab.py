"""GitLab CI/CD publishers (gitlab.com and self-managed instances).

Claim rules follow PyPI's (https://docs.pypi.org/trusted-publishers/): ``project_path`` and the
``sub`` prefix identify the project (case-insensitive), ``ci_config_ref_uri`` names the top-level
pipeline file and the ref it ran from, an optional environment is compared exactly. keyless adds a
ref glob (on ``ref_path``) and pins ``namespace_id`` on first use, so a deleted group whose path is
re-registered by someone else cannot publish.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Final
from urllib.parse import urlsplit

from keyless.oidc.providers._common import (
    Check,
    ClaimTableProvider,
    FieldSpec,
    Mismatch,
    at_run_ref,
    cfg,
    check_environment,
    check_issuer,
    check_pins,
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

GITLAB_ISSUER: Final = "https://gitlab.com"
TITLE: Final = "GitLab CI/CD"


def id_token_variable(audience: str) -> str:
    """The variable a GitLab job's ``id_tokens:`` entry for ``audience`` puts its token in.

    GitLab lets a job name the variable freely; publishing clients (the `id` library, uv,
    `keyless publish`) look for ``<AUDIENCE>_ID_TOKEN``: the audience upper-cased, every
    character outside [A-Z0-9_] (and a leading digit) replaced by '_'. The one home of that
    rule: the CI emulator sets the variable, `keyless init` and the Publishing page's preview
    write it, `keyless publish` and `keyless doctor` read it.
    """
    return re.sub(r"[^A-Z0-9_]|^[^A-Z_]", "_", audience.upper()) + "_ID_TOKEN"


# GitLab's path rules (as PyPI applies them): letters, digits and '_', '.', '-' (and '/', '+'
# in namespaces), alphanumeric at both ends, no two special characters in a row, and no
# '.git'/'.atom' ending.
_NAMESPACE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_./+-]*[A-Za-z0-9])?\Z", re.ASCII)
_PROJECT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?\Z", re.ASCII)
_DOUBLE_SPECIAL = re.compile(r"[._-]{2}")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9_/${} -]+\Z", re.ASCII)
# The pipeline file inside a ci_config_ref_uri: "host/ns/project//PATH@ref".
_CONFIG_PATH = re.compile(r"//(?P<path>.+?\.ya?ml)@")

FIELDS: Final = (
    FieldSpec(
        "namespace",
        "Namespace",
        True,
        "The user or group (with subgroups: 'group/subgroup') that owns the project. Not "
        "case-sensitive.",
    ),
    FieldSpec(
        "project",
        "Project",
        True,
        "The project's path name, e.g. 'sampleproject'. Not case-sensitive.",
    ),
    FieldSpec(
        "workflow_filepath",
        "Top-level pipeline file",
        True,
        "Path of the CI configuration file in the repository, e.g. '.gitlab-ci.yml' or "
        "'ci/release.yml'. Case-sensitive.",
    ),
    FieldSpec(
        "environment",
        "Environment",
        False,
        "The GitLab environment of the publishing job, e.g. 'pypi'. Case-sensitive. Empty: "
        "any environment.",
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
        "issuer",
        "Issuer",
        False,
        "Empty for gitlab.com; for a self-managed instance its URL, e.g. "
        "'https://gitlab.example.com'.",
        default=GITLAB_ISSUER,
    ),
)


class GitLabProvider(ClaimTableProvider):
    """Publishers that accept tokens from GitLab CI/CD pipelines."""

    kind: str = "gitlab"
    title: str = TITLE
    short_title: str = "GitLab"
    fields: tuple[FieldSpec, ...] = FIELDS
    default_issuer: str | None = GITLAB_ISSUER

    def recognises(self, claims: Mapping[str, Any]) -> bool:
        """gitlab.com's issuer, or GitLab's shape (a self-managed instance)."""
        return issued_by(claims, GITLAB_ISSUER) or (
            "project_path" in claims and "ci_config_ref_uri" in claims
        )

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The normalized config (every field, "" when unset; issuer resolved, no trailing '/').

        Raises ``PublisherConfigError`` with every field's problem.
        """
        values, errors = read_fields(config, FIELDS, TITLE)

        for name, pattern, what in (
            ("namespace", _NAMESPACE, "user or group path"),
            ("project", _PROJECT, "project path"),
        ):
            value = values[name]
            if not value:
                errors[name] = f"required: the GitLab {what}"
            elif value.lower().endswith((".git", ".atom")):
                errors[name] = "must not end with '.git' or '.atom'"
            elif not pattern.match(value) or _DOUBLE_SPECIAL.search(value):
                errors[name] = (
                    f"not a GitLab {what} (letters, digits, '_', '.', '-'"
                    + (", '/', '+'" if name == "namespace" else "")
                    + "; starting and ending with a letter or digit; no two of '._-' in a row)"
                )

        path = values["workflow_filepath"]
        if not path:
            errors["workflow_filepath"] = "required: the CI file's path, e.g. '.gitlab-ci.yml'"
        elif not path.endswith((".yml", ".yaml")):
            errors["workflow_filepath"] = "must end with .yml or .yaml"
        elif path.startswith("/") or path.endswith("/") or "//" in path:
            errors["workflow_filepath"] = (
                "a path inside the repository, e.g. 'ci/release.yml', without a leading '/'"
            )
        elif has_control_chars(path) or "@" in path:
            errors["workflow_filepath"] = "must not contain '@' or control characters"

        environment = values["environment"]
        if len(environment) > 255:
            errors["environment"] = "too long (at most 255 characters)"
        elif environment and not _ENVIRONMENT.match(environment):
            errors["environment"] = (
                "may contain only letters, digits, spaces and '-', '_', '/', '$', '{', '}'"
            )

        if values["ref"] and (
            problem := validate_ref_glob(values["ref"], require_refs_prefix=True)
        ):
            errors["ref"] = problem

        if not values["issuer"]:
            values["issuer"] = GITLAB_ISSUER
        elif problem := validate_issuer_url(values["issuer"]):
            errors["issuer"] = problem
        else:
            values["issuer"] = values["issuer"].rstrip("/")

        raise_if(errors)
        return values

    def issuer(self, config: Mapping[str, Any]) -> str:
        """The configured instance URL, https://gitlab.com by default."""
        return cfg(config, "issuer") or GITLAB_ISSUER

    def lookup_key(self, config: Mapping[str, Any]) -> str:
        """``gitlab:<issuer>:namespace/project``, lowercase."""
        return _key(self.issuer(config), f"{cfg(config, 'namespace')}/{cfg(config, 'project')}")

    def lookup_key_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> str | None:
        """The lookup key for the token's ``project_path``; None without one."""
        project_path = claims.get("project_path")
        if not isinstance(project_path, str) or "/" not in project_path:
            return None
        return _key(issuer, project_path)

    def pins(
        self, claims: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """``namespace_id``: a deleted group re-created under the same path gets a new id."""
        namespace_id = scalar_text(claims.get("namespace_id"))
        return {"namespace_id": namespace_id} if namespace_id else {}

    def specificity(self, config: Mapping[str, Any]) -> int:
        """One point per optional constraint: environment, ref pattern."""
        return sum(bool(cfg(config, name)) for name in ("environment", "ref"))

    def describe(self, claims: Mapping[str, Any]) -> dict[str, str | None]:
        """Project, pipeline file, ref, sha, environment, job and commit URLs, pipeline source."""
        server = (claim_text(claims, "iss") or "").rstrip("/") or None
        project = claim_text(claims, "project_path")
        sha = claim_text(claims, "sha")
        job_id = scalar_text(claims.get("job_id"))
        base = f"{server}/{project}" if server and project else None
        return {
            "identity": project,
            "repository": project,
            "workflow": claim_text(claims, "ci_config_ref_uri"),
            "ref": claim_text(claims, "ref_path"),
            "sha": sha,
            "environment": claim_text(claims, "environment"),
            "run_url": f"{base}/-/jobs/{job_id}" if base and job_id else None,
            "commit_url": f"{base}/-/commit/{sha}" if base and sha else None,
            "event_name": claim_text(claims, "pipeline_source"),
        }

    def publisher_url(self, config: Mapping[str, Any]) -> str | None:
        """The project's page on the GitLab instance."""
        namespace, project = cfg(config, "namespace"), cfg(config, "project")
        return f"{self.issuer(config).rstrip('/')}/{namespace}/{project}"

    def summary(self, config: Mapping[str, Any]) -> str:
        """E.g. "GitLab group/project, CI file .gitlab-ci.yml, environment pypi"."""
        parts = [
            f"GitLab {cfg(config, 'namespace')}/{cfg(config, 'project')}",
            f"CI file {cfg(config, 'workflow_filepath')}",
        ]
        if env := cfg(config, "environment"):
            parts.append(f"environment {env}")
        if ref := cfg(config, "ref"):
            parts.append(f"refs {ref}")
        if not same_issuer(self.issuer(config), GITLAB_ISSUER):
            parts.append(f"issuer {self.issuer(config)}")
        return ", ".join(parts)

    def identity(self, claims: Mapping[str, Any]) -> str:
        """E.g. "GitLab project 'group/project' on 'https://gitlab.com'"."""
        return f"GitLab project {claims.get('project_path')!r} on {claims.get('iss')!r}"

    def registration_hint(self, claims: Mapping[str, Any]) -> str:
        """The publisher settings that would accept this token."""
        namespace, _, project = (claim_text(claims, "project_path") or "?/?").rpartition("/")
        settings = [f"namespace {namespace!r}", f"project {project!r}"]
        if found := _CONFIG_PATH.search(claim_text(claims, "ci_config_ref_uri") or ""):
            settings.append(f"top-level pipeline file {found.group('path')!r}")
        return job_registration_hint(TITLE, settings, claims, GITLAB_ISSUER)

    @cached_property
    def _checks(self) -> tuple[Check, ...]:
        # Built once per provider: check() runs for every candidate of every mint request.
        return (
            check_issuer(self.issuer),
            _check_project_path,
            _check_sub,
            self._check_ci_config_ref_uri,
            # GitLab environment names are case-sensitive (PyPI compares them exactly).
            check_environment(case_sensitive=True),
            check_ref_glob(lambda _config: "ref_path"),
            check_pins(TITLE, lambda _config: ("namespace_id",)),
            present("ref_path", TITLE),
            present("sha", TITLE),
            present("jti", TITLE),
        )

    def _check_ci_config_ref_uri(
        self, config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> Mismatch | None:
        got = claims.get("ci_config_ref_uri")
        if got is None:
            return missing("ci_config_ref_uri", TITLE)
        prefix = f"{_host_path(self.issuer(config))}/{cfg(config, 'namespace')}/"
        prefix += cfg(config, "project")
        tail = f"//{cfg(config, 'workflow_filepath')}"
        refs = run_refs(claims, "ref_path")
        if at_run_ref(got, prefix, tail, refs):
            return None
        want = f"{prefix}{tail}@{refs[0] if refs else '<ref>'}"
        return differs("ci_config_ref_uri", got, want, exact=False)


def _check_project_path(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    want = f"{cfg(config, 'namespace')}/{cfg(config, 'project')}"
    return compare_claim(claims, "project_path", want, TITLE, case_sensitive=False)


def _check_sub(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    want = f"project_path:{cfg(config, 'namespace')}/{cfg(config, 'project')}"
    got = claims.get("sub")
    if got is None:
        return missing("sub", TITLE)
    # "project_path:ns/proj:ref_type:branch:ref:main" — the prefix must end at a ':' so that
    # 'ns/proj' does not accept 'ns/proj-evil'.
    if isinstance(got, str) and (got.lower() + ":").startswith(want.lower() + ":"):
        return None
    return mismatch(
        "sub",
        "sub: the token says {got!r}, {publisher} expects it to start with {want!r}",
        got=got,
        want=want,
    )


def _key(issuer: str, project_path: str) -> str:
    return f"gitlab:{issuer.rstrip('/')}:{project_path}".lower()


def _host_path(issuer: str) -> str:
    # ci_config_ref_uri starts with the instance's address without scheme: "gitlab.com/…",
    # or "example.com/gitlab/…" for an instance served under a path.
    parts = urlsplit(issuer)
    return f"{parts.netloc}{parts.path.rstrip('/')}"
