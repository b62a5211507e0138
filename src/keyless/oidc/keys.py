"""Issuers' signing keys: OIDC discovery, a JWKS cache with a TTL, rate-limited refetching.

PyPI caches an issuer's keys forever and refetches only when a token names an unknown ``kid``.
keyless keeps that refetch rule and adds a TTL, so a key the issuer has rotated out stops being
trusted within ``ttl`` seconds. The cache lives in a ``KeyStore`` so that every worker of the
index sees the same keys (and the same "fetched at" time, which also rate-limits refetches
across workers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import jwt

from keyless.oidc.errors import TokenError

# The only signature algorithms accepted (ARCHITECTURE.md, "Token verification"; tested in
# tests/oidc/test_verify.py). Everything else — "none", the HMAC family, RSA-PSS, other
# curves — is refused before any key is touched.
ALLOWED_ALGORITHMS: Final[tuple[str, ...]] = ("RS256", "ES256")

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"


class KeyStore(Protocol):
    """Shared storage for fetched JWKS documents, one per issuer.

    The index implements it in its database so all workers share one cache; ``MemoryKeyStore``
    serves tests and single-process use.
    """

    def load(self, issuer: str) -> tuple[dict[str, Any], float] | None:
        """The last JWKS document saved for ``issuer`` and when it was fetched (unix time)."""
        ...

    def save(self, issuer: str, jwks: dict[str, Any], fetched_at: float) -> None:
        """Replace the document kept for ``issuer``."""
        ...


class MemoryKeyStore:
    """A ``KeyStore`` in a dict: for tests and a single process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[dict[str, Any], float]] = {}

    def load(self, issuer: str) -> tuple[dict[str, Any], float] | None:
        """The last document saved for ``issuer``, or None."""
        return self._entries.get(issuer)

    def save(self, issuer: str, jwks: dict[str, Any], fetched_at: float) -> None:
        """Keep ``jwks`` for ``issuer``, replacing what was there."""
        self._entries[issuer] = (jwks, fetched_at)


class _FetchFailed(Exception):
    """The issuer's discovery document or JWKS could not be had (message says why)."""


class JWKSCache:
    """Signing keys per issuer, fetched through OIDC discovery and cached.

    ``fetch_json(url)`` returns the decoded JSON object at ``url`` and raises (anything) when the
    URL cannot be fetched; it is the only way this class reaches the network. ``clock`` returns
    unix time. Rules:

    - keys younger than ``ttl`` seconds are used without asking the issuer;
    - older keys, or a ``kid`` the cached keys do not have, trigger a refetch — at most one per
      issuer per ``refetch_interval`` seconds, counting fetches by any worker sharing the store,
      so a stream of tokens with made-up ``kid``s cannot make the index hammer the issuer;
    - when a refetch fails the last good keys stay in use (an issuer outage must not stop
      publishing from a key that was valid an hour ago).
    """

    def __init__(
        self,
        fetch_json: Callable[[str], dict[str, Any]],
        store: KeyStore | None = None,
        *,
        ttl: float = 3600,
        refetch_interval: float = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Raises ``ValueError`` when ``ttl`` is not positive or ``refetch_interval`` negative."""
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        if refetch_interval < 0:
            raise ValueError(f"refetch_interval must not be negative, not {refetch_interval!r}")
        self._fetch_json = fetch_json
        self._store: KeyStore = store if store is not None else MemoryKeyStore()
        self._ttl = ttl
        self._refetch_interval = refetch_interval
        self._clock = clock
        # Failed attempts are not in the store (nothing new to save), so they are remembered
        # here: an issuer that is down is retried once per interval per worker, not per token.
        self._last_attempt: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        # One lock for the cache: concurrent requests for the same unknown kid then cause one
        # fetch, not one each.
        self._lock = threading.Lock()

    def key_for(self, issuer: str, kid: str) -> jwt.PyJWK:
        """The public key ``kid`` of ``issuer``, fetching the issuer's keys if needed.

        Raises ``TokenError("invalid-token", ...)`` when the issuer does not publish ``kid``
        (naming the kid and the issuer), when no keys can be had for the issuer, or when the
        published key is not an RS256/ES256 signing key.
        """
        with self._lock:
            now = self._clock()
            cached = self._store.load(issuer)
            jwks: Mapping[str, Any] | None = cached[0] if cached is not None else None
            fetched_at = cached[1] if cached is not None else None
            fresh = fetched_at is not None and now - fetched_at < self._ttl

            found = _find_key(jwks, kid) if fresh else None
            if found is None and self._may_fetch(issuer, now, fetched_at):
                self._last_attempt[issuer] = now
                try:
                    new = self._download(issuer)
                except _FetchFailed as exc:
                    # Keep the last good keys, even past their TTL: see the class docstring.
                    self._last_error[issuer] = str(exc)
                else:
                    self._store.save(issuer, new, now)
                    self._last_error.pop(issuer, None)
                    jwks, fetched_at = new, now
            if found is None and jwks is not None:
                found = _find_key(jwks, kid)
            if found is None:
                raise TokenError(
                    "invalid-token", self._why_missing(issuer, kid, jwks, fetched_at, now)
                )
            return _to_pyjwk(issuer, kid, found)

    def _may_fetch(self, issuer: str, now: float, fetched_at: float | None) -> bool:
        last = max(self._last_attempt.get(issuer, float("-inf")), fetched_at or float("-inf"))
        # A clock that stepped backwards must not freeze refetching until it catches up.
        return now < last or now - last >= self._refetch_interval

    def _download(self, issuer: str) -> dict[str, Any]:
        discovery_url = issuer.rstrip("/") + DISCOVERY_PATH
        discovery = self._get(discovery_url)
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise _FetchFailed(f"{discovery_url} names no jwks_uri")
        jwks = self._get(jwks_uri)
        keys = jwks.get("keys")
        # An empty key set is more likely a transient fault than a real rotation to nothing;
        # caching it would refuse every token until the TTL runs out.
        if not isinstance(keys, list) or not any(isinstance(key, dict) for key in keys):
            raise _FetchFailed(f"{jwks_uri} lists no keys")
        return {"keys": [key for key in keys if isinstance(key, dict)]}

    def _get(self, url: str) -> Mapping[str, Any]:
        try:
            document = self._fetch_json(url)
        # fetch_json is the caller's HTTP client: whatever it raises means "issuer unreachable".
        except Exception as exc:
            raise _FetchFailed(f"fetching {url} failed: {exc}") from exc
        if not isinstance(document, Mapping):
            raise _FetchFailed(f"{url} did not return a JSON object")
        return document

    def _why_missing(
        self,
        issuer: str,
        kid: str,
        jwks: Mapping[str, Any] | None,
        fetched_at: float | None,
        now: float,
    ) -> str:
        error = self._last_error.get(issuer)
        if jwks is None:
            detail = f": {error}" if error else ""
            return (
                f"no signing keys could be fetched from issuer {issuer!r}{detail} "
                f"(retried at most once every {self._refetch_interval:g} s)"
            )
        if error is not None:
            return (
                f"the token's signing key {kid!r} is not among the keys last fetched from "
                f"issuer {issuer!r}, and they could not be refreshed: {error}"
            )
        age = now - fetched_at if fetched_at is not None else 0.0
        return (
            f"the token's signing key {kid!r} is not among the keys published by issuer "
            f"{issuer!r} (fetched {max(age, 0.0):.0f} s ago; refetched at most once every "
            f"{self._refetch_interval:g} s)"
        )


def _find_key(jwks: Mapping[str, Any] | None, kid: str) -> Mapping[str, Any] | None:
    # The store may hand back anything the database held; tolerate junk rather than crash.
    if not isinstance(jwks, Mapping):
        return None
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return None
    for key in keys:
        if isinstance(key, Mapping) and key.get("kid") == kid:
            return key
    return None


def _to_pyjwk(issuer: str, kid: str, data: Mapping[str, Any]) -> jwt.PyJWK:
    where = f"signing key {kid!r} of issuer {issuer!r}"
    use = data.get("use")
    if use is not None and use != "sig":
        raise TokenError("invalid-token", f"the {where} is not a signing key (use {use!r})")
    # Refuse symmetric ("oct") keys outright: a JWKS is public, so an HMAC key in it would let
    # anyone mint tokens.
    if data.get("kty") not in ("RSA", "EC"):
        raise TokenError(
            "invalid-token",
            f"the {where} has key type {data.get('kty')!r}; only RSA and EC keys are accepted",
        )
    # A declared alg is checked before PyJWT sees it: PyJWT looks it up in a dict, so a
    # non-string one (a list) would crash it. An alg implied by the key (EC P-384) is checked after.
    declared = data.get("alg")
    if declared is not None and declared not in ALLOWED_ALGORITHMS:
        raise TokenError("invalid-token", _not_accepted(where, declared))
    try:
        key = jwt.PyJWK(dict(data))
    except jwt.PyJWTError as exc:
        raise TokenError("invalid-token", f"the {where} cannot be used: {exc}") from exc
    if key.algorithm_name not in ALLOWED_ALGORITHMS:
        raise TokenError("invalid-token", _not_accepted(where, key.algorithm_name))
    return key


def _not_accepted(where: str, alg: object) -> str:
    return f"the {where} is for {alg}; only {' and '.join(ALLOWED_ALGORITHMS)} are accepted"
