"""Publishers for any OIDC issuer: an issuer URL plus a claim template.

One of the ways keyless goes beyond PyPI (ARCHITECTURE.md, "Beyond PyPI").

Covers what has no dedicated provider — GitHub Enterprise Server, Forgejo/Gitea Actions,
Buildkite, CircleCI, Bitbucket, self-hosted anything. The publisher names the claim that
identifies it (``subject_claim``, default ``sub``) and its exact value, extra claims that must
hold (exact values, or globs written ``glob:<pattern>``), claims to pin on first use, and an
optional ref glob on a configurable claim.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from keyless.oidc.providers._common import (
    Check,
    FieldSpec,
    Mismatch,
    cfg,
    check_issuer,
    check_pins,
    check_ref_glob,
    claim_text,
    clean,
    differs,
    has_control_chars,
    mismatch,
    raise_if,
    run_checks,
    same_issuer,
    scalar_text,
    unknown_fields,
    validate_issuer_url,
    validate_ref_glob,
)

TITLE: Final = "OIDC issuer"
GLOB_PREFIX: Final = "glob:"

# Claim names as issuers spell them ("sub", "pipeline_slug", "oidc.circleci.com/project-id").
# ':' and '=' are excluded because they delimit the parts of a lookup key.
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,100}\Z", re.ASCII)
# These change with every token or are checked by verification: identifying a publisher by
# them, or pinning them, would be meaningless.
_NOT_IDENTIFYING: Final = frozenset({"iss", "aud", "exp", "iat", "nbf", "jti"})
_MAX_VALUE = 1000

FIELDS: Final = (
    FieldSpec(
        "issuer",
        "Issuer",
        True,
        "The issuer URL exactly as tokens carry it in 'iss', e.g. "
        "'https://agent.buildkite.com' or 'https://oidc.circleci.com/org/<org id>'. https "
        "only (http for localhost).",
    ),
    FieldSpec(
        "subject_claim",
        "Identifying claim",
        False,
        "The claim that identifies the publisher, e.g. 'sub' or "
        "'oidc.circleci.com/project-id'. Choose one that stays the same from build to build.",
        default="sub",
    ),
    FieldSpec(
        "subject",
        "Identifying value",
        True,
        "The value the identifying claim must have. Compared exactly, case included.",
    ),
    FieldSpec(
        "claims",
        "Required claims",
        False,
        "Further claims that must hold, one 'name=value' per line, e.g. "
        "'organization_slug=acme'. Exact and case-sensitive; 'name=glob:pattern' for a pattern.",
    ),
    FieldSpec(
        "pin",
        "Pinned claims",
        False,
        "Claims whose values are recorded on the first successful publish and required from "
        "then on (comma-separated), e.g. an owner's numeric id.",
    ),
    FieldSpec(
        "ref",
        "Ref pattern",
        False,
        "Publish only from refs matching this pattern, e.g. 'refs/tags/v*'; '*' matches any "
        "characters, '/' included. Case-sensitive. Empty: any ref.",
    ),
    FieldSpec(
        "ref_claim",
        "Ref claim",
        False,
        "The claim the ref pattern applies to.",
        default="ref",
    ),
)


class GenericProvider:
    """Publishers defined by an issuer URL and a claim template."""

    kind: str = "generic"
    title: str = TITLE
    short_title: str = "Other issuer"
    fields: tuple[FieldSpec, ...] = FIELDS
    default_issuer: str | None = None  # each publisher names its issuer

    def recognises(self, claims: Mapping[str, Any]) -> bool:
        """False: the generic provider is what describes a token no other kind recognises."""
        return False

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The normalized config.

        ``claims`` may be a mapping or 'name=value' lines; ``pin`` a list or a comma- or
        space-separated string. The result holds ``claims`` as a dict and ``pin`` as a sorted
        list. Raises ``PublisherConfigError`` with every field's problem.
        """
        errors = unknown_fields(config, FIELDS, TITLE)
        text = {
            name: clean(config, name)
            for name in ("issuer", "subject_claim", "subject", "ref", "ref_claim")
        }

        issuer = text["issuer"]
        if not issuer:
            errors["issuer"] = "required: the issuer URL, as tokens carry it in 'iss'"
        elif problem := validate_issuer_url(issuer):
            errors["issuer"] = problem
        elif dedicated := _dedicated_title(issuer):
            # The dedicated provider applies that CI's rules (workflow, pull_request_target…);
            # a bare claim template would silently skip them.
            errors["issuer"] = f"use a {dedicated} publisher for this issuer"

        subject_claim = text["subject_claim"] or "sub"
        if problem := _claim_name_problem(subject_claim):
            errors["subject_claim"] = problem

        subject = text["subject"]
        if not subject:
            errors["subject"] = f"required: the value of the {subject_claim!r} claim to accept"
        elif has_control_chars(subject) or len(subject) > _MAX_VALUE:
            errors["subject"] = f"must be at most {_MAX_VALUE} characters, without control ones"

        claims, problem = _parse_claims(config.get("claims"))
        if problem:
            errors["claims"] = problem

        pin, problem = _parse_pin(config.get("pin"))
        if problem:
            errors["pin"] = problem

        if text["ref"] and (problem := validate_ref_glob(text["ref"], require_refs_prefix=False)):
            errors["ref"] = problem
        ref_claim = text["ref_claim"] or "ref"
        if problem := _claim_name_problem(ref_claim):
            errors["ref_claim"] = problem

        raise_if(errors)
        return {
            "issuer": issuer,
            "subject_claim": subject_claim,
            "subject": subject,
            "claims": claims,
            "pin": pin,
            "ref": text["ref"],
            "ref_claim": ref_claim,
        }

    def issuer(self, config: Mapping[str, Any]) -> str:
        """The configured issuer."""
        return cfg(config, "issuer")

    def lookup_key(self, config: Mapping[str, Any]) -> str:
        """``generic:<issuer>:<identifying claim>=<value>`` (exact, not lowercased)."""
        return _key(self.issuer(config), _subject_claim(config), cfg(config, "subject"))

    def lookup_key_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> str | None:
        """The lookup key for the token's ``sub`` — right only for publishers identified by sub.

        Publishers may be identified by any claim: use ``lookup_keys_from_claims`` to find all.
        """
        sub = scalar_text(claims.get("sub"))
        return _key(issuer, "sub", sub) if sub else None

    def lookup_keys_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> list[str]:
        """One key per claim that could identify a publisher (scalar values only)."""
        keys = []
        for name, value in sorted(claims.items()):
            text = scalar_text(value)
            if text is None or name in _NOT_IDENTIFYING or _claim_name_problem(name):
                continue
            keys.append(_key(issuer, name, text))
        return keys

    def check(
        self, config: Mapping[str, Any], pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> list[Mismatch]:
        """Every claim that fails the publisher's checks ([] when the token matches)."""
        return [
            *run_checks(_CHECKS, config, pinned, claims),
            *_check_required_claims(config, claims),
        ]

    def pins(
        self, claims: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """The values of the claims the config's ``pin`` names, as the token carries them.

        Without ``config`` the configured names are unknown, so every scalar claim is offered
        (failing closed: only the configured ones are ever checked, but none is missed).
        """
        if config is not None:
            names: Iterable[str] = _pin_list(config)
        else:
            names = [name for name in claims if name not in _NOT_IDENTIFYING]
        return {name: text for name in names if (text := scalar_text(claims.get(name))) is not None}

    def specificity(self, config: Mapping[str, Any]) -> int:
        """One point per required claim and for a ref pattern."""
        return len(_claims_map(config)) + int(bool(cfg(config, "ref")))

    def describe(self, claims: Mapping[str, Any]) -> dict[str, str | None]:
        """Best effort from claim names common among CI issuers; None where unknown."""
        org, pipeline = claim_text(claims, "organization_slug"), claim_text(claims, "pipeline_slug")
        buildkite = f"{org}/{pipeline}" if org and pipeline else None
        return {
            "identity": _identity_text(claims),
            "repository": _first(
                claims, "repository", "project_path", "oidc.circleci.com/vcs-origin"
            )
            or buildkite,
            "workflow": _first(claims, "job_workflow_ref", "workflow_ref", "workflow"),
            "ref": _first(claims, "ref", "oidc.circleci.com/vcs-ref", "build_branch"),
            "sha": _first(claims, "sha", "build_commit"),
            "environment": _first(claims, "environment"),
            "run_url": None,
            "commit_url": None,
            "event_name": _first(claims, "event_name", "pipeline_source", "build_source"),
        }

    def publisher_url(self, config: Mapping[str, Any]) -> str | None:
        """None: nothing general is known about the issuer's web pages."""
        return None

    def summary(self, config: Mapping[str, Any]) -> str:
        """E.g. "OIDC issuer https://agent.buildkite.com, pipeline_slug=release, ..."."""
        parts = [
            f"OIDC issuer {self.issuer(config)}",
            f"{_subject_claim(config)}={cfg(config, 'subject')}",
        ]
        parts += [f"{name}={value}" for name, value in sorted(_claims_map(config).items())]
        if pin := _pin_list(config):
            parts.append(f"pinned {', '.join(pin)}")
        if ref := cfg(config, "ref"):
            parts.append(f"refs {ref} ({_ref_claim(config)})")
        return ", ".join(parts)

    def identity(self, claims: Mapping[str, Any]) -> str:
        """E.g. "issuer 'https://agent.buildkite.com', sub 'organization:acme:…'"."""
        return _identity_text(claims)

    def registration_hint(self, claims: Mapping[str, Any]) -> str:
        """How to register a generic publisher for this issuer."""
        return (
            "to publish from it, a project owner registers an OIDC issuer publisher with "
            f"issuer {claims.get('iss')!r} and the claim that identifies the build's project "
            "(one that stays the same from build to build) with its value"
        )


def _check_subject(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    return _compare_exactly(claims, _subject_claim(config), cfg(config, "subject"))


def _check_required_claims(config: Mapping[str, Any], claims: Mapping[str, Any]) -> list[Mismatch]:
    found = []
    for claim, want in sorted(_claims_map(config).items()):
        if want.startswith(GLOB_PREFIX):
            problem = _compare_glob(claims, claim, want[len(GLOB_PREFIX) :])
        else:
            problem = _compare_exactly(claims, claim, want)
        if problem is not None:
            found.append(problem)
    return found


def _compare_glob(claims: Mapping[str, Any], claim: str, pattern: str) -> Mismatch | None:
    raw = claims.get(claim)
    got = scalar_text(raw)
    if got is not None and fnmatch.fnmatchcase(got, pattern):
        return None
    return mismatch(
        claim,
        "{claim}: the token says {got!r}, {publisher} expects a value matching {pattern!r}",
        claim=claim,
        got=raw,
        pattern=pattern,
    )


def _compare_exactly(claims: Mapping[str, Any], claim: str, want: str) -> Mismatch | None:
    # Scalars compare in their JSON spelling (see scalar_text), so 'false' matches false.
    raw = claims.get(claim)
    if raw is None:
        return mismatch(
            claim,
            "{claim}: the token has no {claim!r} claim, {publisher} expects {want!r}",
            claim=claim,
            want=want,
        )
    if scalar_text(raw) == want:
        return None
    return differs(claim, raw, want, exact=True)


_CHECKS: Final[tuple[Check, ...]] = (
    check_issuer(lambda config: cfg(config, "issuer")),
    _check_subject,
    check_pins(TITLE, lambda config: _pin_list(config)),
    check_ref_glob(lambda config: _ref_claim(config)),
)


# --- config helpers ---------------------------------------------------------------------------


def _subject_claim(config: Mapping[str, Any]) -> str:
    return cfg(config, "subject_claim") or "sub"


def _ref_claim(config: Mapping[str, Any]) -> str:
    return cfg(config, "ref_claim") or "ref"


def _claims_map(config: Mapping[str, Any]) -> dict[str, str]:
    value = config.get("claims")
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _pin_list(config: Mapping[str, Any]) -> list[str]:
    value = config.get("pin")
    if not isinstance(value, list | tuple):
        return []
    return [str(name) for name in value]


def _claim_name_problem(name: str) -> str | None:
    if not _CLAIM_NAME.match(name):
        return (
            f"{name!r} is not a claim name (letters, digits and '_', '.', '-', '/'; at most "
            "100 characters)"
        )
    if name in _NOT_IDENTIFYING:
        return f"{name!r} is checked by verification or changes with every token"
    return None


def _parse_claims(value: object) -> tuple[dict[str, str], str | None]:
    pairs: Iterable[tuple[object, object]]
    if value is None or value == "":
        return {}, None
    if isinstance(value, Mapping):
        pairs = value.items()
    elif isinstance(value, str):
        parsed: list[tuple[object, object]] = []
        for line in value.splitlines():
            if not line.strip():
                continue
            name, sep, expected = line.partition("=")
            if not sep:
                return {}, f"{line.strip()!r}: write one 'name=value' per line"
            parsed.append((name.strip(), expected.strip()))
        pairs = parsed
    else:
        return {}, "must be 'name=value' lines or a mapping"
    result: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name, expected = str(raw_name).strip(), str(raw_value).strip()
        if problem := _claim_name_problem(name):
            return {}, problem
        if not expected:
            return {}, f"{name!r}: give the value the claim must have"
        if has_control_chars(expected) or len(expected) > _MAX_VALUE:
            return {}, f"{name!r}: at most {_MAX_VALUE} characters, without control ones"
        if expected.startswith(GLOB_PREFIX):
            pattern = expected[len(GLOB_PREFIX) :]
            if not pattern or set(pattern) <= {"*", "?"}:
                return {}, f"{name!r}: a pattern that accepts every value constrains nothing"
        result[name] = expected
    return result, None


def _parse_pin(value: object) -> tuple[list[str], str | None]:
    if value is None or value == "":
        return [], None
    if isinstance(value, str):
        names = [part for part in re.split(r"[\s,]+", value) if part]
    elif isinstance(value, list | tuple):
        names = [str(part).strip() for part in value]
    else:
        return [], "must be claim names separated by commas, or a list"
    for name in names:
        if problem := _claim_name_problem(name):
            return [], problem
    return sorted(set(names)), None


def _key(issuer: str, claim: str, value: str) -> str:
    return f"generic:{issuer.rstrip('/')}:{claim}={value}"


def _first(claims: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        if text := claim_text(claims, name):
            return text
    return None


def _identity_text(claims: Mapping[str, Any]) -> str:
    return f"issuer {claims.get('iss')!r}, sub {claims.get('sub')!r}"


def _dedicated_title(issuer: str) -> str | None:
    """The title of the provider whose default issuer this is (None when there is none)."""
    # Imported here: the registry imports this module.
    from keyless.oidc.providers import PROVIDERS

    for provider in PROVIDERS.values():
        if provider.default_issuer and same_issuer(provider.default_issuer, issuer):
            return provider.title
    return None
