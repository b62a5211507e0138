"""uv's own Trusted Publishing client, in an emulated job, against a stub index on https.

The stub index (TLS from `keyless dev-cert`) answers the audience and refuses the mint, so uv
stops after handing over its OIDC token: what uv fetched from the emulator, and how, is the
subject here, not the index.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from keyless.ci import Emulator, JobClaims
from keyless.ci.claims import Provider
from keyless.devcert import DevCert, create_dev_cert
from tests.builders import build_wheel
from tests.conftest import client_env, trust

pytestmark = pytest.mark.clients


class StubIndex(ThreadingHTTPServer):
    daemon_threads = True
    mint_bodies: list[bytes]


class _Handler(BaseHTTPRequestHandler):
    server: StubIndex

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_/oidc/audience":
            self._json(200, {"audience": "keyless"})
        else:
            self._json(404, {"message": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.mint_bodies.append(self.rfile.read(length))
        self._json(
            422,
            {
                "message": "Token request failed",
                "errors": [{"code": "invalid-publisher", "description": "stub index"}],
            },
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls(tmp_path: Path) -> DevCert:
    return create_dev_cert(tmp_path / "tls")


@pytest.fixture
def stub_index(tls: DevCert) -> Iterator[StubIndex]:
    server = StubIndex(("127.0.0.1", 0), _Handler)
    server.mint_bodies = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def uv_publish(
    ci: Emulator, job: JobClaims, index: StubIndex, tls: DevCert, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    filename, data = build_wheel("demo-pkg", "1.0")
    wheel = tmp_path / filename
    wheel.write_bytes(data)
    url = f"https://127.0.0.1:{index.server_address[1]}/prod/legacy/"
    command = [sys.executable, "-m", "uv", "publish", "--publish-url", url]
    return ci.run(
        [*command, "--trusted-publishing", "always", str(wheel)],
        job,
        env=trust(client_env(tmp_path), tls.ca),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def minted_claims(ci: Emulator, index: StubIndex) -> dict[str, Any]:
    [body] = index.mint_bodies
    token = json.loads(body)["token"]
    key = jwt.PyJWKClient(f"{ci.issuer}/.well-known/jwks").get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience="keyless", issuer=ci.issuer
    )
    return claims


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_uv_gets_its_token_from_the_emulator(
    emulator: Emulator, stub_index: StubIndex, tls: DevCert, tmp_path: Path, provider: Provider
) -> None:
    job = JobClaims(
        provider=provider,
        repo="octo/hello",
        ref="refs/tags/v1.0",
        environment="pypi",
    )
    result = uv_publish(emulator, job, stub_index, tls, tmp_path)
    assert result.returncode != 0  # the stub index refuses the mint, by design
    assert "stub index" in result.stderr
    claims = minted_claims(emulator, stub_index)
    assert claims["environment"] == "pypi"
    if provider == "github":
        assert claims["repository"] == "octo/hello"
        assert claims["ref"] == "refs/tags/v1.0"
    else:
        assert claims["project_path"] == "octo/hello"
        assert claims["ref_path"] == "refs/tags/v1.0"


def test_uv_without_permission_names_it(
    emulator: Emulator, stub_index: StubIndex, tls: DevCert, tmp_path: Path
) -> None:
    job = JobClaims(repo="octo/hello", id_token=False)
    result = uv_publish(emulator, job, stub_index, tls, tmp_path)
    assert result.returncode != 0
    assert "id-token: write" in result.stderr
    assert stub_index.mint_bodies == []
