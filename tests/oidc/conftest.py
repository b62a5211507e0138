"""Test kit for keyless.oidc: real signing keys, a fake issuer, a fake clock, recorded claims.

Tokens are signed for real (RSA and EC keys from ``cryptography``); the issuer's discovery
document and JWKS are served from memory by ``FakeIssuer``, so nothing touches the network.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from keyless.oidc.keys import JWKSCache

CLAIMS_DIR = Path(__file__).parent / "claims"
GITHUB = "https://token.actions.githubusercontent.com"
# 2026-05-28T20:26:40Z: "now" for every test, far from the recorded tokens' own timestamps.
NOW = 1_780_000_000.0
AUDIENCE = "keyless"


@cache
def _recorded(name: str) -> str:
    return (CLAIMS_DIR / f"{name}.json").read_text()


def recorded(name: str) -> dict[str, Any]:
    """A fresh copy of the recorded claim set ``claims/<name>.json``."""
    claims: dict[str, Any] = json.loads(_recorded(name))
    return claims


def stamped(claims: Mapping[str, Any], *, now: float = NOW, aud: str = AUDIENCE) -> dict[str, Any]:
    """``claims`` re-timed to ``now`` the way GitHub times tokens, for ``aud``."""
    fresh = copy.deepcopy(dict(claims))
    fresh.update(iat=int(now), nbf=int(now) - 300, exp=int(now) + 300, aud=aud)
    return fresh


def b64url(data: bytes) -> str:
    """Unpadded base64url, as in JWTs."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Mapping[str, Any], payload: Mapping[str, Any], signature: bytes = b"") -> str:
    """A compact JWT assembled by hand (for tokens PyJWT refuses to make)."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(payload).encode())
    return f"{head}.{body}.{b64url(signature)}"


@dataclass
class SigningKey:
    """A private key of a fake issuer, with its public JWK."""

    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        maker = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        data: dict[str, Any] = maker.to_jwk(public, as_dict=True)
        data.update(kid=self.kid, use="sig", alg=self.alg)
        return data

    def sign(self, claims: Mapping[str, Any], **headers: Any) -> str:
        header = {"kid": self.kid, "typ": "JWT", **headers}
        if header["kid"] is None:
            del header["kid"]
        return jwt.encode(dict(claims), self.private, algorithm=self.alg, headers=header)


@cache
def _rsa(bits: int, slot: int) -> rsa.RSAPrivateKey:
    # Key generation is the slowest thing here; one key per (size, slot) per test session.
    del slot
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture
def rsa_key() -> SigningKey:
    return SigningKey("rsa-2026-05", "RS256", _rsa(2048, 1))


@pytest.fixture
def other_rsa_key() -> SigningKey:
    """Another RSA key — an attacker's, or the issuer's next one."""
    return SigningKey("rsa-2026-06", "RS256", _rsa(2048, 2))


@pytest.fixture
def ec_key() -> SigningKey:
    return SigningKey("ec-2026-05", "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class FakeClock:
    """A clock tests move by hand."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeIssuer:
    """An OIDC issuer's two documents, served from memory; ``down`` makes every fetch fail."""

    url: str
    keys: list[SigningKey]
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    fetched: list[str] = field(default_factory=list)

    @property
    def jwks_uri(self) -> str:
        return self.url.rstrip("/") + "/.well-known/jwks"

    def __call__(self, url: str) -> dict[str, Any]:
        self.fetched.append(url)
        if self.down:
            raise ConnectionError(f"connection refused: {url}")
        if url == self.url.rstrip("/") + "/.well-known/openid-configuration":
            return {"issuer": self.url, "jwks_uri": self.jwks_uri}
        if url == self.jwks_uri:
            return {"keys": [key.jwk() for key in self.keys] + self.extra_jwks}
        raise LookupError(f"404 Not Found: {url}")

    @property
    def jwks_fetches(self) -> int:
        return self.fetched.count(self.jwks_uri)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(rsa_key: SigningKey, ec_key: SigningKey) -> FakeIssuer:
    return FakeIssuer(GITHUB, [rsa_key, ec_key])


@pytest.fixture
def keys(issuer: FakeIssuer, clock: FakeClock) -> JWKSCache:
    return JWKSCache(issuer, clock=clock)
