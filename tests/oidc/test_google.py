"""Google Cloud publishers: a service account's identity token."""

from __future__ import annotations

from typing import Any

import pytest

from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import PROVIDERS, Mismatch
from tests.oidc.conftest import recorded

google = PROVIDERS["google"]
EMAIL = "publisher@fastwidget-ci.iam.gserviceaccount.com"
SUB = "111794256740512340321"


def check(
    claims: dict[str, Any], *, pinned: dict[str, str] | None = None, **config: str
) -> list[Mismatch]:
    return google.check(google.validate_config({"email": EMAIL, **config}), pinned or {}, claims)


def test_service_account_token_matches() -> None:
    claims = recorded("google_service_account")
    assert check(claims) == []
    assert check(claims, sub=SUB) == []


def test_email_is_exact() -> None:
    claims = recorded("google_service_account")
    assert [m.message for m in check(claims, email=EMAIL.upper())] == [
        f"email: the token says '{EMAIL}', the publisher expects '{EMAIL.upper()}' (names "
        "differ only in case; this claim is compared exactly)"
    ]
    assert [
        m.claim for m in check(claims, email="other@fastwidget-ci.iam.gserviceaccount.com")
    ] == ["email"]


@pytest.mark.parametrize("value", [False, "true", None])
def test_email_must_be_verified(value: object) -> None:
    claims = recorded("google_service_account")
    claims["email_verified"] = value
    found = check(claims)
    assert [m.claim for m in found] == ["email_verified"]
    assert found[0].message == (
        f"email_verified: the token says {value!r}, the publisher requires a verified email (true)"
    )


def test_configured_sub_is_exact() -> None:
    assert [m.claim for m in check(recorded("google_service_account"), sub="42")] == ["sub"]


def test_sub_is_pinned_on_first_use() -> None:
    # A deleted service account re-created with the same email gets a new unique id.
    claims = recorded("google_service_account")
    assert google.pins(claims) == {"sub": SUB}
    assert check(claims, pinned={"sub": SUB}) == []
    claims["sub"] = "999"
    assert [m.claim for m in check(claims, pinned={"sub": SUB})] == ["sub"]


def test_only_googles_issuer_is_accepted() -> None:
    claims = recorded("google_service_account")
    claims["iss"] = "accounts.google.com.evil.example"
    assert [m.claim for m in check(claims)] == ["iss"]


def test_lookup_describe_summary() -> None:
    cfg = google.validate_config({"email": EMAIL, "sub": SUB})
    claims = recorded("google_service_account")
    assert google.lookup_key(cfg) == f"google:{EMAIL}"
    assert google.lookup_key_from_claims(google.issuer(cfg), claims) == f"google:{EMAIL}"
    assert google.issuer(cfg) == "https://accounts.google.com"
    assert google.describe(claims)["identity"] == EMAIL
    assert google.describe(claims)["commit_url"] is None
    assert google.publisher_url(cfg) is None
    assert google.summary(cfg) == f"Google service account {EMAIL}, subject {SUB}"
    assert google.specificity(cfg) == 1


def test_validate_config() -> None:
    with pytest.raises(PublisherConfigError) as caught:
        google.validate_config({"email": "not an email", "sub": "a b"})
    assert caught.value.errors == {
        "email": "not an email address",
        "sub": "must not contain spaces (at most 255 characters)",
    }
    assert google.validate_config({"email": f" {EMAIL} "}) == {"email": EMAIL, "sub": ""}
