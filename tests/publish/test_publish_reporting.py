"""The CLI's reporters (plain, rich, GitHub, GitLab) and `keyless publish` run in-process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from keyless.cli.main import main
from keyless.cli.reporting import (
    GitHubReporter,
    GitLabReporter,
    PlainReporter,
    RichReporter,
    make_reporter,
    strip_ansi,
)
from keyless.publish import FileResult, PublishError
from tests.builders import build_sdist, build_wheel, write_dist

from .conftest import Answer, StubIndex


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_reporter_suits_where_it_runs() -> None:
    tty = FakeTTY()
    assert type(make_reporter({}, stream=tty)) is RichReporter
    assert type(make_reporter({"CI": "true"}, stream=tty)) is PlainReporter
    assert type(make_reporter({}, stream=io.StringIO())) is PlainReporter
    assert type(make_reporter({"TERM": "dumb"}, stream=tty)) is PlainReporter
    assert type(make_reporter({"GITHUB_ACTIONS": "true"}, stream=tty)) is GitHubReporter
    assert type(make_reporter({"GITLAB_CI": "true"})) is GitLabReporter


def test_masked_secrets_never_print() -> None:
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.mask("keyless-s3cr3t-token")
    reporter.info("sending keyless-s3cr3t-token to the index")
    reporter.error(PublishError("refused keyless-s3cr3t-token", hint="not keyless-s3cr3t-token"))
    assert "s3cr3t" not in out.getvalue()
    assert out.getvalue().count("***") == 3


def test_github_masks_groups_and_annotates() -> None:
    out = io.StringIO()
    reporter = GitHubReporter(out)
    reporter.mask("keyless-s3cr3t-token")
    reporter.stage("Uploading")
    reporter.file_done(
        FileResult("demo-1.0.tar.gz", "failed", None, "ab" * 32, 10, "400 Bad: 50% off\nline 2")
    )
    reporter.error(PublishError("boom: keyless-s3cr3t-token", context={"file": "/x/demo.whl"}))
    reporter.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "::add-mask::keyless-s3cr3t-token"
    assert "::group::Uploading" in lines
    assert lines[-1] == "::endgroup::"
    assert "::error title=keyless publish%3A demo-1.0.tar.gz::400 Bad: 50%25 off%0Aline 2" in lines
    assert "::error title=keyless publish%3A demo.whl::boom: ***" in lines
    assert sum("keyless-s3cr3t-token" in line for line in lines) == 1  # the mask command only


def test_gitlab_sections_open_and_close() -> None:
    out = io.StringIO()
    reporter = GitLabReporter(out)
    reporter.stage("Checking")
    reporter.info("fine")
    reporter.stage("Uploading")
    reporter.close()
    text = out.getvalue()
    assert text.count("section_start:") == 2
    assert text.count("section_end:") == 2
    assert "keyless_publish_1[collapsed=false]\r\x1b[0K==> Checking" in text


def test_rich_progress_runs_to_the_end() -> None:
    out = FakeTTY()
    reporter = RichReporter(out)
    reporter.stage("Uploading")
    reporter.file_started("demo-1.0.tar.gz", 1000)
    for sent in (100, 600, 1000):
        reporter.file_progress("demo-1.0.tar.gz", sent)
    reporter.file_done(FileResult("demo-1.0.tar.gz", "uploaded", "https://x/f", "ab", 1000))
    reporter.close()
    text = strip_ansi(out.getvalue())
    assert "==> Uploading" in text
    assert "uploaded     demo-1.0.tar.gz  https://x/f" in text


@pytest.fixture
def dists(tmp_path: Path) -> list[Path]:
    return [
        write_dist(tmp_path, *build_wheel("cli-demo", "1.0")),
        write_dist(tmp_path, *build_sdist("cli-demo", "1.0")),
    ]


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "CI", "KEYLESS_REPOSITORY_URL", "TWINE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KEYLESS_TOKEN", "keyless-cli-token")


@pytest.mark.usefixtures("token_env")
def test_cli_publishes_and_prints_json(
    stub: StubIndex, dists: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["publish", "--repository-url", stub.upload_url, "--json", *map(str, dists)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["ok"] is True
    assert [f["status"] for f in document["files"]] == ["uploaded", "uploaded"]
    assert "keyless-cli-token" not in captured.out + captured.err
    assert "published: 2 uploaded" in captured.err


@pytest.mark.usefixtures("token_env")
def test_cli_exit_status_is_1_when_a_file_fails(
    stub: StubIndex, dists: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    stub.script = [Answer(400, body=b'{"message": "Invalid metadata"}')]
    code = main(["publish", "--repository-url", stub.upload_url, *map(str, dists)])
    captured = capsys.readouterr()
    assert code == 1
    assert "Invalid metadata" in captured.err
    assert "NOT published" in captured.err


@pytest.mark.usefixtures("token_env")
def test_cli_json_error_before_any_upload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_dist(tmp_path, "cli_demo-1.0-py3-none-any.whl", b"not a zip")
    code = main(["publish", "--json", "--repository-url", "https://h.example/legacy/", str(bad)])
    captured = capsys.readouterr()
    assert code == 1
    document = json.loads(captured.out)
    assert set(document) == {"ok", "files", "error"}
    assert set(document["error"]) == {"message", "hint", "context"}
    assert document["ok"] is False
    assert document["files"] == []
    assert "cli_demo-1.0-py3-none-any.whl" in document["error"]["message"]
    assert document["error"]["context"]["file"] == str(bad)


@pytest.mark.usefixtures("token_env")
@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--parallel", "0", "must be at least 1, not 0"),
        ("--retries", "-1", "must be at least 0, not -1"),
        ("--retries", "many", "'many' is not a whole number"),
    ],
)
def test_cli_refuses_bad_numbers_before_reading_anything(
    dists: list[Path], capsys: pytest.CaptureFixture[str], option: str, value: str, said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["publish", option, value, *map(str, dists)])
    assert exited.value.code == 2
    captured = capsys.readouterr().err
    assert f"argument {option}: {said}" in captured
    assert "Checking" not in captured


@pytest.mark.usefixtures("token_env")
@pytest.mark.parametrize("url", ["ftp://h.example/legacy/", "http://[::1/legacy/"])
def test_cli_refuses_a_bad_url_before_reading_anything(
    dists: list[Path], capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code = main(["publish", "--repository-url", url, *map(str, dists)])
    captured = capsys.readouterr().err
    assert code == 1
    assert "error:" in captured
    assert "Traceback" not in captured
    assert "Checking" not in captured
    assert "Credentials" not in captured
