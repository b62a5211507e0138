"""The emulator's issuer over real HTTP: discovery, JWKS, the GitHub token endpoint, keys."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from keyless.ci import Emulator, EmulatorError, JobClaims
from keyless.ci.keys import KEY_FILE, b64url, jwk_thumbprint

from .conftest import unverified

JOB = JobClaims(repo="octo-org/hello-world", environment="pypi", ref="refs/tags/v1.0.0")


def verify_like_an_index(token: str, issuer: str, audience: str) -> dict[str, Any]:
    """Verify as a relying party does: discovery -> jwks_uri -> key by kid -> RS256 checks."""
    discovery = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == issuer
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    key = jwt.PyJWKClient(discovery["jwks_uri"], cache_jwk_set=False).get_signing_key_from_jwt(
        token
    )
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["iss", "aud", "exp", "iat", "nbf", "jti", "sub"]},
    )
    return claims


def request_env(ci: Emulator, job: JobClaims = JOB) -> tuple[str, str]:
    env = ci.environment(job, base={})
    return env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]


def test_token_verifies_through_discovery_and_jwks(emulator: Emulator) -> None:
    claims = verify_like_an_index(emulator.token("keyless", JOB), emulator.issuer, "keyless")
    assert claims["repository"] == "octo-org/hello-world"
    assert claims["iss"] == emulator.issuer


def test_jwks_advertises_kid_alg_and_use(emulator: Emulator) -> None:
    jwks = httpx.get(f"{emulator.issuer}/.well-known/jwks").json()
    [key] = jwks["keys"]
    assert key["kid"] == emulator.key.kid
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    header = jwt.get_unverified_header(emulator.token("keyless", JOB))
    assert (header["alg"], header["kid"]) == ("RS256", emulator.key.kid)


def test_token_endpoint_answers_like_github(emulator: Emulator) -> None:
    url, request_token = request_env(emulator)
    assert url == f"{emulator.issuer}/_apis/token?api-version=2.0"
    response = httpx.get(
        f"{url}&audience=keyless", headers={"Authorization": f"Bearer {request_token}"}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["count"] == 1
    claims = verify_like_an_index(body["value"], emulator.issuer, "keyless")
    assert claims["sub"] == "repo:octo-org/hello-world:environment:pypi"


def test_without_audience_github_default_is_the_owner_url(emulator: Emulator) -> None:
    url, request_token = request_env(emulator)
    body = httpx.get(url, headers={"Authorization": f"bearer {request_token}"}).json()
    assert unverified(body["value"])["aud"] == "https://github.com/octo-org"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", "Basic abc", "Bearer a.b"],
)
def test_token_endpoint_requires_the_request_token(
    emulator: Emulator, authorization: str | None
) -> None:
    url, _ = request_env(emulator)
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = httpx.get(f"{url}&audience=keyless", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "value" not in response.json()


def test_request_token_of_another_issuer_key_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    url, _ = request_env(emulator)
    with Emulator(tmp_path / "other-keys") as other:
        _, foreign = request_env(other)
    response = httpx.get(f"{url}&audience=keyless", headers={"Authorization": f"Bearer {foreign}"})
    assert response.status_code == 401


def test_expired_request_token_is_refused(emulator: Emulator) -> None:
    url, _ = request_env(emulator)
    stale = emulator.key.seal({"v": 1, "exp": int(time.time()) - 1, "job": JOB.to_json()})
    response = httpx.get(f"{url}&audience=keyless", headers={"Authorization": f"Bearer {stale}"})
    assert response.status_code == 401


def test_only_get_and_known_paths(emulator: Emulator) -> None:
    url, request_token = request_env(emulator)
    posted = httpx.post(
        f"{url}&audience=keyless", headers={"Authorization": f"Bearer {request_token}"}
    )
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET"
    assert httpx.get(f"{emulator.issuer}/nothing").status_code == 404


def test_keys_persist_across_emulators(keys_dir: Path) -> None:
    with Emulator(keys_dir) as first:
        token = first.token("keyless", JOB)
        kid = first.key.kid
    assert stat.S_IMODE((keys_dir / KEY_FILE).stat().st_mode) == 0o600
    with Emulator(keys_dir) as second:
        assert second.key.kid == kid
        # A token from the first run still verifies against the second run's JWKS (the
        # issuer URL differs with an ephemeral port, so only the signature is checked here).
        jwk = jwt.PyJWKClient(f"{second.issuer}/.well-known/jwks").get_signing_key_from_jwt(token)
        jwt.decode(token, jwk.key, algorithms=["RS256"], options={"verify_aud": False})


def test_fixed_port_gives_a_stable_issuer_url_before_start(keys_dir: Path) -> None:
    with Emulator(keys_dir) as probe:
        port = int(probe.issuer.rsplit(":", 1)[1])
    ci = Emulator(keys_dir, port=port)
    assert ci.issuer == f"http://127.0.0.1:{port}"
    with ci:
        assert ci.issuer == f"http://127.0.0.1:{port}"
        # A second issuer on the same port cannot start, and says so.
        with pytest.raises(EmulatorError, match="cannot listen"):
            Emulator(keys_dir, port=port).start()
    assert not ci.running


def test_ephemeral_issuer_has_no_url_before_start(keys_dir: Path) -> None:
    ci = Emulator(keys_dir)
    with pytest.raises(EmulatorError, match="no URL yet"):
        ci.token("keyless", JOB)
    with pytest.raises(EmulatorError, match="start the emulator first"):
        ci.run(["true"], JOB)


def test_stop_closes_the_port(keys_dir: Path) -> None:
    with Emulator(keys_dir) as ci:
        issuer = ci.issuer
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{issuer}/.well-known/jwks", timeout=2)


def test_unusable_key_file_is_reported(keys_dir: Path) -> None:
    keys_dir.mkdir()
    (keys_dir / KEY_FILE).write_text("not a key")
    with pytest.raises(EmulatorError, match="not an unencrypted PEM private key"):
        Emulator(keys_dir)


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # The example key and thumbprint of RFC 7638, section 3.1.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    modulus = int.from_bytes(jwt.utils.base64url_decode(n), "big")
    public = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert jwk_thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert b64url(b"\xff") == "_w"
