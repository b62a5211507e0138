"""Fixtures for the release client: a scriptable stub index, and a real TLS keyless server that
trusts a CI emulator (GitHub-type and GitLab-type issuers), as a CI job would meet them."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from keyless.ci.emulator import Emulator, JobClaims
from tests.builders import build_sdist, build_wheel
from tests.conftest import (
    LiveServer,
    client_env,
    start_trusted_server,
    stop_server,
    trust,
)

# ------------------------------------------------------------------------------ stub index


@dataclass
class Answer:
    """How the stub answers one upload: `land` stores the file first (the index took it, but
    the answer says otherwise); `drop` closes the connection without any answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"message": "OK"}'
    land: bool = False
    drop: bool = False
    delay: float = 0.0


@dataclass
class Post:
    filename: str
    fields: dict[str, list[str]]
    authorization: str
    at: float


class StubIndex:
    """A tiny index on 127.0.0.1: PEP 691 pages from `files`, uploads answered from `script`
    (then 200, storing the file), every other GET from `routes` (path -> (status, JSON))."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, str]] = {}  # project -> filename -> sha256
        self.script: list[Answer] = []
        self.routes: dict[str, tuple[int, Any]] = {}
        self.posts: list[Post] = []
        self.other_posts: list[str] = []  # POSTs to the Upload 2.0 root
        # How those are answered: (status, content type, body).
        self.other_answer: tuple[int, str, bytes] = (404, "text/html", b"<h1>Not Found</h1>")
        self.gets: list[str] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub.gets.append(self.path)
                self._answer(*stub.get(self.path))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if self.path.endswith("/upload/2.0/"):
                    # No Upload 2.0 (PEP 694) here: as on PyPI a 404, unless a test says.
                    stub.other_posts.append(self.path)
                    status, kind, content = stub.other_answer
                    self.send_response(status)
                    self.send_header("content-type", kind)
                    self.send_header("content-length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                    return
                answer = stub.post(
                    self.headers.get("content-type", ""),
                    body,
                    self.headers.get("authorization", ""),
                )
                if answer.drop:
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for key, value in {"content-type": "application/json", **answer.headers}.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def _answer(self, status: int, document: Any) -> None:
                body = b"" if document is None else json.dumps(document).encode()
                self.send_response(status)
                self.send_header("content-type", "application/vnd.pypi.simple.v1+json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.upload_url = f"{self.url}/x/legacy/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def get(self, path: str) -> tuple[int, Any]:
        if path in self.routes:
            return self.routes[path]
        prefix = "/x/simple/"
        if path.startswith(prefix):
            project = path[len(prefix) :].strip("/")
            with self.lock:
                files = dict(self.files.get(project, {}))
            if not files:
                return 404, None
            return 200, {
                "meta": {"api-version": "1.1"},
                "name": project,
                "files": [
                    {"filename": name, "url": f"/files/{sha}/{name}", "hashes": {"sha256": sha}}
                    for name, sha in files.items()
                ],
            }
        return 404, None

    def post(self, content_type: str, body: bytes, authorization: str) -> Answer:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, list[str]] = {}
        content = b""
        filename = ""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            if name == "content":
                content = payload
                filename = str(part.get_filename())
            else:
                fields.setdefault(str(name), []).append(payload.decode())
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.posts.append(Post(filename, fields, authorization, time.monotonic()))
            answer = self.script.pop(0) if self.script else Answer()
        try:
            if answer.delay:
                time.sleep(answer.delay)
            if answer.land or (answer.status == 200 and not answer.drop):
                self.store(filename, content)
        finally:
            with self.lock:
                self.in_flight -= 1
        return answer

    def store(self, filename: str, content: bytes) -> None:
        if filename.endswith(".whl"):
            project = parse_wheel_filename(filename)[0]
        else:
            project = parse_sdist_filename(filename)[0]
        with self.lock:
            self.files.setdefault(canonicalize_name(project), {})[filename] = hashlib.sha256(
                content
            ).hexdigest()

    def __enter__(self) -> StubIndex:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def stub() -> Iterator[StubIndex]:
    with StubIndex() as index:
        yield index


# ---------------------------------------------------------------------- the live TLS server


@pytest.fixture(scope="session")
def ci(emulator: Emulator) -> Emulator:
    """The GitHub-shaped issuer the server trusts (tests/conftest.py's `emulator`)."""
    return emulator


@pytest.fixture(scope="session")
def tp_server(
    tmp_path_factory: pytest.TempPathFactory, ci: Emulator, gitlab_ci: Emulator
) -> Iterator[LiveServer]:
    live = start_trusted_server(
        tmp_path_factory.mktemp("publish-server"), ci.issuer, gitlab_ci.issuer
    )
    yield live
    stop_server(live)


@pytest.fixture(scope="session")
def tp_http(tp_server: LiveServer) -> Iterator[httpx.Client]:
    with tp_server.client() as client:
        yield client


def add_github_publisher(
    server: LiveServer,
    http: httpx.Client,
    ci: Emulator,
    project: str,
    *,
    index: str = "prod",
    **fields: str,
) -> None:
    """Link a GitHub publisher (octo-org/<repository>, release.yml by default) to `project`."""
    owner = server.token(f"owner-{project}", index)
    config = {
        "owner": "octo-org",
        "repository": project,
        "workflow": "release.yml",
        "issuer": ci.issuer,
        **fields,
    }
    answer = http.post(
        f"/{index}/api/projects/{project}/publishers",
        json={"kind": "github", "config": config},
        headers={"Authorization": f"Bearer {owner}"},
    )
    assert answer.status_code == 200, answer.text


def github_job(repo: str, **changes: Any) -> JobClaims:
    """A release job of octo-org/<repo>, on a tag, in environment `pypi`."""
    base: dict[str, Any] = {
        "repo": f"octo-org/{repo}",
        "workflow": "release.yml",
        "ref": "refs/tags/v1.0.0",
        "environment": "pypi",
        "event": "release",
        "owner_id": 4242,
    }
    base.update(changes)
    return JobClaims(**base)


def write_release(folder: Path, name: str, version: str, **metadata: Any) -> list[Path]:
    """A wheel and an sdist of `name` `version` in `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, data in (
        build_wheel(name, version, metadata=metadata or None),
        build_sdist(name, version, metadata=metadata or None),
    ):
        path = folder / filename
        path.write_bytes(data)
        paths.append(path)
    return paths


def job_env(server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """A clean client environment that trusts the server's CA and holds no upload token."""
    assert server.tls is not None
    env = trust(client_env(tmp_path), server.tls.ca)
    for name in ("KEYLESS_TOKEN", "KEYLESS_REPOSITORY_URL", "TWINE_PASSWORD", "TWINE_USERNAME"):
        env.pop(name, None)
    env["COLUMNS"] = "200"  # long lines unwrapped, so assertions see whole messages
    return env


def keyless_publish(*args: str) -> list[str]:
    return [sys.executable, "-m", "keyless", "publish", *args]


def run_publish(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`keyless publish` outside CI (no emulator)."""
    return subprocess.run(
        keyless_publish(*args),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def publish_in_job(
    ci: Emulator, claims: JobClaims, server: LiveServer, folder: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`keyless publish` as a step of `claims`'s job, from `folder` (its dist/ by default)."""
    return ci.run(
        keyless_publish("--repository-url", server.upload_url("prod"), *args),
        claims,
        env=job_env(server, folder),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def audit(server: LiveServer, http: httpx.Client, project: str, index: str = "prod") -> list[Any]:
    """The project's audit trail, oldest first."""
    owner = server.token(f"owner-{project}", index)
    answer = http.get(
        f"/{index}/api/projects/{project}/audit", headers={"Authorization": f"Bearer {owner}"}
    )
    assert answer.status_code == 200, answer.text
    return list(reversed(answer.json()))


def simple_hashes(http: httpx.Client, project: str, index: str = "prod") -> dict[str, str]:
    page = http.get(
        f"/{index}/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    if page.status_code == 404:
        return {}
    return {f["filename"]: f["hashes"]["sha256"] for f in page.json()["files"]}
