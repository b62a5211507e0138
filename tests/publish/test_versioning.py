"""Version policy: valid versions, the tag that names them, and always a step forward."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from packaging.version import Version

from keyless.publish.errors import PublishError
from keyless.publish.project import current_git_tag, version_of_tag
from keyless.publish.versioning import (
    IndexVersions,
    check_progression,
    check_tag,
    fetch_versions,
    parse_version,
    versions_from_simple_json,
)
from tests.conftest import git


@pytest.mark.parametrize("version", ["1.2.0", "1.2", "2!1.0", "1.0.post1", "1.0.dev3", "1.0rc1"])
def test_pep440_versions_pass(version: str) -> None:
    assert parse_version(version) == Version(version)


@pytest.mark.parametrize("version", ["one", "1.2.x", "", "1..2", "latest"])
def test_invalid_versions_are_refused(version: str) -> None:
    with pytest.raises(PublishError, match=r"not a valid version \(PEP 440\)") as raised:
        parse_version(version)
    assert raised.value.hint


@pytest.mark.parametrize("version", ["1.2.0", "0.1.0", "1.2.0rc1", "1.2.0-rc.1", "10.0.3b2"])
def test_semver_shapes_pass(version: str) -> None:
    parse_version(version, "semver")


@pytest.mark.parametrize("version", ["1.2", "1.2.0.1", "1!1.2.0", "1.2.0.post1", "1.2.0+local"])
def test_non_semver_shapes_are_refused(version: str) -> None:
    with pytest.raises(PublishError, match="not a SemVer version"):
        parse_version(version, "semver")


def test_unknown_scheme() -> None:
    with pytest.raises(PublishError, match="unknown version-scheme 'calver'"):
        parse_version("1.0", "calver")


def test_tag_must_name_the_version() -> None:
    check_tag(None, "1.2.0")
    check_tag("1.2.0", "1.2.0")
    check_tag("v1.2.0", "1.2.0")
    check_tag("v1.2", "1.2.0")
    with pytest.raises(
        PublishError, match=r"on tag 'v1\.3\.0', but the project's version is 1\.2\.0"
    ):
        check_tag("v1.3.0", "1.2.0")
    with pytest.raises(PublishError, match="on tag 'release-candidate'"):
        check_tag("release-candidate", "1.2.0")
    assert version_of_tag("V2.0") == Version("2.0")
    assert version_of_tag("nightly") is None


def test_current_tag_from_git(tmp_path: Path) -> None:
    assert current_git_tag(tmp_path) is None  # not a repository
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-qm", "one")
    assert current_git_tag(tmp_path) is None  # a commit without a tag
    git(tmp_path, "tag", "v1.0.0")
    assert current_git_tag(tmp_path) == "v1.0.0"
    (tmp_path / "f").write_text("y")
    git(tmp_path, "commit", "-qam", "two")
    assert current_git_tag(tmp_path) is None  # moved past the tag


def page(*files: tuple[str, bool], versions: list[str] | None = None) -> dict[str, object]:
    document: dict[str, object] = {
        "meta": {"api-version": "1.1"},
        "name": "demo",
        "files": [{"filename": name, "yanked": yanked} for name, yanked in files],
    }
    if versions is not None:
        document["versions"] = versions
    return document


def test_versions_from_the_simple_json() -> None:
    found = versions_from_simple_json(
        page(
            ("demo-1.0.0.tar.gz", False),
            ("demo-1.0.0-py3-none-any.whl", False),
            ("demo-2.0.0.tar.gz", "broken"),  # type: ignore[arg-type]
            ("demo-1.5.0-py3-none-any.whl", True),
            ("demo-1.5.0.tar.gz", False),  # one file not yanked: the release is live
            versions=["1.0.0", "1.5.0", "2.0.0", "3.0.0"],
        )
    )
    assert found.all == {Version(v) for v in ("1.0.0", "1.5.0", "2.0.0", "3.0.0")}
    assert found.live == {Version("1.0.0"), Version("1.5.0")}
    assert found.newest == Version("1.5.0")


def test_a_malformed_simple_json_has_no_versions() -> None:
    found = versions_from_simple_json({"files": 5, "versions": 7})
    assert found.all == set()
    assert found.newest is None


def test_progression() -> None:
    existing = IndexVersions(
        all=frozenset({Version("1.0.0"), Version("1.1.0"), Version("2.0.0")}),
        live=frozenset({Version("1.0.0"), Version("1.1.0")}),  # 2.0.0 yanked
    )
    check_progression("1.2.0", existing, "prod")
    check_progression("1.2.0rc1", existing, "prod")
    with pytest.raises(PublishError, match=r"not greater than 1\.1\.0, the newest release on prod"):
        check_progression("1.0.5", existing, "prod")
    with pytest.raises(PublishError, match=r"not greater than 1\.1\.0"):
        check_progression("1.1.0rc1", existing, "prod")
    with pytest.raises(PublishError, match="already on prod"):
        check_progression("1.1", existing, "prod")  # 1.1 is 1.1.0
    with pytest.raises(PublishError, match="already on prod"):
        check_progression("2.0.0", existing, "prod")  # yanked, but the version is taken
    check_progression("0.1", IndexVersions(frozenset(), frozenset()), "prod")


def test_fetch_versions_over_http() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/prod/simple/my-demo/":
            return httpx.Response(200, json=page(("my_demo-1.0.tar.gz", False)))
        if request.url.path == "/prod/simple/html-only/":
            return httpx.Response(200, text="<html></html>")
        if request.url.path == "/prod/simple/broken/":
            return httpx.Response(500)
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        url = "https://user:secret@index.example/prod/simple/"
        assert fetch_versions(http, url, "My_Demo").newest == Version("1.0")
        assert seen[0].headers["accept"] == "application/vnd.pypi.simple.v1+json"
        assert fetch_versions(http, url, "new-project").all == frozenset()
        with pytest.raises(PublishError, match="did not answer with PEP 691 JSON") as raised:
            fetch_versions(http, url, "html-only")
        assert "secret" not in str(raised.value)
        with pytest.raises(PublishError, match="answered 500"):
            fetch_versions(http, url, "broken")
