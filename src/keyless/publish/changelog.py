"""The release notes of one version, cut out of the project's changelog.

Finds CHANGELOG / CHANGES / HISTORY / NEWS (Markdown, reStructuredText or plain text) and returns
the section whose heading names the version. Headings understood:

- Markdown ATX: `## [1.2.0] - 2026-01-01` (Keep a Changelog), `## 1.2.0`, `### v1.2.0 (2026-01-01)`,
  `## [v1.2.0](https://…/compare/v1.1.0...v1.2.0)`, `# Version 1.2.0`, `## project 1.2.0`;
- Markdown setext and reStructuredText titles: a line underlined (and optionally overlined)
  with `=`, `-`, `~`, `^`, `"`, `'`, `` ` ``, `#`, `*`, `+`, `.`, `:` or `_`.

A heading names a version when its first version-like word (a leading `v` allowed) equals it
under PEP 440 (`1.2` is `1.2.0`). The section ends at the next heading of the same or a higher
level; Keep a Changelog's trailing link definitions (`[1.2.0]: https://…`) are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from keyless.publish.errors import PublishError

CHANGELOG_FILES: tuple[str, ...] = tuple(
    f"{stem}{suffix}"
    for stem in ("CHANGELOG", "CHANGES", "HISTORY", "NEWS", "RELEASE_NOTES")
    for suffix in (".md", ".rst", ".txt", ".markdown", "")
)

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+")
_WORD = re.compile(r"[vV]?\d[\w.!+-]*")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")


@dataclass(frozen=True)
class ReleaseNotes:
    """The changelog section of one version."""

    path: Path
    heading: str  # the heading line's text, e.g. "[1.2.0] - 2026-01-01"
    text: str  # the section's body, without its heading; may be empty


@dataclass(frozen=True)
class _Heading:
    line: int  # index of the first line of the heading
    end: int  # index of the first line after it
    level: int
    title: str


def find_changelog(project_dir: Path) -> Path | None:
    """The project's changelog file, or None; case-insensitive, first match in CHANGELOG_FILES."""
    try:
        present = {p.name.lower(): p for p in Path(project_dir).iterdir() if p.is_file()}
    except OSError:
        return None
    for name in CHANGELOG_FILES:
        if (found := present.get(name.lower())) is not None:
            return found
    return None


def heading_version(title: str) -> Version | None:
    """The version a heading's text names: its first word that is a version, or None."""
    cleaned = _LINK_TARGET.sub("]", title)
    for word in _WORD.findall(cleaned.replace("[", " ").replace("]", " ")):
        word = word.rstrip(".:-_+!")
        if word[:1] in ("v", "V"):
            word = word[1:]
        try:
            return Version(word)
        except InvalidVersion:
            continue
    return None


def _headings(lines: list[str]) -> list[_Heading]:
    """Every heading with a level: ATX by its `#`s, underlined ones by order of first use."""
    found: list[_Heading] = []
    styles: list[tuple[str, bool]] = []  # (underline char, overlined): rst levels, in order
    fence: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        fenced = _FENCE.match(line)
        if fence is not None:
            if fenced and fenced.group(1)[0] == fence[0] and len(fenced.group(1)) >= len(fence):
                fence = None
            index += 1
            continue
        if fenced:
            fence = fenced.group(1)
            index += 1
            continue
        atx = _ATX.match(line)
        if atx:
            found.append(_Heading(index, index + 1, len(atx.group(1)), atx.group(2)))
            index += 1
            continue
        # An overlined title: rule, title, rule (the same character).
        if (
            _UNDERLINE.match(line)
            and index + 2 < len(lines)
            and lines[index + 1].strip()
            and lines[index + 2].rstrip() == line.rstrip()
        ):
            style = (line.strip()[0], True)
            if style not in styles:
                styles.append(style)
            title = lines[index + 1].strip()
            found.append(_Heading(index, index + 3, 100 + styles.index(style), title))
            index += 3
            continue
        # An underlined title: text, then a rule at least as long as... most of it.
        if (
            line.strip()
            and not _UNDERLINE.match(line)
            and index + 1 < len(lines)
            and _UNDERLINE.match(lines[index + 1])
            and len(lines[index + 1].strip()) >= min(3, len(line.strip()))
            and (index == 0 or not lines[index - 1].strip())
        ):
            style = (lines[index + 1].strip()[0], False)
            if style not in styles:
                styles.append(style)
            found.append(_Heading(index, index + 2, 100 + styles.index(style), line.strip()))
            index += 2
            continue
        index += 1
    return found


def extract_section(text: str, version: str) -> tuple[str, str] | None:
    """(heading, body) of the section for `version` in a changelog's text, or None.

    Raises PublishError if `version` is not a valid PEP 440 version.
    """
    try:
        wanted = Version(version)
    except InvalidVersion:
        raise PublishError(f"{version!r} is not a valid version (PEP 440).") from None
    lines = text.splitlines()
    headings = _headings(lines)
    for position, heading in enumerate(headings):
        if heading_version(heading.title) != wanted:
            continue
        end = len(lines)
        for later in headings[position + 1 :]:
            if later.level <= heading.level:
                end = later.line
                break
        body = lines[heading.end : end]
        while body and (not body[-1].strip() or _LINK_DEFINITION.match(body[-1])):
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        return heading.title, "\n".join(body)
    return None


def release_notes(project_dir: Path, version: str) -> ReleaseNotes | None:
    """The notes for `version` from the project's changelog; None without a changelog or a
    section for this version.

    Raises PublishError if `version` is invalid or the changelog cannot be read.
    """
    path = find_changelog(project_dir)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishError(
            f"{path.name}: cannot read the changelog: {exc}", context={"file": str(path)}
        ) from exc
    section = extract_section(text, version)
    if section is None:
        return None
    return ReleaseNotes(path=path, heading=section[0], text=section[1])
