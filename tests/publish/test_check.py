"""`keyless check`: every problem an index would refuse, and more, before any upload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keyless.publish.check import (
    CheckReport,
    check_dists,
    render_problem,
)
from keyless.publish.project import version_of_tag
from tests.builders import (
    build_sdist,
    build_wheel,
    core_metadata_text,
    forged_wheel,
    write_dist,
)
from tests.conftest import run_keyless

MARKDOWN = "# Demo\n\nSome **bold** text and a [link](https://example.org).\n"
GOOD: dict[str, Any] = {
    "summary": "A demo",
    "description": MARKDOWN,
    "description_content_type": "text/markdown",
    "classifiers": ["Programming Language :: Python :: 3"],
    "requires_python": ">=3.10",
}


def release(folder: Path, name: str = "demo-pkg", version: str = "1.0.0", **meta: Any) -> Path:
    """A wheel and an sdist of one release, built from the same metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = {**GOOD, **meta}
    write_dist(folder, *build_wheel(name, version, metadata=fields))
    write_dist(folder, *build_sdist(name, version, metadata=fields))
    return folder


def rules(report: CheckReport, level: str = "error") -> list[str]:
    return [f.rule for f in report.all_findings() if f.level == level]


def test_a_clean_release_passes(tmp_path: Path) -> None:
    report = check_dists([release(tmp_path / "dist")], git_tag="v1.0.0")
    assert report.ok, [f.message for f in report.errors]
    assert report.warnings == []
    assert [f.packagetype for f in report.files] == ["bdist_wheel", "sdist"]
    assert all(len(f.sha256 or "") == 64 for f in report.files)


def test_each_file_is_read_once_and_loaded_files_not_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyless.publish import check, localdist

    folder = release(tmp_path / "dist")
    reads: list[str] = []

    def counted(path: Path) -> localdist.LocalDist:
        reads.append(path.name)
        return localdist.load_dist(path)

    monkeypatch.setattr(check, "load_dist", counted)
    from_paths = check_dists([folder])
    assert sorted(reads) == sorted(f.filename for f in from_paths.files)
    reads.clear()
    loaded = [localdist.load_dist(path) for path in sorted(folder.iterdir())]
    from_loaded = check_dists(loaded)
    assert reads == []
    assert [f.to_dict() for f in from_loaded.files] == [f.to_dict() for f in from_paths.files]


def test_every_metadata_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    write_dist(
        tmp_path,
        *build_wheel(
            "demo-pkg",
            "1.0.0",
            metadata={
                **GOOD,
                "home_page": "not a url",
                "requires_python": "~=banana",
                "author_email": "not-an-address",
                "classifiers": ["Nonsense :: Invented", "License :: OSI Approved"],
            },
        ),
    )
    report = check_dists([tmp_path])
    messages = [f.message for f in report.errors]
    assert "classifiers" in rules(report)
    assert any("'Nonsense :: Invented' is not a valid classifier" in m for m in messages)
    assert any("not a valid url" in m for m in messages)
    assert any("requires-python" in m.lower() for m in messages)
    assert any("not-an-address" in m for m in messages)
    assert len(report.errors) >= 4
    assert all(f.fix for f in report.errors)


@pytest.mark.parametrize(
    ("content_type", "description", "renders"),
    [
        ("text/x-rst", "Title\n=====\n\nSome *emphasis* here.\n", True),
        ("text/x-rst", "Title\n=====\n\nbroken *emphasis\n", False),
        ("", "Title\n=====\n\n.. no-such-directive::\n", False),
        ("text/markdown", MARKDOWN, True),
        ("text/markdown; variant=CommonMark", MARKDOWN, True),
        ("text/plain", "*anything* `goes` here", True),
    ],
)
def test_the_description_must_render(
    tmp_path: Path, content_type: str, description: str, renders: bool
) -> None:
    meta = {**GOOD, "description": description, "description_content_type": content_type or None}
    write_dist(tmp_path, *build_wheel("demo-pkg", "1.0.0", metadata=meta))
    report = check_dists([tmp_path])
    found = [f for f in report.errors if f.rule == "description"]
    if renders:
        assert found == []
    else:
        [error] = found
        assert "does not render as reStructuredText" in error.message
        assert "line " in error.message  # docutils says where


def test_render_problem_names_the_markdown_variant() -> None:
    assert render_problem(MARKDOWN, "text/markdown; variant=Fancy") is not None
    assert render_problem(MARKDOWN, "text/markdown") is None


def test_missing_description_and_content_type_are_warnings(tmp_path: Path) -> None:
    write_dist(tmp_path, *build_wheel("demo-pkg", "1.0.0", metadata={"summary": "x"}))
    write_dist(
        tmp_path,
        *build_sdist(
            "demo-pkg", "1.0.0", metadata={"summary": "x", "description": "Plain rst body."}
        ),
    )
    report = check_dists([tmp_path])
    warnings = [f.message for f in report.warnings if f.rule == "description"]
    assert any("no long description" in m for m in warnings)
    assert any("No Description-Content-Type" in m for m in warnings)


def test_file_name_and_metadata_must_agree(tmp_path: Path) -> None:
    write_dist(tmp_path, *forged_wheel("demo-pkg", "1.0.0", inner_version="6.6.6"))
    report = check_dists([tmp_path])
    [error] = [f for f in report.errors if f.rule == "name-version"]
    assert "'1.0.0'" in error.message
    assert "'6.6.6'" in error.message
    assert error.file == "demo_pkg-1.0.0-py3-none-any.whl"


def test_file_names_must_be_normalized(tmp_path: Path) -> None:
    # PEP 625: the sdist of Demo.Pkg 1.0 is demo_pkg-1.0.tar.gz, nothing else.
    write_dist(tmp_path, *build_sdist("Demo.Pkg", "1.0", filename="Demo.Pkg-1.0.tar.gz"))
    report = check_dists([tmp_path])
    [error] = [f for f in report.errors if f.rule == "filename"]
    assert "demo_pkg-1.0.tar.gz" in error.message


def test_unknown_files_and_missing_paths_are_errors(tmp_path: Path) -> None:
    (tmp_path / "demo-1.0.zip").write_bytes(b"PK")
    report = check_dists([tmp_path / "demo-1.0.zip", tmp_path / "nope.whl"])
    assert rules(report) == ["filename", "file"]
    empty = check_dists([tmp_path / "empty-dir-that-exists"])
    assert rules(empty) == ["file"]
    (tmp_path / "dist").mkdir()
    assert rules(check_dists([tmp_path / "dist"])) == ["no-files"]


def test_size_limit(tmp_path: Path) -> None:
    folder = release(tmp_path / "dist")
    report = check_dists([folder], index_limits=600)
    errors = [f for f in report.errors if f.rule == "size"]
    assert errors
    assert all("over the index's limit of 600 bytes" in f.message for f in errors)
    assert check_dists([folder]).ok  # the default, 100 MiB


def test_git_tag_must_be_the_version(tmp_path: Path) -> None:
    folder = release(tmp_path / "dist", version="1.2.0")
    assert check_dists([folder], git_tag="v1.2.0").ok
    assert check_dists([folder], git_tag="1.2").ok  # PEP 440: 1.2 == 1.2.0
    wrong = check_dists([folder], git_tag="v1.2.1")
    [error] = wrong.errors
    assert error.rule == "git-tag"
    assert "'v1.2.1'" in error.message
    assert "1.2.0" in error.message
    odd = check_dists([folder], git_tag="nightly")
    assert odd.ok
    assert [f.rule for f in odd.warnings] == ["git-tag"]


def test_version_of_tag() -> None:
    assert str(version_of_tag("v2.0.0rc1")) == "2.0.0rc1"
    assert str(version_of_tag("V3")) == "3"
    assert version_of_tag("release-candidate") is None


def test_one_sdist_per_release(tmp_path: Path) -> None:
    folder = release(tmp_path / "dist")
    # A second sdist of the same release, under its old, non-normalized name.
    write_dist(folder, *build_sdist("demo-pkg", "1.0.0", filename="demo-pkg-1.0.0.tar.gz"))
    report = check_dists([folder])
    [error] = [f for f in report.errors if f.rule == "one-sdist"]
    assert "2 sdists" in error.message
    assert error.file is None


def test_wheel_and_sdist_must_describe_the_same_release(tmp_path: Path) -> None:
    write_dist(tmp_path, *build_wheel("demo-pkg", "1.0.0", metadata=GOOD))
    changed = {**GOOD, "requires_dist": ["httpx>=0.27"], "summary": "Another summary"}
    write_dist(tmp_path, *build_sdist("demo-pkg", "1.0.0", metadata=changed))
    [error] = [f for f in check_dists([tmp_path]).errors if f.rule == "wheel-sdist-agree"]
    assert "Summary" in error.message
    assert "Requires-Dist" in error.message

    # PEP 643: what the sdist marks Dynamic may differ per wheel.
    other = tmp_path / "dynamic"
    other.mkdir()
    write_dist(other, *build_wheel("demo-pkg", "1.0.0", metadata=GOOD))
    dynamic = {**GOOD, "requires_dist": ["httpx>=0.27"], "dynamic": ["Requires-Dist"]}
    write_dist(other, *build_sdist("demo-pkg", "1.0.0", metadata=dynamic))
    assert check_dists([other]).ok


def test_several_releases_in_one_folder_are_flagged(tmp_path: Path) -> None:
    folder = release(tmp_path / "dist", version="1.0.0")
    release(folder, version="1.1.0")
    report = check_dists([folder])
    assert report.ok
    assert "releases" in rules(report, "warning")


def test_private_policy_allows_local_versions(tmp_path: Path) -> None:
    write_dist(tmp_path, *build_wheel("demo-pkg", "1.0+local", metadata=GOOD))
    assert not check_dists([tmp_path]).ok
    assert check_dists([tmp_path], policy="private").ok


def keyless_check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_keyless("check", *args, cwd=cwd)


def test_cli_reports_and_exits_1_on_errors(tmp_path: Path) -> None:
    release(tmp_path / "dist")
    clean = keyless_check("--no-tag", cwd=tmp_path)  # default: dist/
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 file(s): 0 error(s), 0 warning(s)" in clean.stdout
    assert "ready to publish" in clean.stdout

    bad = tmp_path / "bad"
    (bad / "dist").mkdir(parents=True)
    write_dist(bad / "dist", "demo_pkg-1.0.0-py3-none-any.whl", _bad_classifier_wheel())
    write_dist(bad / "dist", *build_sdist("demo-pkg", "1.0.0", metadata=GOOD))
    failed = keyless_check("--no-tag", cwd=bad)
    assert failed.returncode == 1
    assert "ERROR [classifiers]" in failed.stdout
    assert "fix:" in failed.stdout

    as_json = keyless_check("--json", "--tag", "v9.9.9", "dist/*", cwd=bad)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert {f["rule"] for f in report["findings"]} >= {"git-tag", "wheel-sdist-agree"}
    assert len(report["files"]) == 2
    assert report["files"][0]["findings"][0]["rule"] == "classifiers"

    strict = keyless_check("--strict", "--no-tag", cwd=_only_warnings(tmp_path))
    assert strict.returncode == 1
    assert keyless_check("--no-tag", cwd=_only_warnings(tmp_path)).returncode == 0


def _bad_classifier_wheel() -> bytes:
    text = core_metadata_text(
        "demo-pkg", "1.0.0", **{**GOOD, "classifiers": ["Invented :: Classifier"]}
    )
    return build_wheel("demo-pkg", "1.0.0", metadata_text=text)[1]


def _only_warnings(tmp_path: Path) -> Path:
    folder = tmp_path / "warnings"
    if not folder.exists():
        (folder / "dist").mkdir(parents=True)
        write_dist(folder / "dist", *build_wheel("demo-pkg", "1.0.0", metadata={"summary": "x"}))
    return folder


def test_stricter_than_twine_check(tmp_path: Path) -> None:
    """twine check passes what PyPI would refuse; keyless check does not."""
    wheel = write_dist(tmp_path, "demo_pkg-1.0.0-py3-none-any.whl", _bad_classifier_wheel())
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert twine.returncode == 0, twine.stdout + twine.stderr
    assert not check_dists([wheel]).ok
