"""Version policy for a release: a valid version, the tag that matches it, and a step forward.

- the version is valid PEP 440; with `[tool.keyless] version-scheme = "semver"` it must also be
  SemVer-shaped: exactly MAJOR.MINOR.PATCH, optionally a pre-release (`1.2.0rc1`, written
  `1.2.0-rc.1` too) or a dev release, no epoch, post-release or local label;
- when the checkout sits on a tag (`git describe --tags --exact-match`), the tag is the version
  (a leading `v` allowed, compared under PEP 440: `v1.2` is `1.2.0`);
- the version is not on the production index yet, and is greater than its newest release that
  is not yanked (read from the index's PEP 691 JSON: `versions` and each file's `yanked`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from keyless.publish.errors import PublishError
from keyless.publish.indexclient import SIMPLE_JSON, file_version, redact
from keyless.publish.project import version_of_tag

SCHEMES = ("pep440", "semver")
# SemVer 2.0.0's shape as PEP 440 can say it: three numbers, then an optional pre-release.
_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-?(?:a|b|rc|alpha|beta|pre|preview|c)[.-]?\d*)?(?:[.-]?dev[.-]?\d*)?$",
    re.IGNORECASE,
)


def parse_version(version: str, scheme: str = "pep440") -> Version:
    """The version, checked against the scheme.

    Raises PublishError for an unknown scheme, an invalid PEP 440 version, or (semver) a
    version that is not MAJOR.MINOR.PATCH[-pre].
    """
    if scheme not in SCHEMES:
        raise PublishError(
            f"unknown version-scheme {scheme!r} in [tool.keyless]; use one of: "
            f"{', '.join(SCHEMES)}."
        )
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise PublishError(
            f"{version!r} is not a valid version (PEP 440).",
            hint="versions look like 1.2.0, 1.2.0rc1, 1.2.0.post1 or 2!1.0; see "
            "https://packaging.python.org/en/latest/specifications/version-specifiers/",
        ) from None
    if scheme == "semver" and (
        not _SEMVER.match(version.strip())
        or parsed.epoch
        or parsed.post is not None
        or parsed.local
        or len(parsed.release) != 3
    ):
        raise PublishError(
            f'{version!r} is not a SemVer version (version-scheme = "semver").',
            hint="use MAJOR.MINOR.PATCH, optionally with a pre-release such as 1.2.0rc1 "
            "(no epoch, post-release or local label).",
        )
    return parsed


def check_tag(tag: str | None, version: str) -> None:
    """Raises PublishError when on a tag that does not name `version` (leading `v` allowed)."""
    if tag is None:
        return
    named = version_of_tag(tag)
    if named is None or named != Version(version):
        raise PublishError(
            f"the checkout is on tag {tag!r}, but the project's version is {version}.",
            hint=f"tag the release commit v{version} (or set the version to match the tag), "
            "so the release and its tag name the same thing.",
            context={"tag": tag},
        )


@dataclass(frozen=True)
class IndexVersions:
    """What an index holds of a project: every version, and those not (wholly) yanked."""

    all: frozenset[Version]
    live: frozenset[Version]  # at least one file not yanked

    @property
    def newest(self) -> Version | None:
        """The newest release that is not yanked."""
        return max(self.live) if self.live else None

    def __contains__(self, version: object) -> bool:
        return version in self.all


def _list(value: object) -> list[Any]:
    # A field of a server's answer that should be a list; anything else counts as empty.
    return value if isinstance(value, list) else []


def versions_from_simple_json(document: Mapping[str, Any]) -> IndexVersions:
    """The versions of a PEP 691 project page (`versions` per PEP 700, else from file names)."""
    files = [f for f in _list(document.get("files")) if isinstance(f, Mapping)]
    by_version: dict[Version, list[bool]] = {}
    for entry in files:
        version = file_version(str(entry.get("filename", "")))
        if version is not None:
            by_version.setdefault(version, []).append(bool(entry.get("yanked")))
    listed: set[Version] = set(by_version)
    for raw in _list(document.get("versions")):
        try:
            listed.add(Version(str(raw)))
        except InvalidVersion:
            continue
    live = {v for v, yanked in by_version.items() if not all(yanked)}
    return IndexVersions(all=frozenset(listed), live=frozenset(live))


def check_progression(version: str, existing: IndexVersions, index_label: str) -> None:
    """Raises PublishError if `version` is already on the index, or not newer than its newest
    release that is not yanked."""
    wanted = Version(version)
    if wanted in existing:
        raise PublishError(
            f"version {version} is already on {index_label}.",
            hint="a released version never changes: bump the version for a new release.",
            context={"version": version},
        )
    newest = existing.newest
    if newest is not None and wanted <= newest:
        raise PublishError(
            f"version {version} is not greater than {newest}, the newest release on {index_label}.",
            hint=f"release a version after {newest} (or yank {newest} first if it was a mistake).",
            context={"version": version, "newest": str(newest)},
        )


def fetch_versions(http: httpx.Client, simple_url: str, name: str) -> IndexVersions:
    """What the index at `simple_url` (its simple API root) holds of project `name`.

    A project the index does not know holds nothing. Raises PublishError when the index
    cannot be reached or answers with an error or something other than PEP 691 JSON.
    """
    url = f"{simple_url.rstrip('/')}/{canonicalize_name(name)}/"
    shown = redact(url)
    try:
        answer = http.get(url, headers={"Accept": SIMPLE_JSON}, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise PublishError(
            f"cannot reach the index at {shown}: {exc}", context={"url": shown}
        ) from exc
    if answer.status_code == 404:
        return IndexVersions(all=frozenset(), live=frozenset())
    if answer.status_code != 200:
        raise PublishError(
            f"the index answered {answer.status_code} for {shown}.",
            hint="is this the simple API root of the index (…/simple/)?",
            context={"url": shown, "status": str(answer.status_code)},
        )
    try:
        document = answer.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise PublishError(
            f"{shown} did not answer with PEP 691 JSON.",
            hint="the index must serve application/vnd.pypi.simple.v1+json (keyless, PyPI and "
            "TestPyPI do).",
            context={"url": shown},
        )
    return versions_from_simple_json(document)
