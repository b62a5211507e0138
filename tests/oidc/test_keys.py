"""The JWKS cache: discovery, TTL, rate-limited refetching, outages, a shared store."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.oidc.errors import TokenError
from keyless.oidc.keys import JWKSCache, MemoryKeyStore
from tests.oidc.conftest import GITHUB, FakeClock, FakeIssuer, SigningKey

DISCOVERY = f"{GITHUB}/.well-known/openid-configuration"
JWKS = f"{GITHUB}/.well-known/jwks"


def refused(keys: JWKSCache, kid: str, issuer: str = GITHUB) -> str:
    with pytest.raises(TokenError) as caught:
        keys.key_for(issuer, kid)
    assert caught.value.code == "invalid-token"
    return caught.value.description


def test_keys_are_found_through_discovery(
    keys: JWKSCache, issuer: FakeIssuer, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    assert keys.key_for(GITHUB, rsa_key.kid).algorithm_name == "RS256"
    assert keys.key_for(GITHUB, ec_key.kid).algorithm_name == "ES256"
    assert issuer.fetched == [DISCOVERY, JWKS]


def test_trailing_slash_on_the_issuer_does_not_double_it(
    rsa_key: SigningKey, clock: FakeClock
) -> None:
    issuer = FakeIssuer("https://ci.example.com/", [rsa_key])
    JWKSCache(issuer, clock=clock).key_for("https://ci.example.com/", rsa_key.kid)
    assert issuer.fetched[0] == "https://ci.example.com/.well-known/openid-configuration"


def test_cached_keys_are_used_until_the_ttl(
    keys: JWKSCache, issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    keys.key_for(GITHUB, rsa_key.kid)
    clock.advance(3599)
    keys.key_for(GITHUB, rsa_key.kid)
    assert issuer.jwks_fetches == 1
    clock.advance(1)
    keys.key_for(GITHUB, rsa_key.kid)
    assert issuer.jwks_fetches == 2


def test_a_rotated_out_key_stops_being_trusted_after_the_ttl(
    keys: JWKSCache, issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    keys.key_for(GITHUB, rsa_key.kid)
    issuer.keys.remove(rsa_key)
    clock.advance(1800)
    keys.key_for(GITHUB, rsa_key.kid)  # still cached: within the TTL
    clock.advance(1800)
    assert "'rsa-2026-05' is not among the keys published by issuer" in refused(keys, rsa_key.kid)


def test_an_issuer_outage_keeps_the_last_keys_in_use(
    keys: JWKSCache, issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    keys.key_for(GITHUB, rsa_key.kid)
    issuer.down = True
    clock.advance(7200)  # well past the TTL
    assert keys.key_for(GITHUB, rsa_key.kid).key_id == rsa_key.kid
    attempts = len(issuer.fetched)
    assert attempts == 3  # discovery, JWKS, and the failed refresh
    clock.advance(10)
    keys.key_for(GITHUB, rsa_key.kid)
    assert len(issuer.fetched) == attempts  # a down issuer is retried once a minute, not per token
    clock.advance(60)
    keys.key_for(GITHUB, rsa_key.kid)
    assert len(issuer.fetched) == attempts + 1


def test_an_unknown_kid_during_an_outage_says_the_issuer_is_unreachable(
    keys: JWKSCache, issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    keys.key_for(GITHUB, rsa_key.kid)
    issuer.down = True
    clock.advance(61)
    assert refused(keys, "brand-new") == (
        f"the token's signing key 'brand-new' is not among the keys last fetched from issuer "
        f"'{GITHUB}', and they could not be refreshed: fetching {DISCOVERY} failed: "
        f"connection refused: {DISCOVERY}"
    )


def test_no_keys_at_all_when_the_issuer_was_never_reachable(
    keys: JWKSCache, issuer: FakeIssuer
) -> None:
    issuer.down = True
    assert refused(keys, "rsa-2026-05") == (
        f"no signing keys could be fetched from issuer '{GITHUB}': fetching {DISCOVERY} "
        f"failed: connection refused: {DISCOVERY} (retried at most once every 60 s)"
    )


def test_unknown_kid_refetch_is_rate_limited(
    keys: JWKSCache, issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    keys.key_for(GITHUB, rsa_key.kid)
    clock.advance(30)
    assert refused(keys, "made-up-1") == (
        f"the token's signing key 'made-up-1' is not among the keys published by issuer "
        f"'{GITHUB}' (fetched 30 s ago; refetched at most once every 60 s)"
    )
    assert issuer.jwks_fetches == 1
    clock.advance(30)
    refused(keys, "made-up-2")
    assert issuer.jwks_fetches == 2
    for n in range(10):
        refused(keys, f"made-up-{n}")
    assert issuer.jwks_fetches == 2


def test_a_refused_kid_reads_the_shared_store_once(
    issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    # The index's store is its database: a stream of made-up kids costs one read each.
    loads: list[str] = []

    class CountingStore(MemoryKeyStore):
        def load(self, issuer: str) -> tuple[dict[str, Any], float] | None:
            loads.append(issuer)
            return super().load(issuer)

    keys = JWKSCache(issuer, CountingStore(), clock=clock)
    keys.key_for(GITHUB, rsa_key.kid)
    clock.advance(30)
    loads.clear()
    assert "(fetched 30 s ago;" in refused(keys, "made-up")
    assert loads == [GITHUB]


def test_the_refetch_interval_is_configurable(
    issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    keys = JWKSCache(issuer, clock=clock, refetch_interval=300)
    keys.key_for(GITHUB, rsa_key.kid)
    clock.advance(200)
    refused(keys, "made-up")
    assert issuer.jwks_fetches == 1


def test_workers_sharing_a_store_share_keys_and_the_rate_limit(
    issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    store = MemoryKeyStore()
    first = JWKSCache(issuer, store, clock=clock)
    second = JWKSCache(issuer, store, clock=clock)
    first.key_for(GITHUB, rsa_key.kid)
    second.key_for(GITHUB, rsa_key.kid)
    assert issuer.jwks_fetches == 1
    clock.advance(5)
    refused(second, "made-up")  # the first worker fetched 5 s ago: no refetch
    assert issuer.jwks_fetches == 1
    assert store.load(GITHUB) == ({"keys": [key.jwk() for key in issuer.keys]}, clock.now - 5)


def test_an_empty_key_set_is_not_cached(
    keys: JWKSCache, issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    keys.key_for(GITHUB, rsa_key.kid)
    published = issuer.keys
    issuer.keys = []
    clock.advance(3600)
    keys.key_for(GITHUB, rsa_key.kid)  # the old keys stay
    issuer.keys = published
    clock.advance(60)
    keys.key_for(GITHUB, rsa_key.kid)
    assert issuer.jwks_fetches == 3


@pytest.mark.parametrize(
    ("document", "problem"),
    [({"issuer": GITHUB}, "names no jwks_uri"), ([1, 2], "did not return a JSON object")],
)
def test_a_broken_discovery_document_is_reported(
    clock: FakeClock, document: Any, problem: str
) -> None:
    keys = JWKSCache(lambda _url: document, clock=clock)
    assert problem in refused(keys, "k")


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "bad"}, "has key type 'oct'"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "bad"}, "has key type 'OKP'"),
        ({"use": "enc"}, "is not a signing key (use 'enc')"),
        ({"alg": "RS512"}, "is for RS512; only RS256 and ES256 are accepted"),
        ({"alg": "HS256"}, "is for HS256; only RS256 and ES256 are accepted"),
        ({"alg": ["RS256"]}, "is for ['RS256']; only RS256 and ES256 are accepted"),
        ({"n": "!!"}, "cannot be used"),
    ],
)
def test_unusable_published_keys_are_refused(
    rsa_key: SigningKey, clock: FakeClock, extra: dict[str, Any], problem: str
) -> None:
    # A symmetric key in a public JWKS would let anyone sign tokens; others are simply unusable.
    issuer = FakeIssuer(GITHUB, [], extra_jwks=[{**rsa_key.jwk(), "kid": "bad", **extra}])
    assert problem in refused(JWKSCache(issuer, clock=clock), "bad")


def test_a_key_whose_curve_implies_another_algorithm_is_refused(clock: FakeClock) -> None:
    p384 = SigningKey("p384", "ES384", ec.generate_private_key(ec.SECP384R1())).jwk()
    del p384["alg"]  # PyJWT then infers ES384 from the curve
    issuer = FakeIssuer(GITHUB, [], extra_jwks=[p384])
    assert "is for ES384; only RS256 and ES256 are accepted" in refused(
        JWKSCache(issuer, clock=clock), "p384"
    )


def test_junk_in_the_shared_store_is_survived(
    issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    store = MemoryKeyStore()
    store.save(GITHUB, {"keys": "not a list"}, clock.now)
    keys = JWKSCache(issuer, store, clock=clock)
    refused(keys, rsa_key.kid)  # fresh junk: nothing usable, refetch rate-limited
    clock.advance(60)
    assert keys.key_for(GITHUB, rsa_key.kid).key_id == rsa_key.kid


def test_a_clock_that_steps_back_does_not_freeze_refetching(
    keys: JWKSCache, issuer: FakeIssuer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    keys.key_for(GITHUB, rsa_key.kid)
    clock.advance(-3600)
    refused(keys, "made-up")
    assert issuer.jwks_fetches == 2


@pytest.mark.parametrize(("ttl", "interval"), [(0, 60), (-1, 60), (3600, -1)])
def test_nonsense_settings_are_refused(issuer: FakeIssuer, ttl: float, interval: float) -> None:
    with pytest.raises(ValueError, match="must"):
        JWKSCache(issuer, ttl=ttl, refetch_interval=interval)
