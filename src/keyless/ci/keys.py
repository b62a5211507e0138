"""The emulator's signing key: RSA 2048, kept on disk so an index that trusts it keeps doing so.

An index caches an issuer's JWKS by `kid`. A fresh key per run would make every rehearsal after
the first fail with an unknown `kid` until the index refetched, so the key is persisted and its
`kid` is its RFC 7638 thumbprint (the same key always has the same `kid`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyless.ci.errors import EmulatorError

KEY_FILE = "signing-key.pem"
ALGORITHM = "RS256"
KEY_BITS = 2048


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes binary values."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public key."""
    numbers = public_key.public_numbers()
    # The required members only, in lexicographic order, no whitespace.
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    """An RSA private key with its JWK `kid`, and a secret for the job request tokens."""

    private_key: rsa.RSAPrivateKey
    kid: str = field(init=False)
    _request_secret: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kid", jwk_thumbprint(self.private_key.public_key()))
        # Request tokens are MACed with a secret derived from the key, never signed with the key
        # itself, so no request token can ever pass as an ID token at an index trusting the JWKS.
        der = self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        secret = hmac.new(der, b"keyless ci-emulator request tokens v1", hashlib.sha256).digest()
        object.__setattr__(self, "_request_secret", secret)

    @classmethod
    def load_or_create(cls, folder: Path) -> SigningKey:
        """The key in `folder/signing-key.pem`, created (mode 0600) when absent.

        Raises EmulatorError if the file is not an unencrypted RSA key of at least 2048 bits;
        OSError if the folder cannot be read or written.
        """
        path = folder / KEY_FILE
        if not path.exists():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_key_file(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise EmulatorError(
                f"{path} is not an unencrypted PEM private key ({exc}); delete it to let "
                "the emulator create a new one (indexes that trusted the old key refetch the JWKS)."
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < KEY_BITS:
            raise EmulatorError(f"{path} must hold an RSA key of at least {KEY_BITS} bits.")
        return cls(key)

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, with the `kid`, `alg` and `use` verifiers look for."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "alg": ALGORITHM,
            "use": "sig",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK set the issuer publishes."""
        return {"keys": [self.public_jwk()]}

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact RS256 JWT over `claims`, with this key's `kid` in the header."""
        return jwt.encode(
            claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": "JWT"}
        )

    def seal(self, payload: dict[str, Any]) -> str:
        """An opaque bearer string carrying `payload`, which only `unseal` with this key reads.

        The issuer stays stateless: a request token names the job it was made for, so a `serve`
        process can answer request tokens that an `env` process printed.
        """
        body = b64url(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        mac = hmac.new(self._request_secret, body.encode(), hashlib.sha256).digest()
        return f"{body}.{b64url(mac)}"

    def unseal(self, token: str) -> dict[str, Any] | None:
        """The payload of a `seal`ed string, or None if it was not sealed with this key."""
        body, _, mac = token.partition(".")
        expected = b64url(hmac.new(self._request_secret, body.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac, expected):
            return None
        try:
            payload = json.loads(_b64url_decode(body))
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None


def _create_key_file(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written to a private temp file, then linked into place: two emulators starting at once
    # both end up with whichever key landed first, and nobody ever reads half a file.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # A lost race is fine: the winner's key is as good as ours.
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
