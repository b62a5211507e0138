"""Release notes cut out of the common changelog formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.publish.changelog import (
    extract_section,
    find_changelog,
    heading_version,
    release_notes,
)
from keyless.publish.errors import PublishError

KEEP_A_CHANGELOG = """\
# Changelog

All notable changes to this project will be documented in this file.

## [Unreleased]

- Nothing yet.

## [1.2.0] - 2026-01-01

### Added

- Promotion from staging to production.

### Fixed

- Retries honour `Retry-After`.

## [1.1.0] - 2025-06-01

- First public release.

[Unreleased]: https://example.com/compare/v1.2.0...HEAD
[1.2.0]: https://example.com/compare/v1.1.0...v1.2.0
[1.1.0]: https://example.com/releases/v1.1.0
"""


def test_keep_a_changelog_section_with_subheadings() -> None:
    heading, body = extract_section(KEEP_A_CHANGELOG, "1.2.0") or ("", "")
    assert heading == "[1.2.0] - 2026-01-01"
    assert body == (
        "### Added\n\n- Promotion from staging to production.\n\n### Fixed\n\n"
        "- Retries honour `Retry-After`."
    )


def test_last_section_leaves_out_link_definitions() -> None:
    assert extract_section(KEEP_A_CHANGELOG, "1.1.0") == (
        "[1.1.0] - 2025-06-01",
        "- First public release.",
    )


@pytest.mark.parametrize(
    "heading",
    [
        "## 1.2.0",
        "## v1.2.0",
        "## Version 1.2.0 (2026-01-01)",
        "## [v1.2.0](https://example.com/compare/v1.1.0...v1.2.0) (2026-01-01)",
        "# 1.2.0 / 2026-01-01",
        "### demo 1.2.0",
        "## 1.2 - 2026-01-01",  # 1.2 is 1.2.0 under PEP 440
    ],
)
def test_markdown_heading_styles(heading: str) -> None:
    level = heading.split(" ")[0]
    text = f"{heading}\n\n* the change\n\n{level} 1.1.0\n\n* older\n"
    assert extract_section(text, "1.2.0") == (heading.lstrip("# "), "* the change")


def test_markdown_code_fences_hide_headings() -> None:
    text = "## 1.2.0\n\n```sh\n# 1.1.0 is not a heading here\npip install demo\n```\n\n## 1.1.0\n"
    assert extract_section(text, "1.2.0") == (
        "1.2.0",
        "```sh\n# 1.1.0 is not a heading here\npip install demo\n```",
    )


CHANGES_RST = """\
=========
Changelog
=========

1.2.0 (2026-01-01)
==================

Features
--------

- Promotion.

Bugfixes
--------

- Retries.

v1.1.0
======

- First.
"""


def test_rst_underlined_titles() -> None:
    heading, body = extract_section(CHANGES_RST, "1.2.0") or ("", "")
    assert heading == "1.2.0 (2026-01-01)"
    assert body == "Features\n--------\n\n- Promotion.\n\nBugfixes\n--------\n\n- Retries."
    assert extract_section(CHANGES_RST, "1.1.0") == ("v1.1.0", "- First.")


def test_setext_markdown() -> None:
    text = "Changes\n=======\n\n2.0.0\n-----\n\nBig one.\n\n1.9.0\n-----\n\nSmall.\n"
    assert extract_section(text, "2.0.0") == ("2.0.0", "Big one.")


def test_missing_version_and_invalid_version() -> None:
    assert extract_section(KEEP_A_CHANGELOG, "3.0.0") is None
    assert extract_section("no headings at all", "1.0") is None
    with pytest.raises(PublishError, match="not a valid version"):
        extract_section(KEEP_A_CHANGELOG, "one")


def test_heading_version_skips_dates_and_words() -> None:
    assert str(heading_version("[1.2.0] - 2026-01-01")) == "1.2.0"
    assert str(heading_version("Release v2.0.0rc1")) == "2.0.0rc1"
    assert heading_version("Unreleased") is None
    assert heading_version("2026-01-01") is None


@pytest.mark.parametrize("name", ["CHANGELOG.md", "CHANGES.rst", "HISTORY.md", "changelog.md"])
def test_find_changelog_and_release_notes(tmp_path: Path, name: str) -> None:
    text = CHANGES_RST if name.endswith(".rst") else KEEP_A_CHANGELOG
    (tmp_path / name).write_text(text, encoding="utf-8")
    assert find_changelog(tmp_path) == tmp_path / name
    notes = release_notes(tmp_path, "1.2.0")
    assert notes is not None
    assert notes.path.name == name
    assert "Promotion" in notes.text


def test_no_changelog(tmp_path: Path) -> None:
    assert find_changelog(tmp_path) is None
    assert release_notes(tmp_path, "1.0") is None
