"""The issuer's HTTP side: OIDC discovery, the JWKS, and GitHub's token request endpoint.

stdlib `http.server` on a background thread: the emulator must start in milliseconds inside a
test and needs no ASGI stack for three small JSON documents.

The token endpoint answers what GitHub's does for every client we know (the `id` library,
uv's ambient-id, @actions/core): `GET <ACTIONS_ID_TOKEN_REQUEST_URL>&audience=<aud>` with
`Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>` -> `{"value": "<JWT>", "count": 1}`.
None of them POSTs, so other methods get 405.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keyless.ci.errors import EmulatorError
from keyless.ci.jobenv import TOKEN_PATH
from keyless.ci.keys import ALGORITHM, SigningKey

logger = logging.getLogger("keyless.ci")

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks"
# A request token and an audience (None when the client sent none) -> a JWT, or None when
# the request token is not one this issuer handed out.
Minter = Callable[[str, str | None], str | None]


def base_url(host: str, port: int) -> str:
    """`http://host:port`, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def discovery_document(issuer: str) -> dict[str, Any]:
    """The OpenID Provider metadata an index fetches to find the JWKS."""
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}{JWKS_PATH}",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": ["openid"],
        "claims_supported": [
            "sub",
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "ref",
            "sha",
            "repository",
            "repository_id",
            "repository_owner",
            "repository_owner_id",
            "run_id",
            "run_number",
            "run_attempt",
            "actor",
            "actor_id",
            "workflow",
            "workflow_ref",
            "workflow_sha",
            "head_ref",
            "base_ref",
            "event_name",
            "ref_type",
            "ref_protected",
            "environment",
            "job_workflow_ref",
            "job_workflow_sha",
            "repository_visibility",
            "runner_environment",
        ],
    }


class IssuerServer:
    """The issuer's endpoints served on `host:port` (port 0: any free port) until `stop`."""

    def __init__(self, key: SigningKey, mint: Minter, *, host: str, port: int) -> None:
        self._key = key
        self._mint = mint
        self._host = host
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The issuer's base URL, which is also the `iss` of its tokens.

        Raises EmulatorError before `start`.
        """
        if self._httpd is None:
            raise EmulatorError("the issuer is not running.")
        return base_url(self._host, self._httpd.server_address[1])

    def start(self) -> None:
        """Listen and serve on a daemon thread.

        Raises EmulatorError if the address cannot be bound (e.g. the port is taken).
        """
        server_class = _Server6 if ":" in self._host else _Server
        try:
            httpd = server_class((self._host, self._port), _Handler)
        except OSError as exc:
            raise EmulatorError(
                f"the CI emulator cannot listen on {base_url(self._host, self._port)}: "
                f"{exc.strerror or exc}; choose another port."
            ) from None
        httpd.issuer = self
        self._httpd = httpd
        # A short poll interval keeps `stop` (and so every test using the emulator) quick.
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"keyless-ci-issuer-{httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def answer(self, method: str, target: str, authorization: str | None) -> tuple[int, Any]:
        """Route one request: (HTTP status, JSON body)."""
        parts = urlsplit(target)
        if parts.path in (DISCOVERY_PATH, JWKS_PATH, TOKEN_PATH) and method != "GET":
            return HTTPStatus.METHOD_NOT_ALLOWED, {"message": f"{method} is not allowed; use GET"}
        if parts.path == DISCOVERY_PATH:
            return HTTPStatus.OK, discovery_document(self.url)
        if parts.path == JWKS_PATH:
            return HTTPStatus.OK, self._key.jwks()
        if parts.path == TOKEN_PATH:
            return self._token(parts.query, authorization)
        return HTTPStatus.NOT_FOUND, {"message": f"no such endpoint: {parts.path}"}

    def _token(self, query: str, authorization: str | None) -> tuple[int, Any]:
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return HTTPStatus.UNAUTHORIZED, {
                "message": "send Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN"
            }
        audiences = parse_qs(query).get("audience")
        token = self._mint(credential, audiences[-1] if audiences else None)
        if token is None:
            return HTTPStatus.UNAUTHORIZED, {
                "message": "the request token is not one this issuer handed to a job, or it expired"
            }
        return HTTPStatus.OK, {"count": 1, "value": token}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    issuer: IssuerServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer is not worth a traceback on the test's stderr.
        logger.debug("CI emulator: error answering %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "keyless-ci-emulator"
    protocol_version = "HTTP/1.1"

    def _respond(self) -> None:
        status, body = self.server.issuer.answer(
            self.command, self.path, self.headers.get("Authorization")
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # Tokens must never be cached; discovery and keys may be, briefly.
        cacheable = status == HTTPStatus.OK and urlsplit(self.path).path != TOKEN_PATH
        self.send_header("Cache-Control", "max-age=60" if cacheable else "no-store")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Bearer")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _respond

    def log_message(self, format: str, *args: Any) -> None:
        # Only the request line is logged, never headers: the request token stays out of logs.
        logger.debug("CI emulator: " + format, *args)
