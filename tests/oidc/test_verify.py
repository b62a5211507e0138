"""JWT verification: the attack suite, and the happy paths it must not break."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyless.oidc.errors import TokenError
from keyless.oidc.keys import JWKSCache
from keyless.oidc.verify import token_replay_key, unverified_claims, verify_token
from tests.oidc.conftest import (
    AUDIENCE,
    GITHUB,
    NOW,
    FakeClock,
    FakeIssuer,
    SigningKey,
    b64url,
    raw_token,
    recorded,
    stamped,
)


def verify(token: str, keys: JWKSCache, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"issuer": GITHUB, "audience": AUDIENCE, "keys": keys, "now": NOW}
    options.update(kwargs)
    return verify_token(token, **options)


def refused(token: str, keys: JWKSCache, **kwargs: Any) -> str:
    with pytest.raises(TokenError) as caught:
        verify(token, keys, **kwargs)
    assert caught.value.code == "invalid-token"
    return caught.value.description


@pytest.fixture
def claims() -> dict[str, Any]:
    return stamped(recorded("github_push_tag"))


# --- what must pass -------------------------------------------------------------------------


def test_rs256_token_verifies_and_returns_its_claims(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    assert verify(rsa_key.sign(claims), keys) == claims


def test_es256_token_verifies(ec_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]) -> None:
    assert verify(ec_key.sign(claims), keys) == claims


def test_now_defaults_to_the_current_time(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    # The stamped token is from 2026-05-28; without `now` the real clock decides. Whatever the
    # real date, a token stamped for the real now must pass.
    import time

    fresh = stamped(claims, now=time.time())
    assert verify_token(rsa_key.sign(fresh), issuer=GITHUB, audience=AUDIENCE, keys=keys) == fresh


# --- signature and algorithm ----------------------------------------------------------------


def test_signature_by_another_key_under_the_issuers_kid_is_refused(
    rsa_key: SigningKey, other_rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    forged = SigningKey(rsa_key.kid, "RS256", other_rsa_key.private).sign(claims)
    assert refused(forged, keys) == (
        f"the token's signature does not verify with key 'rsa-2026-05' of issuer '{GITHUB}'"
    )


def test_payload_changed_after_signing_is_refused(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    head, _, signature = rsa_key.sign(claims).split(".")
    claims["repository"] = "attacker/sampleproject"
    tampered = f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"
    assert "signature does not verify" in refused(tampered, keys)


def test_alg_none_is_refused(keys: JWKSCache, claims: dict[str, Any]) -> None:
    token = raw_token({"alg": "none", "kid": "rsa-2026-05", "typ": "JWT"}, claims)
    assert refused(token, keys) == (
        "the token is not signed (alg 'none'); this index accepts only RS256 and ES256"
    )


def test_missing_alg_is_refused(keys: JWKSCache, claims: dict[str, Any]) -> None:
    token = raw_token({"kid": "rsa-2026-05"}, claims)
    assert "the token is not signed (alg None)" in refused(token, keys)


def test_hs256_signed_with_the_public_key_pem_is_refused(
    rsa_key: SigningKey, keys: JWKSCache, issuer: FakeIssuer, claims: dict[str, Any]
) -> None:
    # The classic key-confusion attack: the public key is public, so if a verifier let the
    # token choose HS256 it would check an HMAC keyed with the PEM — which anyone can make.
    pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64url(json.dumps({"alg": "HS256", "kid": rsa_key.kid, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    description = refused(f"{head}.{body}.{b64url(mac)}", keys)
    assert description == (
        "the token is signed with 'HS256', a shared-secret algorithm; this index accepts only "
        "RS256 and ES256 signatures made with the issuer's published keys"
    )
    # Refused on the header alone: the issuer's keys were never even fetched.
    assert issuer.fetched == []


@pytest.mark.parametrize("alg", ["RS512", "PS256"])
def test_other_asymmetric_algorithms_are_refused(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any], alg: str
) -> None:
    token = SigningKey(rsa_key.kid, alg, rsa_key.private).sign(claims)
    assert refused(token, keys) == (
        f"the token is signed with '{alg}'; this index accepts only RS256 and ES256"
    )


def test_header_alg_must_match_the_keys_algorithm(
    rsa_key: SigningKey, ec_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    # Signed with the EC key but pointing at the RSA key's kid.
    token = SigningKey(rsa_key.kid, "ES256", ec_key.private).sign(claims)
    assert refused(token, keys) == (
        f"the token says it is signed with ES256 but key 'rsa-2026-05' of issuer '{GITHUB}' is "
        "an RS256 key"
    )


def test_token_without_kid_is_refused(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    token = rsa_key.sign(claims, kid=None)
    assert "has no 'kid'" in refused(token, keys)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_short_rsa_keys_are_refused(keys: JWKSCache, claims: dict[str, Any]) -> None:
    # The point of the test is a weak key.
    weak = SigningKey("weak", "RS256", rsa.generate_private_key(65537, 1024))  # noqa: S505
    fetch = FakeIssuer(GITHUB, [weak])
    description = refused(weak.sign(claims), JWKSCache(fetch, clock=lambda: NOW))
    assert "cannot be verified" in description
    assert "2048" in description


# --- unknown kid ----------------------------------------------------------------------------


def test_unknown_kid_refetches_once_then_is_rate_limited(
    rsa_key: SigningKey,
    other_rsa_key: SigningKey,
    keys: JWKSCache,
    issuer: FakeIssuer,
    clock: FakeClock,
    claims: dict[str, Any],
) -> None:
    verify(rsa_key.sign(claims), keys)
    assert issuer.jwks_fetches == 1
    clock.advance(120)
    stranger = other_rsa_key.sign(stamped(claims, now=clock.now))
    description = refused(stranger, keys, now=clock.now)
    assert description.startswith(
        f"the token's signing key 'rsa-2026-06' is not among the keys published by issuer "
        f"'{GITHUB}'"
    )
    assert issuer.jwks_fetches == 2
    for _ in range(5):
        refused(stranger, keys, now=clock.now)
    assert issuer.jwks_fetches == 2
    clock.advance(60)
    refused(stranger, keys, now=clock.now)
    assert issuer.jwks_fetches == 3


def test_unknown_kid_of_a_newly_published_key_is_fetched(
    rsa_key: SigningKey,
    other_rsa_key: SigningKey,
    keys: JWKSCache,
    issuer: FakeIssuer,
    clock: FakeClock,
    claims: dict[str, Any],
) -> None:
    verify(rsa_key.sign(claims), keys)
    issuer.keys.append(other_rsa_key)  # the issuer rotates a new key in
    clock.advance(61)
    fresh = stamped(claims, now=clock.now)
    assert verify(other_rsa_key.sign(fresh), keys, now=clock.now) == fresh


# --- time claims ----------------------------------------------------------------------------


def test_expired_token_is_refused_with_the_time_it_expired(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    claims.update(iat=int(NOW) - 900, nbf=int(NOW) - 900, exp=int(NOW) - 31)
    assert refused(rsa_key.sign(claims), keys) == (
        "the token expired at 2026-05-28T20:26:09Z (it is now 2026-05-28T20:26:40Z)"
    )


def test_expiry_has_30_seconds_of_leeway(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    claims.update(iat=int(NOW) - 900, nbf=int(NOW) - 900, exp=int(NOW) - 29)
    assert verify(rsa_key.sign(claims), keys) == claims
    assert "expired" in refused(rsa_key.sign(claims), keys, leeway=10)


def test_not_yet_valid_token_is_refused(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    claims.update(nbf=int(NOW) + 120)
    assert refused(rsa_key.sign(claims), keys) == (
        "the token is not valid before 2026-05-28T20:28:40Z (it is now 2026-05-28T20:26:40Z)"
    )
    claims.update(nbf=int(NOW) + 29)
    assert verify(rsa_key.sign(claims), keys) == claims


def test_token_issued_in_the_future_is_refused(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    del claims["nbf"]  # nbf is optional; iat alone must catch it
    claims.update(iat=int(NOW) + 120, exp=int(NOW) + 600)
    assert refused(rsa_key.sign(claims), keys) == (
        "the token was issued in the future, at 2026-05-28T20:28:40Z (it is now "
        "2026-05-28T20:26:40Z; is a clock wrong?)"
    )


@pytest.mark.parametrize(
    ("claim", "text"),
    [
        ("exp", "the token has no 'exp' (expiry) claim"),
        ("iat", "the token has no 'iat' (issued-at) claim"),
        ("iss", "the token has no 'iss' (issuer) claim"),
        ("aud", "the token has no 'aud' (audience) claim"),
    ],
)
def test_required_claims(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any], claim: str, text: str
) -> None:
    del claims[claim]
    assert refused(rsa_key.sign(claims), keys) == text


@pytest.mark.parametrize("value", ["2026-06-01", float("inf"), float("nan"), True, None, 10**400])
def test_expiry_must_be_a_finite_number(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any], value: object
) -> None:
    # json.dumps writes inf as `Infinity`, which Python's json module reads back: a token
    # that never expires unless the verifier checks for it.
    claims["exp"] = value
    assert "'exp' claim is not a number of seconds" in refused(rsa_key.sign(claims), keys)


def test_every_failed_claim_is_reported_at_once(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    claims.update(aud="pypi", exp=int(NOW) - 3600)
    description = refused(rsa_key.sign(claims), keys)
    assert description.startswith("audience: the token is for 'pypi', this index expects")
    assert "; the token expired at" in description


# --- audience and issuer --------------------------------------------------------------------


def test_wrong_audience_is_refused(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    claims["aud"] = "testpypi"
    assert refused(rsa_key.sign(claims), keys) == (
        "audience: the token is for 'testpypi', this index expects 'keyless'"
    )


def test_list_audience_is_refused_even_when_it_contains_ours(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    claims["aud"] = ["keyless", "https://vault.example.com"]
    assert refused(rsa_key.sign(claims), keys) == (
        "audience: the token is for ['keyless', 'https://vault.example.com'] (a list); this "
        "index accepts only the single audience 'keyless'"
    )
    claims["aud"] = ["keyless"]
    assert "(a list)" in refused(rsa_key.sign(claims), keys)


def test_wrong_issuer_is_refused(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    # Signed by the real issuer's key, but claiming another issuer: still not acceptable.
    claims["iss"] = "https://token.actions.githubusercontent.com.evil.example"
    assert refused(rsa_key.sign(claims), keys) == (
        "issuer: the token was issued by "
        "'https://token.actions.githubusercontent.com.evil.example', this index expected "
        f"'{GITHUB}'"
    )


# --- malformed tokens -----------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b", "a.b.c.d", "e30.e30"])
def test_malformed_tokens_are_invalid_payload(keys: JWKSCache, token: str) -> None:
    with pytest.raises(TokenError) as caught:
        unverified_claims(token)
    assert caught.value.code == "invalid-payload"
    assert caught.value.description.startswith("malformed JWT")
    with pytest.raises(TokenError) as caught:
        verify(token, keys)
    assert caught.value.code == "invalid-payload"


def test_payload_must_be_a_json_object(keys: JWKSCache) -> None:
    token = f"{b64url(b'{}')}.{b64url(b'[1, 2]')}.{b64url(b'x')}"
    with pytest.raises(TokenError, match="not a JSON object") as caught:
        unverified_claims(token)
    assert caught.value.code == "invalid-payload"


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        (b'{"alg": "RS256", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", b"{}"),
        (b'{"alg": "RS256", "kid": "k"}', b"[" * 50_000 + b"]" * 50_000),
    ],
    ids=["header", "payload"],
)
def test_deeply_nested_json_is_invalid_payload(
    keys: JWKSCache, header: bytes, payload: bytes
) -> None:
    # json.loads raises RecursionError here, not ValueError: it must not escape as a crash.
    token = f"{b64url(header)}.{b64url(payload)}.{b64url(b'x')}"
    with pytest.raises(TokenError, match="malformed JWT") as caught:
        unverified_claims(token)
    assert caught.value.code == "invalid-payload"


def test_unverified_claims_reads_the_issuer_without_verifying(claims: dict[str, Any]) -> None:
    token = raw_token({"alg": "RS256", "kid": "whatever"}, claims, b"garbage")
    assert unverified_claims(token)["iss"] == GITHUB


@pytest.mark.parametrize("iss", [None, 42, ""])
def test_unverified_claims_needs_a_string_issuer(claims: dict[str, Any], iss: object) -> None:
    claims["iss"] = iss
    token = raw_token({"alg": "RS256", "kid": "k"}, claims)
    with pytest.raises(TokenError) as caught:
        unverified_claims(token)
    assert caught.value.code == "invalid-payload"
    assert caught.value.description == "malformed JWT: the token has no 'iss' (issuer) claim"


# --- replay keys ----------------------------------------------------------------------------


def test_replay_key_is_the_issuer_and_jti(rsa_key: SigningKey, claims: dict[str, Any]) -> None:
    token = rsa_key.sign(claims)
    assert token_replay_key(token, claims) == f"jti:{GITHUB}:2f6a8a7e-3c1b-4d3e-9d7a-5b9f0c1e2a34"


def _google_claims() -> dict[str, Any]:
    claims = stamped(recorded("google_service_account"))
    claims["iss"] = GITHUB  # served by this test's issuer
    return claims


def test_replay_key_without_jti_survives_padding_the_signature(
    rsa_key: SigningKey, keys: JWKSCache
) -> None:
    # Google tokens have no jti. A 256-byte signature is 342 base64url characters; PyJWT also
    # accepts it padded to 344 with '=='. Both spellings verify, so a hash over the whole token
    # would let one token be used twice.
    claims = _google_claims()
    token = rsa_key.sign(claims)
    respelled = token + "=="
    assert verify(respelled, keys) == verify(token, keys)
    assert token_replay_key(respelled, claims) == token_replay_key(token, claims)
    assert token_replay_key(token, claims).startswith("sha256:")


def test_replay_key_without_jti_survives_the_ecdsa_twin_signature(
    ec_key: SigningKey, keys: JWKSCache
) -> None:
    # ECDSA signatures come in pairs: (r, s) and (r, n - s) both verify.
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 order
    claims = _google_claims()
    token = ec_key.sign(claims)
    signed, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    twin = raw[:32] + (n - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    respelled = f"{signed}.{b64url(twin)}"
    assert respelled != token
    assert verify(respelled, keys) == verify(token, keys)
    assert token_replay_key(respelled, claims) == token_replay_key(token, claims)


def test_replay_keys_of_different_tokens_differ(rsa_key: SigningKey) -> None:
    first = stamped(recorded("google_service_account"))
    second = stamped(recorded("google_service_account"), now=NOW + 1)
    assert token_replay_key(rsa_key.sign(first), first) != token_replay_key(
        rsa_key.sign(second), second
    )


def test_a_claim_with_a_lone_surrogate_is_refused_not_stored(
    rsa_key: SigningKey, keys: JWKSCache, claims: dict[str, Any]
) -> None:
    # Signed and valid but for a JSON escape that decodes to no Unicode text: the database
    # could not store it as the token's replay key (the fuzz suite found a 500 there).
    claims["jti"] = "abc\ud800def"
    token = rsa_key.sign(claims)
    reads: list[Callable[[], dict[str, Any]]] = [
        lambda: verify(token, keys),
        lambda: unverified_claims(token),
    ]
    for read in reads:
        with pytest.raises(TokenError, match="lone surrogate") as caught:
            read()
        assert caught.value.code == "invalid-payload"
