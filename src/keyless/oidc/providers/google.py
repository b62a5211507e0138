"""Google Cloud publishers: a service account's identity token.

Claim rules follow PyPI's (https://docs.pypi.org/trusted-publishers/): ``email`` exact,
``email_verified`` true, optional ``sub`` exact. keyless pins ``sub`` on first use when it is not
configured: a deleted service account re-created under the same email gets a new ``sub``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from keyless.oidc.providers._common import (
    Check,
    ClaimTableProvider,
    FieldSpec,
    Mismatch,
    cfg,
    check_issuer,
    check_pins,
    compare_claim,
    differs,
    issued_by,
    mismatch,
    raise_if,
    read_fields,
)

GOOGLE_ISSUER: Final = "https://accounts.google.com"
TITLE: Final = "Google Cloud"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_SUB = re.compile(r"[^\s]{1,255}\Z")

FIELDS: Final = (
    FieldSpec(
        "email",
        "Service account email",
        True,
        "The email of the service account the build runs as, e.g. "
        "'publisher@my-project.iam.gserviceaccount.com'. Compared exactly.",
    ),
    FieldSpec(
        "sub",
        "Subject",
        False,
        "The service account's unique id (the token's 'sub'). Empty: pinned on the first "
        "successful publish.",
    ),
)


class GoogleProvider(ClaimTableProvider):
    """Publishers that accept Google-signed identity tokens of a service account."""

    kind: str = "google"
    title: str = TITLE
    short_title: str = "Google"
    fields: tuple[FieldSpec, ...] = FIELDS
    default_issuer: str | None = GOOGLE_ISSUER

    def recognises(self, claims: Mapping[str, Any]) -> bool:
        """Google's issuer."""
        return issued_by(claims, GOOGLE_ISSUER)

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The normalized config ``{"email", "sub"}`` ("" when unset).

        Raises ``PublisherConfigError`` with every field's problem.
        """
        values, errors = read_fields(config, FIELDS, TITLE)
        if not values["email"]:
            errors["email"] = "required: the service account's email"
        elif not _EMAIL.match(values["email"]):
            errors["email"] = "not an email address"
        if values["sub"] and not _SUB.match(values["sub"]):
            errors["sub"] = "must not contain spaces (at most 255 characters)"
        raise_if(errors)
        return values

    def issuer(self, config: Mapping[str, Any]) -> str:
        """Google's issuer, always."""
        return GOOGLE_ISSUER

    def lookup_key(self, config: Mapping[str, Any]) -> str:
        """``google:<email>``, lowercase (so a case variant is found and explained)."""
        return f"google:{cfg(config, 'email').lower()}"

    def lookup_key_from_claims(self, issuer: str, claims: Mapping[str, Any]) -> str | None:
        """The lookup key for the token's ``email``; None without one."""
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            return None
        return f"google:{email.lower()}"

    def pins(
        self, claims: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """``sub``: the service account's unique id."""
        sub = claims.get("sub")
        return {"sub": sub} if isinstance(sub, str) and sub else {}

    @property
    def _checks(self) -> tuple[Check, ...]:
        return _CHECKS

    def specificity(self, config: Mapping[str, Any]) -> int:
        """One point when the subject is configured."""
        return int(bool(cfg(config, "sub")))

    def describe(self, claims: Mapping[str, Any]) -> dict[str, str | None]:
        """The service account; Google tokens say nothing about a repository or run."""
        email = claims.get("email")
        return {
            "identity": email if isinstance(email, str) else None,
            "repository": None,
            "workflow": None,
            "ref": None,
            "sha": None,
            "environment": None,
            "run_url": None,
            "commit_url": None,
            "event_name": None,
        }

    def publisher_url(self, config: Mapping[str, Any]) -> str | None:
        """None: a service account has no public page."""
        return None

    def summary(self, config: Mapping[str, Any]) -> str:
        """E.g. "Google service account publisher@p.iam.gserviceaccount.com"."""
        text = f"Google service account {cfg(config, 'email')}"
        if sub := cfg(config, "sub"):
            text += f", subject {sub}"
        return text

    def identity(self, claims: Mapping[str, Any]) -> str:
        """E.g. "Google service account 'x@p.iam.gserviceaccount.com'"."""
        return f"Google service account {claims.get('email')!r}"

    def registration_hint(self, claims: Mapping[str, Any]) -> str:
        """The publisher settings that would accept this token."""
        return (
            "to publish from it, a project owner registers a Google Cloud publisher with "
            f"email {claims.get('email')!r}"
        )


def _check_email(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    return compare_claim(claims, "email", cfg(config, "email"), TITLE, case_sensitive=True)


def _check_email_verified(
    _config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    got = claims.get("email_verified")
    # Only the JSON literal true: a string "true" is not what Google sends.
    if got is True:
        return None
    return mismatch(
        "email_verified",
        "email_verified: the token says {got!r}, {publisher} requires a verified email (true)",
        got=got,
    )


def _check_sub(
    config: Mapping[str, Any], _pinned: Mapping[str, str], claims: Mapping[str, Any]
) -> Mismatch | None:
    want = cfg(config, "sub")
    if not want:
        return None
    got = claims.get("sub")
    if got == want:
        return None
    return differs("sub", got, want, exact=False)


_CHECKS: Final[tuple[Check, ...]] = (
    check_issuer(lambda _config: GOOGLE_ISSUER),
    _check_email,
    _check_email_verified,
    _check_sub,
    check_pins(TITLE, lambda _config: ("sub",)),
)
