"""`keyless publish` through PEP 694 upload sessions, and its fallback to the legacy API on an
index without them (a stub index here; the session tests drive a live keyless server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyless.cli.main import main
from keyless.publish.session import upload_root
from tests.builders import build_sdist, build_wheel, write_dist

from .conftest import StubIndex


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
