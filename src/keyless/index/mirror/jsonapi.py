"""PyPI's JSON API document of a project the index knows only from its upstream's page.

A simple page says much less than PyPI's JSON API does: each file's name, sha256, size and
upload time when given, Requires-Python and yank, and the project's versions. The document
gives exactly that, every file at this server's mirror URL and marked `_source: "upstream"`
(merge.py); the rest of `info` is what PyPI gives for a field a release does not have (null or
an empty list), never a guess. `last_serial` and the download counts, which an upstream's page
does not give, are -1, as PyPI's download counts are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from packaging.metadata import Metadata, RawMetadata
from packaging.version import InvalidVersion

from keyless.dists.versions import canonical_version, parse_version

from ..catalog import latest_release, release_for, version_key
from ..uploads import release_info
from .merge import json_api_files
from .upstream import UpstreamPage

UNKNOWN = -1


@dataclass(frozen=True)
class _Release:
    """A version of the upstream's page, as `latest_release` and `release_for` compare them."""

    version: str
    canonical_version: str
    yanked: bool  # every file of it is (PEP 592 yanks files; PyPI yanks releases)


def upstream_document(
    page: UpstreamPage, version: str | None, url: Callable[[str, str], str]
) -> dict[str, Any] | None:
    """The JSON API's answer for the project of `page`: of its release `version`, else of its
    latest (PyPI's choice: catalog.latest_release), with all releases. None when there is no
    such release. `url(sha256, filename)` is where this server serves a file."""
    quarantined = page.status[0] == "quarantined"  # PEP 792: it offers nothing to install
    files = {} if quarantined else json_api_files(page, url)
    # Versions the page lists without files are releases too (PyPI lists them, empty).
    releases: dict[str, list[dict[str, Any]]] = {v: [] for v in _valid(page.versions)}
    releases.update(files)
    releases = dict(sorted(releases.items(), key=lambda item: version_key(item[0])))
    rows = [
        _Release(v, canonical_version(v), bool(entries) and all(e["yanked"] for e in entries))
        for v, entries in releases.items()
    ]
    release = latest_release(rows) if version is None else release_for(rows, version)
    if release is None:
        return None
    urls = releases[release.version]
    document: dict[str, Any] = {
        "info": _info(page.name, release, urls),
        "last_serial": UNKNOWN,
    }
    if version is None:
        document["releases"] = releases
    document.update(urls=urls, vulnerabilities=[])
    return document


def _info(name: str, release: _Release, urls: list[dict[str, Any]]) -> dict[str, Any]:
    """The fields the index's own releases have (uploads.release_info), unknown but for the
    name, the version, and Requires-Python when all its files give the same."""
    # The keys of metadata that says nothing; the name goes in after, as packaging refuses a
    # name that is not a valid project's, which an upstream may still serve a page for.
    nothing: RawMetadata = {"metadata_version": "2.1", "name": "unknown", "version": "0"}
    info = release_info(Metadata.from_raw(nothing))
    requires = {entry["requires_python"] for entry in urls}
    info.update(
        name=name,
        version=release.version,
        requires_python=requires.pop() if len(requires) == 1 else None,
        package_url=None,  # the web UI has no page of an upstream project
        project_url=None,
        release_url=None,
        bugtrack_url=None,
        docs_url=None,
        downloads={"last_day": UNKNOWN, "last_month": UNKNOWN, "last_week": UNKNOWN},
        yanked=release.yanked,
        yanked_reason=next((e["yanked_reason"] for e in urls if e["yanked_reason"]), None)
        if release.yanked
        else None,
    )
    return info


def _valid(versions: tuple[str, ...]) -> list[str]:
    """The page's versions that are PEP 440's, spelled as their files' are read (merge.py)."""
    valid = []
    for v in versions:
        try:
            valid.append(str(parse_version(v)))
        except InvalidVersion:
            continue  # nothing can be installed from it
    return valid
