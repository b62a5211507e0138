"""Fuzzing every JSON endpoint over HTTP: Trusted Publishing's token exchange (forged JWTs and
tokens really signed by the CI emulator with mutated claims) and the owners' JSON APIs (yank,
status, publishers, pending publishers, audit, promote), with hostile bodies, paths and headers.

The invariants are harness.Guard's: below 500, within the deadline, nothing stored on a
refusal, health check answering during and after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import event, example, given, note
from hypothesis import strategies as st

from keyless.ci.emulator import Emulator
from tests.builders import build_sdist, build_wheel
from tests.conftest import SERVER_CONFIG, LiveServer, start_server, stop_server
from tests.index.test_trusted_publishing import add_github_publisher, job
from tests.index.uploading import upload

from .harness import Guard, Store, Watchdog, assert_server_held, fuzz_settings
from .tokens import JWT_HEADERS, b64url, forged_jwts, json_bodies, mutated_claims
from .values import HOSTILE_TEXT, PROJECT_NAMES, VERSIONS

pytestmark = pytest.mark.fuzz

OWNED = "fz-owned"  # owned by the fuzzer: the JSON APIs' cases act on it
MINTED = "fz-minted"  # someone else's, with a GitHub publisher the signed tokens are held to
PYTP = "application/vnd.pypi.pytp.v1+json"


@dataclass
class Setting:
    server: LiveServer
    emulator: Emulator
    owner_token: str
    prod_token: str
    guard: Guard = field(repr=False)


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, emulator: Emulator
) -> Iterator[LiveServer]:
    config = SERVER_CONFIG + '\n[trusted-publishing]\naudience = "keyless"\n'
    config += f'\n[trusted-publishing.issuers]\n"{emulator.issuer}" = "github"\n'
    live = start_server(tmp_path_factory.mktemp("fuzz-json"), config_text=config)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def setting(fuzz_server: LiveServer, emulator: Emulator, guard: Guard) -> Setting:
    server = fuzz_server
    owner = server.token("fz-owner", "test")
    prod = server.token("fz-owner", "prod")
    minter = server.token("fz-minter", "test")
    with server.client() as client:
        for token, index, name, version in (
            (owner, "test", OWNED, "1.0"),
            (prod, "prod", OWNED, "0.1"),
            (minter, "test", MINTED, "1.0"),
        ):
            for dist in (build_wheel(name, version), build_sdist(name, version)):
                answer = upload(client, index, token, *dist)
                assert answer.status_code == 200, answer.text
        add_github_publisher(server, emulator, MINTED, index="test")
    return Setting(server, emulator, owner, prod, guard)


# ------------------------------------------------------------------ owners' JSON APIs

# (method, path, body shape); the path's {placeholders} are drawn per case.
ENDPOINTS = [
    ("POST", "/_/oidc/mint-token", "token"),
    ("POST", "/_/oidc/github/mint-token", "token"),
    ("POST", "/_/oidc/{index}/mint-token", "token"),
    ("POST", "/_/oidc/{index}/dry-run", "token"),
    ("POST", "/_/oidc/burn-token", "token"),
    ("GET", "/_/oidc/{index}/audience", "none"),
    ("GET", "/.well-known/pytp/{key}", "none"),
    ("POST", "/{index}/api/projects/{project}/releases/{version}/yank", "reason"),
    ("POST", "/{index}/api/projects/{project}/releases/{version}/unyank", "reason"),
    ("POST", "/{index}/api/projects/{project}/status", "status"),
    ("GET", "/{index}/api/projects/{project}/publishers", "none"),
    ("POST", "/{index}/api/projects/{project}/publishers", "publisher"),
    ("DELETE", "/{index}/api/projects/{project}/publishers/{publisher}", "none"),
    ("POST", "/{index}/api/pending-publishers", "pending"),
    ("GET", "/{index}/api/projects/{project}/audit", "none"),
    ("POST", "/{index}/api/projects/{project}/releases/{version}/promote", "promote"),
    ("GET", "/{index}/pypi/{project}/json", "none"),
    ("GET", "/{index}/pypi/{project}/{version}/json", "none"),
]


def mostly(
    usual: st.SearchStrategy[str], hostile: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    """Usual values three times in four, so most cases get past routing to the handler."""
    return st.one_of(usual, usual, usual, hostile)


PATH_VALUES: dict[str, st.SearchStrategy[str]] = {
    "index": mostly(st.sampled_from(["test", "test", "prod", "nowhere"]), HOSTILE_TEXT),
    "project": mostly(st.sampled_from([OWNED, OWNED, MINTED, "FZ_Owned", "nope"]), PROJECT_NAMES),
    "version": mostly(st.sampled_from(["1.0", "1.0.0", "0.1", "9.9"]), VERSIONS),
    "publisher": st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.sampled_from(["1", "2", "0x1", "1e3"]),
        HOSTILE_TEXT,
    ),
    "key": st.one_of(
        st.sampled_from([hashlib.sha256(b"/test/legacy/").hexdigest(), "0" * 64]), HOSTILE_TEXT
    ),
}


USUAL_PATH = {
    "index": "test",
    "project": OWNED,
    "version": "1.0",
    "publisher": "1",
    "key": hashlib.sha256(b"/test/legacy/").hexdigest(),
}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]

    def __repr__(self) -> str:
        body = self.body if self.body is None or len(self.body) < 300 else self.body[:300] + b"..."
        size = 0 if self.body is None else len(self.body)
        return f"Call({self.method} {self.path[:300]} headers={self.headers} {size} bytes {body!r})"


OWNER, PROD = "{owner}", "{prod}"  # placeholders for tokens only known at run time


@st.composite
def calls(draw: st.DrawFn) -> Call:
    method, template, shape = draw(st.sampled_from(ENDPOINTS))
    path = template
    # Half the cases name what exists (so the body is read and acted on), half draw each part.
    usual = draw(st.booleans())
    for name, values in PATH_VALUES.items():
        if "{" + name + "}" in path:
            value = USUAL_PATH[name] if usual else draw(values)
            path = path.replace("{" + name + "}", quote(value, safe=""))
    headers: dict[str, str] = {}
    auth = draw(
        st.sampled_from(
            [f"Bearer {OWNER}"] * 4
            + [
                f"token {OWNER}",
                f"Bearer {PROD}",
                "",
                "Bearer x",
                "Basic !!",
                "Basic X190b2tlbl9fOg==",
            ]
        )
    )
    if auth:
        headers["authorization"] = auth
    accept = draw(st.sampled_from(["", "application/json", PYTP, "text/html", "*/*", "a/b;q=x,,"]))
    if accept:
        headers["accept"] = accept
    if draw(st.integers(0, 5)) == 0:
        headers["content-type"] = draw(
            st.sampled_from(["application/json", "text/plain", "multipart/form-data", "x"])
        )
    body = draw(json_bodies(shape)) if method != "GET" or draw(st.integers(0, 9)) == 0 else None
    return Call(method, path, body, headers)


def send(setting: Setting, call: Call) -> httpx.Response:
    headers = {
        key: value.replace(OWNER, setting.owner_token).replace(PROD, setting.prod_token)
        for key, value in call.headers.items()
    }
    return setting.guard.send(
        lambda client: client.request(call.method, call.path, content=call.body, headers=headers)
    )


def owned(path: str, body: bytes) -> Call:
    return Call("POST", path, body, {"authorization": f"Bearer {OWNER}"})


# Known hostile inputs, tried first in every run (the strategy draws them too, less surely).
DEEP = b"[" * 20_000 + b"]" * 20_000  # deeper than json.loads recurses, within 64 KiB


@fuzz_settings(1500)
@example(call=owned("/_/oidc/burn-token", DEEP))
@example(call=owned("/_/oidc/mint-token", b'{"token": ' + DEEP + b"}"))
@example(
    call=owned(
        f"/test/api/projects/{OWNED}/releases/1.0/yank", b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    )
)
@example(call=owned(f"/test/api/projects/{OWNED}/releases/1.{'9' * 5_000}/yank", b"{}"))
@example(
    call=owned(f"/test/api/projects/{OWNED}/releases/1.{'9' * 5_000}/promote", b'{"to": "prod"}')
)
@example(call=Call("GET", f"/test/pypi/{OWNED}/1.{'9' * 5_000}/json", None, {}))
@given(call=calls())
def test_json_endpoints(setting: Setting, call: Call) -> None:
    answer = send(setting, call)
    event(f"{call.method} {call.path.split('/')[-1][:20]}: {answer.status_code}")


# ------------------------------------------------------------------ the token exchange


def sign(setting: Setting, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT over exactly these header and claims, RS256-signed with the emulator's key (the
    key the server trusts), whatever they say: no library's checks in between."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = setting.emulator.key.private_key.sign(
        signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{b64url(signature)}"


def error_code(answer: httpx.Response) -> str:
    """The token exchange's error code (PyPI's shape), for `event`."""
    try:
        return str(answer.json()["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


MINT_PATHS = st.sampled_from(
    ["/_/oidc/mint-token", "/_/oidc/github/mint-token", "/_/oidc/test/mint-token"]
)


def real_claims(setting: Setting) -> dict[str, Any]:
    return job().claims(setting.emulator.issuer, "keyless")


@fuzz_settings(300)
@given(data=st.data())
def test_mint_with_signed_mutated_claims(setting: Setting, data: st.DataObject) -> None:
    """Tokens the trusted issuer really signed, for the repository a publisher names, with
    claims replaced, dropped or added: the claim checks and publisher matching see them all."""
    claims = data.draw(mutated_claims(real_claims(setting)), label="claims")
    header = {"alg": "RS256", "typ": "JWT", "kid": setting.emulator.key.kid}
    if data.draw(st.integers(0, 4)) == 0:
        header = {**header, **data.draw(JWT_HEADERS, label="header")}
    token = sign(setting, header, claims)
    # The dry run first (it uses nothing up), through the same checks as the mint after it.
    question = json.dumps({"token": token, "project": MINTED}).encode()
    asked = send(setting, Call("POST", "/_/oidc/test/dry-run", question, {}))
    event(f"dry run: {asked.status_code} {asked.json().get('allowed')}")
    path = data.draw(MINT_PATHS, label="path")
    answer = send(
        setting, Call("POST", path, json.dumps({"token": token}).encode(), {"accept": PYTP})
    )
    event(f"signed: {answer.status_code} {error_code(answer)}")


@fuzz_settings(300)
@given(data=st.data())
def test_mint_with_forged_jwts(setting: Setting, data: st.DataObject) -> None:
    """JWT-shaped strings no trusted key signed: mutated headers (alg none/HS256, foreign
    key URLs), claims and segments."""
    token = data.draw(forged_jwts(real_claims(setting)), label="token")
    path = data.draw(MINT_PATHS, label="path")
    answer = send(setting, Call("POST", path, json.dumps({"token": token}).encode(), {}))
    note(token[:500])
    event(f"forged: {answer.status_code} {error_code(answer)}")


def test_server_held_throughout(fuzz_server: LiveServer, watchdog: Watchdog, store: Store) -> None:
    """Last in the module: health checks answered all along, no handler crashed, and no
    blob appeared."""
    assert_server_held(fuzz_server, watchdog, store)
