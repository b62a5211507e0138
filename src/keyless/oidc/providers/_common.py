"""What every provider shares: field specs, mismatches, config and claim helpers.

Each provider is a table of claim checks (warehouse's idea) written as pure functions over plain
data: a check takes ``(config, pinned, claims)`` and returns a ``Mismatch`` or ``None``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from keyless.oidc.errors import PublisherConfigError

# Stands for "the publisher" in a mismatch's template, until matching names the candidate.
# Token values are always interpolated with !r, whose output never contains a raw NUL, so a
# token cannot smuggle this marker in.
_PUBLISHER_MARK: Final = "\x00publisher\x00"
THE_PUBLISHER: Final = "the publisher"


@dataclass(frozen=True)
class FieldSpec:
    """One configuration field of a provider, as the web form and the CLI present it."""

    name: str
    label: str
    required: bool
    help: str
    default: str = ""


@dataclass(frozen=True)
class Mismatch:
    """One claim that failed a publisher's check.

    ``message`` reads e.g. "environment: the token says 'release', the publisher expects
    'pypi'". ``for_publisher(label)`` gives the same text with "the publisher" replaced by a
    label such as "the publisher for 'demo' on index 'prod'".
    """

    claim: str
    message: str
    template: str = field(default="", repr=False, compare=False)

    def for_publisher(self, label: str) -> str:
        """The message naming the publisher by ``label``."""
        if not self.template:
            return self.message
        return self.template.replace(_PUBLISHER_MARK, label)


def mismatch(claim: str, text: str, /, **values: object) -> Mismatch:
    """Build a ``Mismatch`` from a ``str.format`` template.

    ``{publisher}`` in ``text`` marks where the publisher is named; token-derived values must
    be interpolated with ``!r`` (quotes them and escapes control characters).
    """
    return Mismatch(
        claim,
        text.format(publisher=THE_PUBLISHER, **values),
        text.format(publisher=_PUBLISHER_MARK, **values),
    )


class Provider(Protocol):
    """A kind of trusted publisher: its config fields and the claim checks that match it."""

    kind: str  # the name stored with a publisher, in URLs, settings and CLI commands
    title: str  # e.g. "GitHub Actions", in messages and form headings
    short_title: str  # e.g. "GitHub", the web form's tab
    fields: tuple[FieldSpec, ...]
    # The issuer every server trusts for this kind without configuration ([trusted-publishing]
    # issuers adds others); None when each publisher names its own (the generic provider).
    default_issuer: str | None

    def recognises(self, claims: Mapping[str, Any]) -> bool:
        """Whether a token with these claims looks issued by this kind of CI (its issuer or
        its claims' shape); only to describe a token no publisher matched."""
        ...

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Normalized config; raises ``PublisherConfigError`` listing every field problem."""
        ...

    def issuer(self, config: Mapping[str, Any]) -> str:
        """The issuer whose tokens this publisher accepts."""
        ...

    def lookup_key(self, config: Mapping[str, Any]) -> str:
        """The identity key stored with the publisher, to find it from a token."""
        ...

    def lookup_key_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> str | None:
        """The same key computed from a verified token; None if the token lacks the claims."""
        ...

    def lookup_keys_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> list[str]:
        """Every key a publisher matching this token could be stored under."""
        ...

    def check(
        self, config: Mapping[str, Any], pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> list[Mismatch]:
        """[] when the claims match the publisher; otherwise every claim that failed."""
        ...

    def pins(
        self, claims: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """Values to pin on the publisher after its first successful use.

        Pass the publisher's ``config``: the generic provider pins the claims it names.
        """
        ...

    def specificity(self, config: Mapping[str, Any]) -> int:
        """How constrained the publisher is; the most specific matching publisher wins."""
        ...

    def describe(self, claims: Mapping[str, Any]) -> dict[str, str | None]:
        """What the audit trail records about the run that presented the token."""
        ...

    def publisher_url(self, config: Mapping[str, Any]) -> str | None:
        """A web page of the publisher's repository or project, if there is one."""
        ...

    def summary(self, config: Mapping[str, Any]) -> str:
        """The publisher in one line."""
        ...

    def identity(self, claims: Mapping[str, Any]) -> str:
        """What the token identifies as, e.g. "GitHub repository 'owner/repo'"."""
        ...

    def registration_hint(self, claims: Mapping[str, Any]) -> str:
        """How to register a publisher that would accept this token."""
        ...


Check = Callable[[Mapping[str, Any], Mapping[str, str], Mapping[str, Any]], Mismatch | None]


class ClaimTableProvider:
    """What GitHub, GitLab and Google share: one identity key per token, a table of checks.

    Subclasses give `lookup_key_from_claims` and `_checks`; the generic issuer, whose key
    depends on each publisher's configuration, implements the Provider protocol itself.
    """

    @property
    def _checks(self) -> tuple[Check, ...]:
        raise NotImplementedError

    def lookup_key_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> str | None:
        raise NotImplementedError

    def lookup_keys_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> list[str]:
        """``[lookup_key_from_claims(...)]``, or [] when the token lacks its identity claim."""
        key = self.lookup_key_from_claims(issuer, claims)
        return [key] if key else []

    def check(
        self, config: Mapping[str, Any], pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> list[Mismatch]:
        """Every claim that fails the publisher's checks ([] when the token matches)."""
        return run_checks(self._checks, config, pinned, claims)


def run_checks(
    checks: Iterable[Check],
    config: Mapping[str, Any],
    pinned: Mapping[str, str],
    claims: Mapping[str, Any],
) -> list[Mismatch]:
    """Every mismatch the checks find, in table order."""
    return [found for check in checks if (found := check(config, pinned, claims)) is not None]


# --- reading config and claims -------------------------------------------------------------


def cfg(config: Mapping[str, Any], name: str) -> str:
    """A string config value; "" when absent or empty."""
    value = config.get(name)
    return value if isinstance(value, str) else ""


def claim_text(claims: Mapping[str, Any], name: str) -> str | None:
    """A claim that is a non-empty string; None otherwise."""
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def scalar_text(value: object) -> str | None:
    """A claim value as text when it is a string, integer or boolean (JSON spelling); else None.

    GitLab sends some flags as the strings "true"/"false" and other issuers as JSON booleans;
    comparing both as text lets one configured value match either.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def present(claim: str, title: str) -> Check:
    """A check that ``claim`` is present (required but not compared)."""

    def check(
        _config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> Mismatch | None:
        if claims.get(claim) is None:
            return missing(claim, title)
        return None

    return check


def missing(claim: str, title: str) -> Mismatch:
    """The token lacks a claim every token of this kind carries."""
    return mismatch(
        claim,
        "{claim}: the token has no {claim!r} claim, which {title} tokens always carry "
        "(is this token from {title}?)",
        claim=claim,
        title=title,
    )


def compare_claim(
    claims: Mapping[str, Any], claim: str, want: str, title: str, *, case_sensitive: bool
) -> Mismatch | None:
    """The usual check of a claim every token carries against the configured value."""
    got = claims.get(claim)
    if got is None:
        return missing(claim, title)
    if got == want or (not case_sensitive and isinstance(got, str) and got.lower() == want.lower()):
        return None
    return differs(claim, got, want, exact=case_sensitive)


def check_environment(*, case_sensitive: bool) -> Check:
    """A check of the optional configured deployment environment (GitHub and GitLab jobs)."""

    def check(
        config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> Mismatch | None:
        want = cfg(config, "environment")
        if not want:
            return None
        got = claims.get("environment")
        if not isinstance(got, str) or not got:
            return mismatch(
                "environment",
                "environment: the token has no environment, {publisher} expects {want!r} (the "
                "publishing job needs `environment: {bare}`)",
                want=want,
                bare=want,
            )
        if got == want or (not case_sensitive and got.lower() == want.lower()):
            return None
        return differs("environment", got, want, exact=case_sensitive)

    return check


def differs(claim: str, got: object, want: str, *, exact: bool) -> Mismatch:
    """The token's value is not the expected one.

    With ``exact``, a difference only in case is named as such — a user who typed 'Octo' for
    'octo' should not have to spot it.
    """
    if exact and isinstance(got, str) and got.casefold() == want.casefold():
        return mismatch(
            claim,
            "{claim}: the token says {got!r}, {publisher} expects {want!r} (names differ only "
            "in case; this claim is compared exactly)",
            claim=claim,
            got=got,
            want=want,
        )
    return mismatch(
        claim,
        "{claim}: the token says {got!r}, {publisher} expects {want!r}",
        claim=claim,
        got=got,
        want=want,
    )


def run_refs(claims: Mapping[str, Any], ref_claim: str) -> list[str]:
    """What a workflow or pipeline reference of this run may end with: its ref, then its sha.

    The sha stands in when the run has no ref (a deployment).
    """
    return [value for name in (ref_claim, "sha") if (value := claim_text(claims, name))]


def at_run_ref(got: object, prefix: str, tail: str, refs: Sequence[str]) -> bool:
    """Whether ``got`` is ``{prefix}{tail}@{ref}`` for one of the run's ``refs``.

    ``prefix`` (host, owner or namespace, repository or project) is compared ignoring case, as
    GitHub and GitLab treat those names; ``tail`` is a file path in git, compared exactly.
    """
    if not isinstance(got, str) or got[: len(prefix)].lower() != prefix.lower():
        return False
    return got[len(prefix) :] in {f"{tail}@{ref}" for ref in refs}


def check_issuer(issuer_of: Callable[[Mapping[str, Any]], str]) -> Check:
    """A check that the token comes from the publisher's issuer.

    The index may verify a token against the issuer named in the token itself; without this
    check a token from one issuer (say a CI emulator) could match a publisher registered for
    another (GitHub.com) that happens to share the identifying claims.
    """

    def check(
        config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> Mismatch | None:
        want = issuer_of(config)
        got = claims.get("iss")
        if isinstance(got, str) and same_issuer(got, want):
            return None
        return mismatch(
            "iss",
            "iss: the token was issued by {got!r}, {publisher} accepts tokens from {want!r}",
            got=got,
            want=want,
        )

    return check


def same_issuer(a: str, b: str) -> bool:
    """Issuer URLs compared as OIDC discovery treats them: a trailing '/' does not matter."""
    return a.rstrip("/") == b.rstrip("/")


def issued_by(claims: Mapping[str, Any], issuer: str) -> bool:
    """Whether the token's ``iss`` is ``issuer`` (False without one)."""
    return same_issuer(claim_text(claims, "iss") or "", issuer)


def job_registration_hint(
    title: str, settings: list[str], claims: Mapping[str, Any], default_issuer: str
) -> str:
    """A CI job's registration hint: ``settings`` (the job's identity), then the token's
    environment, and its issuer when it is not the provider's own.
    """
    if env := claim_text(claims, "environment"):
        settings.append(f"environment {env!r}")
    iss = claim_text(claims, "iss") or ""
    if not same_issuer(iss, default_issuer):
        settings.append(f"issuer {iss!r}")
    return f"to publish from it, a project owner registers a {title} publisher with " + (
        ", ".join(settings)
    )


def check_ref_glob(ref_claim: Callable[[Mapping[str, Any]], str]) -> Check:
    """A check of the optional ``ref`` glob constraint against the claim ``ref_claim(config)``."""

    def check(
        config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> Mismatch | None:
        pattern = cfg(config, "ref")
        if not pattern:
            return None
        claim = ref_claim(config)
        got = claims.get(claim)
        # Refs are case-sensitive in git, so the glob is too.
        if isinstance(got, str) and fnmatch.fnmatchcase(got, pattern):
            return None
        if got is None:
            return mismatch(
                claim,
                "{claim}: the token has no {claim!r} claim, {publisher} accepts only refs "
                "matching {pattern!r}",
                claim=claim,
                pattern=pattern,
            )
        return mismatch(
            claim,
            "{claim}: the token says {got!r}, {publisher} accepts only refs matching {pattern!r}",
            claim=claim,
            got=got,
            pattern=pattern,
        )

    return check


def check_pins(title: str, names_of: Callable[[Mapping[str, Any]], Collection[str]]) -> Check:
    """A check that the claims ``names_of(config)`` pinned on first use keep their values.

    Other claims in ``pinned`` are ignored: a pin left over from a claim since removed from a
    publisher's config must not lock the publisher.
    """

    def check(
        config: Mapping[str, Any], pinned: Mapping[str, str], claims: Mapping[str, Any]
    ) -> Mismatch | None:
        names = names_of(config)
        for claim, want in sorted(pinned.items()):
            if claim not in names:
                continue
            got = scalar_text(claims.get(claim))
            if got == want:
                continue
            if got is None:
                return mismatch(
                    claim,
                    "{claim}: the token has no {claim!r} claim, but {publisher} was pinned to "
                    "{want!r} on its first use",
                    claim=claim,
                    want=want,
                )
            return mismatch(
                claim,
                "{claim}: the token says {got!r}, but {publisher} was pinned to {want!r} on its "
                "first use; {title} reports a different identity now — a project owner must "
                "confirm the publisher again",
                claim=claim,
                got=got,
                want=want,
                title=title,
            )
        return None

    return check


# --- validating config ----------------------------------------------------------------------

_LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def validate_issuer_url(url: str) -> str | None:
    """The problem with an issuer URL, or None when it is fine.

    https only, except plain http on the local machine (the keyless CI emulator); no user
    info, query or fragment, since an issuer is compared and used as a URL prefix.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "not a valid URL"
    if not host:
        return "must be a URL such as 'https://ci.example.com'"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "must not contain a query or fragment"
    if any(ch.isspace() for ch in url):
        return "must not contain spaces"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _is_local(host):
        return None
    if parts.scheme == "http":
        return "must use https (plain http is accepted only for localhost, 127.0.0.1 and ::1)"
    return "must be an https URL"


def _is_local(host: str) -> bool:
    # Only these exact spellings: a name like 'localhost.example.com' could resolve anywhere.
    return host in _LOCAL_HOSTS


_WILDCARDS = frozenset("*?")


def validate_ref_glob(pattern: str, *, require_refs_prefix: bool) -> str | None:
    """The problem with a ref glob constraint, or None when it is fine."""
    if set(pattern) <= _WILDCARDS:
        return (
            f"{pattern!r} would accept every ref; leave it empty for no constraint, or give "
            "a pattern such as 'refs/tags/v*'"
        )
    if any(ch.isspace() for ch in pattern):
        return "must not contain spaces"
    if require_refs_prefix and not pattern.startswith("refs/"):
        return "give the full ref as the token carries it, e.g. 'refs/tags/v*' or 'refs/heads/main'"
    return None


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def clean(config: Mapping[str, Any], name: str) -> str:
    """A config value as a stripped string ("" when absent)."""
    value = config.get(name)
    if value is None:
        return ""
    return str(value).strip()


def unknown_fields(
    config: Mapping[str, Any], fields: Sequence[FieldSpec], title: str
) -> dict[str, str]:
    """Errors for keys that are not fields of this provider.

    A typo such as 'enviroment' must not silently leave a publisher unconstrained.
    """
    known = {spec.name for spec in fields}
    return {name: f"not a field of a {title} publisher" for name in config if name not in known}


def read_fields(
    config: Mapping[str, Any], fields: Sequence[FieldSpec], title: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Every field's value (stripped, "" when unset) and the errors for unknown keys.

    The start of a provider's ``validate_config``: it adds its own checks to the errors.
    """
    values = {spec.name: clean(config, spec.name) for spec in fields}
    return values, unknown_fields(config, fields, title)


def raise_if(errors: Mapping[str, str]) -> None:
    """Raise ``PublisherConfigError`` when there are errors."""
    if errors:
        raise PublisherConfigError(errors)


def has_control_chars(value: str) -> bool:
    """Whether ``value`` contains ASCII control characters."""
    return bool(_CONTROL_CHARS.search(value))
