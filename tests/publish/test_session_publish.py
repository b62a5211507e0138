"""`keyless publish` through PEP 694 upload sessions, and its fallback to the legacy API on an
index without them (a stub index here; the session tests drive a live keyless server)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.cli.main import main
from keyless.publish import (
    ApiTokenCredentials,
    Backoff,
    IndexClient,
    RecordingReporter,
    UploadOptions,
    load_all,
    new_http_client,
    publish,
)
from keyless.publish.indexclient import SIMPLE_JSON
from keyless.publish.session import stage
from keyless.publish.upload2 import upload_root
from tests.builders import build_sdist, build_wheel, write_dist
from tests.conftest import LiveServer, client_env, interruptible

from .conftest import StubIndex, keyless_publish, run_publish, simple_hashes
from .stalling_relay import StallingRelay


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "CI", "KEYLESS_REPOSITORY_URL", "TWINE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KEYLESS_TOKEN", "keyless-fallback-token")


def test_the_upload_2_0_root_is_derived_from_a_legacy_upload_url() -> None:
    assert upload_root("https://h.example/prod/legacy/") == "https://h.example/prod/upload/2.0/"
    assert upload_root("https://h.example/prod/legacy") == "https://h.example/prod/upload/2.0/"
    assert upload_root("https://upload.pypi.org/legacy/") == "https://upload.pypi.org/upload/2.0/"
    # Not a legacy upload URL (pypiserver's root, devpi's index URL): legacy API, no probe.
    assert upload_root("http://127.0.0.1:8080/") is None
    assert upload_root("https://devpi.example/root/dev/") is None


@pytest.mark.usefixtures("token_env")
@pytest.mark.parametrize(
    "answer",
    [
        (404, "text/html", b"<h1>Not Found</h1>"),  # PyPI, pypiserver, devpi
        (405, "application/json", b'{"message": "Method Not Allowed"}'),
        (501, "application/problem+json", b'{"title": "Not Implemented", "status": 501}'),
        # A catch-all answering 200 with a page: not a PEP 694 answer either.
        (200, "text/html", b"<html>welcome</html>"),
    ],
)
def test_an_index_without_upload_2_0_gets_the_legacy_upload(
    stub: StubIndex,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answer: tuple[int, str, bytes],
) -> None:
    stub.other_answer = answer
    dists = [
        write_dist(tmp_path, *build_wheel("fallback-demo", "1.0")),
        write_dist(tmp_path, *build_sdist("fallback-demo", "1.0")),
    ]
    code = main(["publish", "--repository-url", stub.upload_url, "--json", *map(str, dists)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # One probe of the Upload 2.0 root, then today's legacy upload: wheel, then sdist.
    assert stub.other_posts == ["/x/upload/2.0/"]
    assert [p.filename for p in stub.posts] == [d.name for d in dists]
    document = json.loads(captured.out)
    assert document["upload_api"] == "legacy"
    assert document["sessions"] == []
    assert [f["status"] for f in document["files"]] == ["uploaded", "uploaded"]
    assert "no upload sessions (PEP 694) on this index" in captured.err
    assert "through the legacy upload API" in captured.err


@pytest.mark.usefixtures("token_env")
def test_no_session_does_not_even_ask(
    stub: StubIndex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = write_dist(tmp_path, *build_wheel("nosession-demo", "1.0"))
    code = main(["publish", "--no-session", "--repository-url", stub.upload_url, str(wheel)])
    assert code == 0, capsys.readouterr().err
    assert stub.other_posts == []
    assert [p.filename for p in stub.posts] == [wheel.name]


# ------------------------------------------------------------------ a live keyless index


def sha256s(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def release_files(folder: Path, name: str, version: str, **wheel: Any) -> list[Path]:
    """An sdist and three wheels of `name` `version` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    made = [write_dist(folder, *build_sdist(name, version))]
    for tag in ("py3-none-any", "py2-none-any", "py311-none-any"):
        made.append(write_dist(folder, *build_wheel(name, version, tag=tag, **wheel)))
    return made


def publish_env(tmp_path: Path, token: str) -> dict[str, str]:
    env = client_env(tmp_path)
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "CI", "KEYLESS_REPOSITORY_URL", "TWINE_PASSWORD"):
        env.pop(name, None)
    env["KEYLESS_TOKEN"] = token
    env["COLUMNS"] = "200"
    return env


def visible(http: httpx.Client, project: str, version: str) -> dict[str, str]:
    """filename -> sha256 of the files of `version` the prod index lists."""
    return {
        name: sha
        for name, sha in simple_hashes(http, project).items()
        if f"-{version}-" in name or name.endswith(f"-{version}.tar.gz")
    }


def session_status(http: httpx.Client, url: str, token: str) -> dict[str, Any]:
    answer = http.get(url, auth=("__token__", token))
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def test_a_release_is_invisible_until_its_session_is_published(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    token = server.token("owner-session-demo", "prod")
    paths = release_files(tmp_path / "dist", "session-demo", "1.0")
    reporter = RecordingReporter()
    with new_http_client(environ={}) as client_http:
        client = IndexClient(server.upload_url("prod"), http=client_http)
        staged = stage(
            load_all(paths),
            client,
            credentials=ApiTokenCredentials(token, origin="test"),
            reporter=reporter,
        )
        assert staged is not None
        assert staged.ok, [f.error for f in staged.files]
        assert [f.status for f in staged.files] == ["staged"] * 4
        # Every byte is on the index, and nothing of the release can be installed yet...
        assert visible(http, "session-demo", "1.0") == {}
        # ...except from the session's stage preview, which lists all four with their hashes.
        (session,) = staged.sessions
        assert session.url.startswith(f"{server.url}/prod/upload/2.0/sessions/")
        assert session.stage_url is not None
        page = client_http.get(session.stage_url + "session-demo/", headers={"Accept": SIMPLE_JSON})
        assert page.status_code == 200, page.text
        listed = {f["filename"]: f["hashes"]["sha256"] for f in page.json()["files"]}
        assert listed == sha256s(paths)

        result = staged.publish()
        assert result.ok
        assert result.upload_api == "session"
        assert [f.status for f in result.files] == ["uploaded"] * 4
        assert visible(http, "session-demo", "1.0") == sha256s(paths)  # all four at once
        assert all(f.url and f.url.startswith(server.url) for f in result.files)
        assert client_http.get(session.stage_url + "session-demo/").status_code == 404

    # The command does the same in one go, and says how.
    more = release_files(tmp_path / "dist2", "session-demo", "1.1")
    ran = run_publish(
        ["--repository-url", server.upload_url("prod"), "--json", *map(str, more)],
        publish_env(tmp_path, token),
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert document["upload_api"] == "session"
    (described,) = document["sessions"]
    assert described["status"] == "published"
    assert described["url"].startswith(f"{server.url}/prod/upload/2.0/sessions/")
    assert f"through upload session(s) (PEP 694): {described['url']} (published)" in ran.stderr
    assert visible(http, "session-demo", "1.1") == sha256s(more)
    assert session_status(http, described["url"], token)["status"] == "published"

    # A rerun finds every file there: nothing to send, no session.
    again = run_publish(
        ["--repository-url", server.upload_url("prod"), "--json", *map(str, more)],
        publish_env(tmp_path, token),
        tmp_path,
    )
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert [f["status"] for f in document["files"]] == ["exists"] * 4
    assert document["upload_api"] is None


def test_a_file_the_index_refuses_cancels_the_session(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    token = server.token("owner-refused-session", "prod")
    paths = release_files(tmp_path / "dist", "refused-session", "1.0")
    # PyPI's rule (the prod index's profile): private classifiers are never uploaded.
    bad = write_dist(
        tmp_path / "dist",
        *build_wheel(
            "refused-session",
            "1.0",
            tag="cp311-abi3-manylinux_2_17_x86_64",
            metadata={"classifiers": ["Private :: Do Not Upload"]},
        ),
    )
    ran = run_publish(
        ["--repository-url", server.upload_url("prod"), "--json", *map(str, [*paths, bad])],
        publish_env(tmp_path, token),
        tmp_path,
    )
    assert ran.returncode == 1, ran.stderr
    document = json.loads(ran.stdout)
    assert document["ok"] is False
    assert document["upload_api"] == "session"
    (described,) = document["sessions"]
    outcome = {f["filename"]: f for f in document["files"]}
    # The index's own words (RFC 9457 problem) reach the user.
    assert "Private ::" in outcome[bad.name]["error"], outcome[bad.name]
    assert all(
        outcome[p.name]["status"] == "failed" and "not" in outcome[p.name]["error"] for p in paths
    )
    assert "canceled the session for refused-session 1.0" in ran.stderr
    assert "Traceback" not in ran.stderr
    # Nothing of the release is visible, and the session is over.
    assert visible(http, "refused-session", "1.0") == {}
    assert session_status(http, described["url"], token)["status"] == "canceled"
    assert described["stage"]
    assert http.get(described["stage"]).status_code == 404


def _big_wheel(folder: Path, name: str, version: str) -> Path:
    """A wheel of ~24 MB of incompressible bytes: takes a moment to send."""
    return write_dist(
        folder,
        *build_wheel(
            name,
            version,
            tag="py310-none-any",
            extra_files={"blob/data.bin": os.urandom(24 * 1024 * 1024)},
            compression=zipfile.ZIP_STORED,
        ),
    )


def test_a_killed_run_is_resumed_by_the_next_and_published_once(
    server: LiveServer, http: httpx.Client, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    token = server.token("owner-resumed-session", "prod")
    small = release_files(tmp_path / "dist", "resumed-session", "1.0")
    big = _big_wheel(tmp_path / "dist", "resumed-session", "1.0")
    # One at a time, small files first: once two are staged, the big one is on its way.
    paths = [*small[:2], big, *small[2:]]
    env = publish_env(tmp_path, token)
    # The big file stalls after 1 MiB until the relay is disarmed: killed while on its way.
    relay = StallingRelay(server.url, limit=1024 * 1024)
    request.addfinalizer(relay.close)
    upload_url = f"{relay.url}/prod/legacy/"
    args = ["--repository-url", upload_url, "--parallel", "1", *map(str, paths)]
    process = subprocess.Popen(
        keyless_publish(*args), env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if sum(entry.lstrip().startswith("staged") for entry in lines) == 2:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait(timeout=30)
    text = "".join(lines)
    assert process.returncode == -signal.SIGKILL, text
    opened = re.search(r"Opened an upload session for resumed-session 1.0: (\S+)", text)
    assert opened, text
    # Killed midway: nothing visible; the session is still open, holding the first two.
    assert visible(http, "resumed-session", "1.0") == {}
    held = session_status(http, opened[1], token)
    assert held["status"] == "open"
    completed = {n for n, f in held["files"].items() if f["status"] == "completed"}
    assert {p.name for p in paths[:2]} <= completed
    relay.disarm()

    rerun = run_publish([*args, "--json"], env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"Resuming the open upload session for resumed-session 1.0: {opened[1]}" in (
        rerun.stderr
    )
    for path in paths[:2]:
        assert f"{path.name}: already in the session (same sha256), reused" in rerun.stderr
    document = json.loads(rerun.stdout)
    assert document["sessions"][0]["url"] == opened[1]
    assert [f["status"] for f in document["files"]] == ["uploaded"] * len(paths)
    assert visible(http, "resumed-session", "1.0") == sha256s(paths)
    assert session_status(http, opened[1], token)["status"] == "published"


def test_an_interrupt_cancels_the_session(
    server: LiveServer, http: httpx.Client, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    token = server.token("owner-interrupted-session", "prod")
    small = release_files(tmp_path / "dist", "interrupted-session", "1.0")
    paths = [small[0], _big_wheel(tmp_path / "dist", "interrupted-session", "1.0")]
    env = publish_env(tmp_path, token)
    # The big file stalls after 1 MiB: the interrupt comes while it is on its way.
    relay = StallingRelay(server.url, limit=1024 * 1024)
    request.addfinalizer(relay.close)
    upload_url = f"{relay.url}/prod/legacy/"
    args = ["--repository-url", upload_url, "--parallel", "1", *map(str, paths)]
    process = subprocess.Popen(
        keyless_publish(*args),
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        for line in process.stderr:
            lines.append(line)
            if line.lstrip().startswith("staged"):
                process.send_signal(signal.SIGINT)  # Ctrl-C
                break
        lines += process.stderr.readlines()
        process.wait(timeout=60)
    finally:
        process.kill()
    text = "".join(lines)
    assert process.returncode == 130, text
    opened = re.search(r"Opened an upload session for interrupted-session 1.0: (\S+)", text)
    assert opened, text
    assert "canceled the session for interrupted-session 1.0" in text
    assert not re.search(r"staged\s+" + re.escape(paths[1].name), text), "interrupted too late"
    assert session_status(http, opened[1], token)["status"] == "canceled"
    assert visible(http, "interrupted-session", "1.0") == {}


def test_no_session_uses_the_legacy_api_on_an_index_with_sessions(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    token = server.token("owner-nosession-live", "prod")
    paths = release_files(tmp_path / "dist", "nosession-live", "1.0")
    ran = run_publish(
        ["--repository-url", server.upload_url("prod"), "--no-session", "--json"]
        + [str(p) for p in paths],
        publish_env(tmp_path, token),
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert document["upload_api"] == "legacy"
    assert document["sessions"] == []
    assert "upload session" not in ran.stderr
    assert visible(http, "nosession-live", "1.0") == sha256s(paths)


def test_files_of_several_releases_go_up_in_a_session_each(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    token = server.token("owner-multi-session", "prod")
    folder = tmp_path / "dist"
    folder.mkdir()
    paths = [
        write_dist(folder, *build_wheel("multi-session", "1.0")),
        write_dist(folder, *build_sdist("multi-session", "1.0")),
        write_dist(folder, *build_wheel("multi-session", "1.1")),
        write_dist(folder, *build_wheel("multi-session-b", "2.0")),
    ]
    ran = run_publish(
        ["--repository-url", server.upload_url("prod"), "--json", *map(str, paths)],
        publish_env(tmp_path, token),
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    # PEP 694: a session is one name and version; three releases, three sessions.
    releases = {(s["name"], s["version"]): s["status"] for s in document["sessions"]}
    assert releases == {
        ("multi-session", "1.0"): "published",
        ("multi-session", "1.1"): "published",
        ("multi-session-b", "2.0"): "published",
    }
    assert len({s["url"] for s in document["sessions"]}) == 3
    assert visible(http, "multi-session", "1.0") == sha256s(paths[:2])
    assert visible(http, "multi-session", "1.1") == sha256s(paths[2:3])
    assert visible(http, "multi-session-b", "2.0") == sha256s(paths[3:])


class BrokenBytes(httpx.HTTPTransport):
    """The network between this client and the index breaks for every file's bytes but the
    first (the index itself is fine)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/bytes"):
            self.sent += 1
            if self.sent > 1:
                raise httpx.ConnectError("connection reset (injected)", request=request)
        return super().handle_request(request)


def test_a_network_failure_leaves_the_session_open_for_the_rerun(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    token = server.token("owner-transient-session", "prod")
    paths = release_files(tmp_path / "dist", "transient-session", "1.0")
    credentials = ApiTokenCredentials(token, origin="test")
    reporter = RecordingReporter()
    with httpx.Client(transport=BrokenBytes(), timeout=30) as broken:
        result = publish(
            paths,
            server.upload_url("prod"),
            credentials=credentials,
            reporter=reporter,
            http=broken,
            options=UploadOptions(parallel=1, retries=1, backoff=Backoff(base=0.01, cap=0.01)),
        )
    assert not result.ok
    assert result.upload_api == "session"
    (described,) = result.sessions
    failed = [f for f in result.files if "gave up after 2 attempts" in (f.error or "")]
    assert len(failed) == 3
    # Not the index's fault nor the files': the session stays open, nothing is visible.
    assert any("left open: run again to resume it" in w for w in reporter.of("warning"))
    assert session_status(http, described["url"], token)["status"] == "open"
    assert visible(http, "transient-session", "1.0") == {}

    rerun = RecordingReporter()
    with new_http_client(environ={}) as client_http:
        again = publish(
            paths,
            server.upload_url("prod"),
            credentials=credentials,
            reporter=rerun,
            http=client_http,
        )
    assert again.ok, again.to_json()
    assert again.sessions[0]["url"] == described["url"]
    assert f"{paths[0].name}: already in the session (same sha256), reused" in rerun.of("info")
    assert visible(http, "transient-session", "1.0") == sha256s(paths)


def test_skip_existing_off_still_fails_an_identical_file(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    token = server.token("owner-skip-session", "prod")
    paths = release_files(tmp_path / "dist", "skip-session", "1.0")
    credentials = ApiTokenCredentials(token, origin="test")
    with new_http_client(environ={}) as client_http:
        first = publish(
            paths,
            server.upload_url("prod"),
            credentials=credentials,
            reporter=RecordingReporter(),
            http=client_http,
        )
        assert first.ok
        assert first.upload_api == "session"
        # A release that must be new: the files already there are failures, as on legacy.
        again = publish(
            paths,
            server.upload_url("prod"),
            credentials=credentials,
            reporter=RecordingReporter(),
            http=client_http,
            options=UploadOptions(skip_existing=False),
        )
    assert not again.ok
    assert [f.status for f in again.files] == ["failed"] * len(paths)
    assert all("is already on the index (identical)" in (f.error or "") for f in again.files)


class DeferringIndex(httpx.HTTPTransport):
    """The live index, as an index that defers work would answer (PEP 694 allows it): every
    file's completion and the publish are answered `202 Accepted` with the status
    `processing`, and the next status request still says `processing`. The work itself is the
    real index's, done at once behind the scenes."""

    def __init__(self) -> None:
        super().__init__()
        self.deferred: set[str] = set()  # URLs whose next status says `processing`
        self.polled: list[str] = []  # status requests answered `processing`

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and str(request.url) in self.deferred:
            self.deferred.discard(str(request.url))
            self.polled.append(path)
            return self._processing(super().handle_request(request), 200)
        answer = super().handle_request(request)
        if request.method == "POST" and path.endswith(("/complete", "/publish")):
            answer.read()
            assert answer.status_code == 201, answer.text
            status_url = answer.headers["location"]
            self.deferred.add(status_url)
            return self._processing(answer, 202)
        return answer

    @staticmethod
    def _processing(answer: httpx.Response, status: int) -> httpx.Response:
        document = json.loads(answer.read())
        document["status"] = "processing"
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        return httpx.Response(status, headers=headers, content=json.dumps(document).encode())


def test_deferred_completions_and_publish_are_polled_until_done(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    token = server.token("owner-deferred-session", "prod")
    paths = release_files(tmp_path / "dist", "deferred-session", "1.0")
    deferring = DeferringIndex()
    with httpx.Client(transport=deferring, timeout=30) as client_http:
        result = publish(
            paths,
            server.upload_url("prod"),
            credentials=ApiTokenCredentials(token, origin="test"),
            reporter=RecordingReporter(),
            http=client_http,
        )
    assert result.ok, result.to_json()
    assert result.upload_api == "session"
    # Each file's status was asked again after its `202`, then the session's after its own.
    polled_files = [p for p in deferring.polled if "/files/" in p]
    polled_sessions = [p for p in deferring.polled if "/files/" not in p]
    assert len(polled_files) == len(paths)
    assert len(polled_sessions) == 1
    assert deferring.deferred == set()  # no deferral was left unasked
    assert visible(http, "deferred-session", "1.0") == sha256s(paths)
