"""`publish()` against a scripted stub index: lookups by hash, retries, order, parallelism."""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.publish import (
    ApiTokenCredentials,
    Backoff,
    FileResult,
    PublishError,
    RecordingReporter,
    UploadOptions,
    publish,
)
from tests.builders import build_sdist, build_wheel, write_dist

from .conftest import Answer, StubIndex

FAST = Backoff(base=0.01, cap=0.05)


class CountingCredentials:
    """An API token that counts how often it was asked for, and whether it was closed."""

    source = "api-token"

    def __init__(self, value: str = "keyless-test-token") -> None:
        self.value = value
        self.calls = 0
        self.closed = False
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            self.calls += 1
        return self.value

    def close(self) -> None:
        self.closed = True


class RenewingCredentials(CountingCredentials):
    """Minted-token credentials: `renew()` hands out the next token."""

    source = "trusted-publishing"

    def __init__(self) -> None:
        super().__init__("minted-1")
        self.renewals = 0

    def renew(self) -> str:
        self.renewals += 1
        self.value = f"minted-{self.renewals + 1}"
        return self.value


def release(
    folder: Path, name: str = "stub-demo", version: str = "1.0", wheels: int = 1
) -> list[Path]:
    tags = [
        "py3-none-any",
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp312-cp312-win_amd64",
        "cp313-cp313-macosx_11_0_arm64",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    paths = [write_dist(folder, *build_wheel(name, version, tag=tags[i])) for i in range(wheels)]
    return [*paths, write_dist(folder, *build_sdist(name, version))]


def run(
    stub: StubIndex,
    paths: list[Path],
    *,
    credentials: CountingCredentials | None = None,
    dry_run: bool = False,
    **options: Any,
) -> tuple[list[FileResult], RecordingReporter, CountingCredentials]:
    """`publish` to the stub; `options` are UploadOptions' (backoff FAST unless given)."""
    credentials = credentials or CountingCredentials()
    reporter = RecordingReporter()
    with httpx.Client(timeout=10) as http:
        result = publish(
            paths,
            stub.upload_url,
            credentials=credentials,
            reporter=reporter,
            http=http,
            options=UploadOptions(**{"backoff": FAST, **options}),
            dry_run=dry_run,
        )
    assert result.ok == all(
        f.status in ("uploaded", "exists", "would-upload") for f in result.files
    )
    return result.files, reporter, credentials


def statuses(files: list[FileResult]) -> dict[str, str]:
    return {f.filename: f.status for f in files}


def test_uploads_wheels_then_the_sdist_with_a_token_per_file(
    stub: StubIndex, tmp_path: Path
) -> None:
    paths = release(tmp_path, wheels=3)
    files, reporter, credentials = run(stub, paths)
    assert set(statuses(files).values()) == {"uploaded"}
    assert [p.filename for p in stub.posts][-1] == "stub_demo-1.0.tar.gz"
    # Fetched before each file, and for the one request that asks for Upload 2.0 (404 here).
    assert credentials.calls == 5
    assert stub.other_posts == ["/x/upload/2.0/"]
    assert not credentials.closed  # the caller owns the credentials
    assert all(p.authorization.startswith("Basic ") for p in stub.posts)
    # Where each file now lives, from the index's own listing.
    assert all(f.url and f.url.endswith(f.filename) for f in files)
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert {f.filename: f.sha256 for f in files} == sha
    # Streamed with progress, ending at the full size.
    progress = reporter.of("file_progress")
    for path in paths:
        assert (path.name, path.stat().st_size) in progress


def test_identical_files_already_there_are_not_uploaded(stub: StubIndex, tmp_path: Path) -> None:
    paths = release(tmp_path)
    for path in paths:
        stub.store(path.name, path.read_bytes())
    files, _, _ = run(stub, paths)
    assert set(statuses(files).values()) == {"exists"}
    assert stub.posts == []
    assert all(f.url for f in files)


def test_skip_existing_off_makes_an_existing_file_a_failure(
    stub: StubIndex, tmp_path: Path
) -> None:
    paths = release(tmp_path)
    stub.store(paths[0].name, paths[0].read_bytes())
    files, _, _ = run(stub, paths, skip_existing=False)
    assert statuses(files)[paths[0].name] == "failed"


def test_different_bytes_under_the_same_name_fail_loudly_and_hold_the_sdist(
    stub: StubIndex, tmp_path: Path
) -> None:
    paths = release(tmp_path)
    stub.store(paths[0].name, b"other bytes")
    files, _, _ = run(stub, paths)
    wheel, sdist = files
    assert wheel.status == "failed"
    assert hashlib.sha256(b"other bytes").hexdigest() in (wheel.error or "")
    assert wheel.sha256 in (wheel.error or "")
    assert sdist.status == "failed"
    assert "not uploaded because" in (sdist.error or "")
    assert stub.posts == []  # neither was sent


def test_a_failed_wheel_holds_back_only_its_own_releases_sdist(
    stub: StubIndex, tmp_path: Path
) -> None:
    broken = release(tmp_path / "a", name="stub-a")
    fine = release(tmp_path / "b", name="stub-b")
    stub.script = [Answer(400, body=b'{"message": "Invalid wheel"}')]
    files, _, _ = run(stub, [broken[0], fine[0], broken[1], fine[1]], parallel=1)
    assert statuses(files) == {
        "stub_a-1.0-py3-none-any.whl": "failed",
        "stub_b-1.0-py3-none-any.whl": "uploaded",
        "stub_a-1.0.tar.gz": "failed",
        "stub_b-1.0.tar.gz": "uploaded",
    }
    assert "Invalid wheel" in (files[0].error or "")
    assert [p.filename for p in stub.posts] == [
        "stub_a-1.0-py3-none-any.whl",
        "stub_b-1.0-py3-none-any.whl",
        "stub_b-1.0.tar.gz",
    ]


def test_retry_after_is_honoured_then_the_upload_succeeds(stub: StubIndex, tmp_path: Path) -> None:
    wheel = release(tmp_path)[0]
    stub.script = [Answer(503, headers={"retry-after": "1"}, body=b'{"message": "busy"}')]
    started = time.monotonic()
    files, reporter, _ = run(stub, [wheel])
    assert statuses(files) == {wheel.name: "uploaded"}
    assert len(stub.posts) == 2
    assert stub.posts[1].at - stub.posts[0].at >= 1.0
    assert time.monotonic() - started < 10
    assert any("503" in w and "retry 1 of 5" in w for w in reporter.of("warning"))


def test_retry_after_as_an_http_date(stub: StubIndex, tmp_path: Path) -> None:
    wheel = release(tmp_path)[0]
    when = email.utils.formatdate(time.time() + 42, usegmt=True)
    stub.script = [Answer(429, headers={"retry-after": when}), Answer(503)]
    slept: list[float] = []
    files, _, _ = run(stub, [wheel], backoff=Backoff(base=0.01, cap=0.05, sleep=slept.append))
    assert statuses(files) == {wheel.name: "uploaded"}
    assert 40 <= slept[0] <= 43  # the server's date, not our backoff
    assert slept[1] <= 0.05
    assert len(stub.posts) == 3


def test_retries_are_bounded(stub: StubIndex, tmp_path: Path) -> None:
    wheel = release(tmp_path)[0]
    stub.script = [Answer(502, body=b'{"message": "bad gateway"}') for _ in range(10)]
    files, _, _ = run(stub, [wheel], retries=2)
    assert files[0].status == "failed"
    assert "gave up after 3 attempts" in (files[0].error or "")
    assert len(stub.posts) == 3


def test_a_5xx_whose_upload_landed_is_a_success_without_resending(
    stub: StubIndex, tmp_path: Path
) -> None:
    wheel = release(tmp_path)[0]
    stub.script = [Answer(500, land=True)]
    files, _, _ = run(stub, [wheel])
    assert statuses(files) == {wheel.name: "uploaded"}
    assert len(stub.posts) == 1


def test_a_409_is_decided_by_hash(stub: StubIndex, tmp_path: Path) -> None:
    wheel, sdist = release(tmp_path)
    # Someone uploaded the identical wheel meanwhile; the sdist's name got different bytes.
    stub.script = [Answer(409, land=True), Answer(409, body=b'{"message": "conflict"}')]
    original = stub.store

    def store_other(filename: str, content: bytes) -> None:
        original(filename, content if filename.endswith(".whl") else b"not the sdist")

    stub.store = store_other  # type: ignore[method-assign]
    stub.script[1].land = True
    files, _, _ = run(stub, [wheel, sdist])
    assert statuses(files) == {wheel.name: "exists", sdist.name: "failed"}
    assert "DIFFERENT content" in (files[1].error or "")
    assert hashlib.sha256(b"not the sdist").hexdigest() in (files[1].error or "")


def test_each_files_metadata_is_parsed_once_whatever_the_attempts(
    stub: StubIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload form is made when a file is read, not again for every attempt (that cost
    ~0.5 ms of CPU per upload); every attempt sends the same form."""
    from keyless.publish import localdist

    paths = release(tmp_path, wheels=2)
    parsed: list[bytes] = []
    from packaging.metadata import parse_email as parse  # the parser localdist calls

    def counted(data: bytes) -> Any:
        parsed.append(data)
        return parse(data)

    monkeypatch.setattr(localdist, "parse_email", counted)
    stub.script = [Answer(503), Answer(503)]
    files, _, _ = run(stub, paths, parallel=1)
    assert set(statuses(files).values()) == {"uploaded"}
    assert len(stub.posts) == 5
    assert len(parsed) == 3
    first = [post for post in stub.posts if post.filename == stub.posts[0].filename]
    assert len(first) == 3
    assert first[0].fields == first[1].fields == first[2].fields


def test_a_dropped_connection_is_retried(stub: StubIndex, tmp_path: Path) -> None:
    wheel = release(tmp_path)[0]
    stub.script = [Answer(drop=True)]
    files, reporter, _ = run(stub, [wheel])
    assert statuses(files) == {wheel.name: "uploaded"}
    assert len(stub.posts) == 2
    assert reporter.of("warning")


def test_other_4xx_fail_at_once_with_the_servers_message(stub: StubIndex, tmp_path: Path) -> None:
    wheel = release(tmp_path)[0]
    stub.script = [Answer(403, body=b'{"message": "Invalid API Token: token is expired"}')]
    files, _, _ = run(stub, [wheel])
    assert files[0].status == "failed"
    assert files[0].error == "403 Forbidden: Invalid API Token: token is expired"
    assert len(stub.posts) == 1


def test_a_refused_minted_token_is_renewed_once(stub: StubIndex, tmp_path: Path) -> None:
    wheel = release(tmp_path)[0]
    stub.script = [Answer(403, body=b'{"message": "Invalid API Token: token is expired"}')]
    credentials = RenewingCredentials()
    files, reporter, _ = run(stub, [wheel], credentials=credentials)
    assert statuses(files) == {wheel.name: "uploaded"}
    assert credentials.renewals == 1
    import base64

    sent = [base64.b64decode(p.authorization.split()[1]).decode() for p in stub.posts]
    assert sent == ["__token__:minted-1", "__token__:minted-2"]
    assert any("minting a new one" in w for w in reporter.of("warning"))


def test_dry_run_looks_up_and_uploads_nothing(stub: StubIndex, tmp_path: Path) -> None:
    paths = release(tmp_path)
    stub.store(paths[1].name, paths[1].read_bytes())
    files, _, credentials = run(stub, paths, dry_run=True)
    assert statuses(files) == {paths[0].name: "would-upload", paths[1].name: "exists"}
    assert stub.posts == []
    assert credentials.calls == 0
    assert any(g.startswith("/x/simple/stub-demo/") for g in stub.gets)


def test_uploads_run_in_parallel_but_bounded(stub: StubIndex, tmp_path: Path) -> None:
    paths = release(tmp_path, wheels=4)
    stub.script = [Answer(delay=0.3) for _ in range(5)]
    files, _, _ = run(stub, paths, parallel=2)
    assert set(statuses(files).values()) == {"uploaded"}
    assert stub.max_in_flight == 2
    assert [p.filename for p in stub.posts][-1].endswith(".tar.gz")


def test_one_unreadable_file_stops_everything_before_any_upload(
    stub: StubIndex, tmp_path: Path
) -> None:
    paths = release(tmp_path)
    bad = write_dist(tmp_path, "stub_demo-1.0-py3-none-win32.whl", b"not a zip")
    with pytest.raises(PublishError) as caught, httpx.Client() as http:
        publish(
            [*paths, bad],
            stub.upload_url,
            credentials=CountingCredentials(),
            reporter=RecordingReporter(),
            http=http,
        )
    assert bad.name in caught.value.message
    assert stub.posts == []
    assert stub.gets == []


def test_all_unreadable_files_are_reported_together(tmp_path: Path) -> None:
    one = write_dist(tmp_path, "a-1.0-py3-none-any.whl", b"x")
    two = write_dist(tmp_path, "b-1.0.tar.gz", b"y")
    with pytest.raises(PublishError) as caught:
        publish(
            [one, two],
            "https://unused.example/legacy/",
            credentials=CountingCredentials(),
            reporter=RecordingReporter(),
        )
    assert "2 distributions cannot be published" in caught.value.message
    assert one.name in caught.value.message
    assert two.name in caught.value.message


def test_an_unreachable_index_fails_before_uploading(tmp_path: Path) -> None:
    from tests.conftest import free_port

    paths = release(tmp_path)
    with pytest.raises(PublishError) as caught:
        publish(
            paths,
            f"http://127.0.0.1:{free_port()}/x/legacy/",
            credentials=CountingCredentials(),
            reporter=RecordingReporter(),
            options=UploadOptions(retries=1, backoff=FAST),
        )
    assert "ConnectError" in caught.value.message


def test_result_json(stub: StubIndex, tmp_path: Path) -> None:
    paths = release(tmp_path)
    credentials = CountingCredentials()
    with httpx.Client() as http:
        result = publish(
            paths, stub.upload_url, credentials=credentials, reporter=RecordingReporter(), http=http
        )
    document = result.to_json()
    assert document["ok"] is True
    assert document["repository_url"] == stub.upload_url
    assert [f["filename"] for f in document["files"]] == [p.name for p in paths]
    assert set(document["files"][0]) == {"filename", "status", "url", "sha256", "size", "error"}
    assert credentials.token() == ApiTokenCredentials("keyless-test-token", origin="x").token()
