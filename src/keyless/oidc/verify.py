"""JWT verification for Trusted Publishing: signature, algorithm, time and audience checks.

PyJWT verifies the signature only; the claim checks are done here so that every refusal can
say exactly what was wrong ("the token expired at …", "audience: the token is for 'x' …") and
so that time is a parameter, not a hidden call to the clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Final

import jwt

from keyless.oidc.errors import TokenError
from keyless.oidc.keys import ALLOWED_ALGORITHMS, JWKSCache

DEFAULT_LEEWAY: Final = 30.0

_ACCEPTED = " and ".join(ALLOWED_ALGORITHMS)


def unverified_claims(token: str) -> dict[str, Any]:
    """The token's claims, read WITHOUT verifying anything — only to find its issuer.

    Raises ``TokenError("invalid-payload", ...)`` when ``token`` is not a compact JWT with a JSON
    object payload, or has no string ``iss`` claim.
    """
    claims = _json_object(_unverified_parts(token)["payload"])
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss:
        raise TokenError("invalid-payload", "malformed JWT: the token has no 'iss' (issuer) claim")
    return claims


def verify_token(
    token: str,
    *,
    issuer: str,
    audience: str,
    keys: JWKSCache,
    leeway: float = DEFAULT_LEEWAY,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify ``token`` as issued by ``issuer`` for ``audience``; return its claims.

    Checks: algorithm RS256 or ES256 (never ``none`` or HMAC); a ``kid`` header naming a key the
    issuer publishes; the signature; ``iss`` equal to ``issuer``; ``aud`` a single string equal
    to ``audience``; ``exp`` and ``iat`` present and ``nbf`` when present, all with ``leeway``
    seconds of tolerance at time ``now`` (default: the current time).

    Raises ``TokenError("invalid-payload", ...)`` when the token is not a JWT at all, and
    ``TokenError("invalid-token", ...)`` naming every failed check otherwise (key lookup
    failures come from ``keys.key_for`` with the same code).
    """
    header = _unverified_parts(token)["header"]
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise TokenError("invalid-token", _refused_algorithm(alg))
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError(
            "invalid-token",
            "the token's header has no 'kid' (key id), so the issuer's signing key cannot be "
            "chosen",
        )

    key = keys.key_for(issuer, kid)
    # PyJWT refuses this too, but its message does not tell the user which key was meant.
    if key.algorithm_name != alg:
        raise TokenError(
            "invalid-token",
            f"the token says it is signed with {alg} but key {kid!r} of issuer {issuer!r} is "
            f"an {key.algorithm_name} key",
        )
    try:
        decoded = jwt.PyJWS().decode_complete(
            token,
            key=key,
            algorithms=[alg],
            options={"verify_signature": True, "enforce_minimum_key_length": True},
        )
    except jwt.InvalidSignatureError as exc:
        raise TokenError(
            "invalid-token",
            f"the token's signature does not verify with key {kid!r} of issuer {issuer!r}",
        ) from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid-token", f"the token cannot be verified: {exc}") from exc

    claims = _json_object(decoded["payload"])
    at = time.time() if now is None else now
    problems = [
        *_check_issuer(claims, issuer),
        *_check_audience(claims, audience),
        *_check_times(claims, at, leeway),
    ]
    if problems:
        raise TokenError("invalid-token", "; ".join(problems))
    return claims


def token_replay_key(token: str, claims: Mapping[str, Any]) -> str:
    """The key under which the index records a used token, to refuse its second use.

    ``jti:{iss}:{jti}`` when the token has a ``jti``; otherwise (Google) ``sha256:`` + the hex
    digest of the token's signed part (header and payload). The signature segment is left out
    on purpose: its base64 padding bits and an ECDSA signature's ``s`` can be altered without
    invalidating it, so hashing the whole token would let one token be replayed in many
    spellings.
    """
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return f"jti:{claims.get('iss')}:{jti}"
    signed_part = token.rsplit(".", 1)[0]
    return "sha256:" + hashlib.sha256(signed_part.encode()).hexdigest()


def _unverified_parts(token: object) -> dict[str, Any]:
    """PyJWT's ``{"header", "payload", "signature"}`` of ``token``, nothing verified.

    Raises ``TokenError("invalid-payload", ...)`` when ``token`` is not a compact JWT.
    """
    if not isinstance(token, str):
        raise TokenError("invalid-payload", "malformed JWT: the token must be a string")
    try:
        return jwt.PyJWS().decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenError("invalid-payload", f"malformed JWT: {exc}") from exc


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise TokenError("invalid-payload", f"malformed JWT: payload is not JSON ({exc})") from exc
    except RecursionError:
        # json.loads gives up on deeply nested arrays this way, not with a ValueError.
        raise TokenError(
            "invalid-payload", "malformed JWT: the payload is nested too deeply"
        ) from None
    if not isinstance(claims, dict):
        raise TokenError("invalid-payload", "malformed JWT: payload is not a JSON object")
    try:
        # JSON's \uD800-style escapes decode to lone surrogates, which no UTF-8 text (and so
        # no database column, log line or page) can hold: refused here, where claims are made.
        json.dumps(claims, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise TokenError(
            "invalid-payload", "malformed JWT: a claim holds a lone surrogate (not Unicode text)"
        ) from None
    return claims


def _refused_algorithm(alg: object) -> str:
    if alg is None or alg == "none":
        return f"the token is not signed (alg {alg!r}); this index accepts only {_ACCEPTED}"
    if isinstance(alg, str) and alg.upper().startswith("HS"):
        return (
            f"the token is signed with {alg!r}, a shared-secret algorithm; this index accepts "
            f"only {_ACCEPTED} signatures made with the issuer's published keys"
        )
    return f"the token is signed with {alg!r}; this index accepts only {_ACCEPTED}"


def _check_issuer(claims: Mapping[str, Any], issuer: str) -> list[str]:
    iss = claims.get("iss")
    if iss is None:
        return ["the token has no 'iss' (issuer) claim"]
    if iss != issuer:
        return [f"issuer: the token was issued by {iss!r}, this index expected {issuer!r}"]
    return []


def _check_audience(claims: Mapping[str, Any], audience: str) -> list[str]:
    aud = claims.get("aud")
    if aud is None:
        return ["the token has no 'aud' (audience) claim"]
    if isinstance(aud, list):
        # Refused even when the list contains our audience: a token meant for several services
        # could be replayed by any of them against this index.
        return [
            f"audience: the token is for {aud!r} (a list); this index accepts only the single "
            f"audience {audience!r}"
        ]
    if aud != audience:
        return [f"audience: the token is for {aud!r}, this index expects {audience!r}"]
    return []


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> list[str]:
    problems: list[str] = []
    exp = _timestamp(claims, "exp", "expiry", problems)
    iat = _timestamp(claims, "iat", "issued-at", problems)
    nbf = _timestamp(claims, "nbf", "not-before", problems) if "nbf" in claims else None
    if exp is not None and now >= exp + leeway:
        problems.append(f"the token expired at {_utc(exp)} (it is now {_utc(now)})")
    if iat is not None and iat > now + leeway:
        problems.append(
            f"the token was issued in the future, at {_utc(iat)} (it is now {_utc(now)}; is a "
            "clock wrong?)"
        )
    if nbf is not None and nbf > now + leeway:
        problems.append(f"the token is not valid before {_utc(nbf)} (it is now {_utc(now)})")
    return problems


def _timestamp(
    claims: Mapping[str, Any], name: str, what: str, problems: list[str]
) -> float | None:
    if name not in claims:
        problems.append(f"the token has no {name!r} ({what}) claim")
        return None
    value = claims[name]
    # bool is an int in Python; JSON's Infinity/NaN parse as floats and would never expire;
    # an integer too large for a float (10**400) is no time either.
    try:
        seconds = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds):
        problems.append(f"the token's {name!r} claim is not a number of seconds: {value!r}")
        return None
    return seconds


def _utc(timestamp: float) -> str:
    try:
        moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp:g} (unix time)"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
