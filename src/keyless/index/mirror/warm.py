"""`keyless mirror warm`: fetch projects' pages and files through a mirror index, so that it
has them before a build needs them (or before the upstream goes away: offline mode).

It goes through the server's own URLs, as pip would: the server fetches, checks and stores
each file exactly as for a client. For each requirement, the files of the newest version it
allows (not yanked) are downloaded, with their PEP 658 metadata files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ..pages import JSON_TYPE, METADATA_SUFFIX
from .merge import version_of


class WarmError(ValueError):
    """A requirement that cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Warmed:
    requirement: str
    version: str | None  # None: nothing fetched, `error` says why
    files: int = 0
    error: str | None = None


def read_requirements(lines: Iterable[str], where: str) -> list[Requirement]:
    """The requirements of a requirements file: one per line; comments, blank lines and pip
    options (`-r`, `--hash`, `-e`…) are skipped, and so are URLs and paths (nothing to warm)."""
    found = []
    for number, raw in enumerate(lines, 1):
        line = raw.split(" #", 1)[0].strip().rstrip("\\").strip()
        line = line.split(" --", 1)[0].strip()  # `name==1.0 --hash=sha256:...`
        if not line or line.startswith(("#", "-")) or "://" in line or line.startswith("."):
            continue
        try:
            found.append(Requirement(line))
        except InvalidRequirement as exc:
            raise WarmError(f"{where}:{number}: {line!r} is not a requirement ({exc}).") from None
    return found


def parse_requirement(text: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise WarmError(f"{text!r} is not a project name or requirement ({exc}).") from None


def warm_all(
    index_url: str, requirements: Iterable[Requirement], timeout: float
) -> Iterator[Warmed]:
    """`warm` each requirement in turn, over one connection pool."""
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for requirement in requirements:
            yield warm(client, index_url, requirement)


def warm(client: httpx.Client, index_url: str, requirement: Requirement) -> Warmed:
    """Fetch `requirement`'s page and the files of the newest version it allows."""
    name = canonicalize_name(requirement.name)
    page_url = urljoin(index_url.rstrip("/") + "/", f"{name}/")
    try:
        answer = client.get(page_url, headers={"accept": JSON_TYPE})
    except httpx.HTTPError as exc:
        return Warmed(str(requirement), None, error=f"{page_url}: {type(exc).__name__}")
    if answer.status_code != 200:
        return Warmed(str(requirement), None, error=f"{answer.status_code}: {_reason(answer)}")
    by_version: dict[Version, list[dict[str, Any]]] = {}
    for entry in answer.json().get("files", []):
        version = version_of(entry.get("filename", ""))
        if version is not None and entry.get("yanked", False) is False:
            by_version.setdefault(version, []).append(entry)
    allowed = list(requirement.specifier.filter(by_version))
    if not allowed:
        return Warmed(str(requirement), None, error="no file of a version it allows")
    version = max(allowed)
    for entry in by_version[version]:
        url = urljoin(str(answer.url), entry["url"])
        failed = _download(client, url, entry["hashes"].get("sha256"))
        if failed is None and entry.get("core-metadata"):
            failed = _download(client, url + METADATA_SUFFIX, entry["core-metadata"].get("sha256"))
        if failed is not None:
            return Warmed(str(requirement), str(version), error=f"{entry['filename']}: {failed}")
    return Warmed(str(requirement), str(version), len(by_version[version]))


def _download(client: httpx.Client, url: str, sha256: str | None) -> str | None:
    """None when the bytes arrived whole and hash as the page says, else why not."""
    digest = hashlib.sha256()
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                response.read()
                return f"{response.status_code}: {_reason(response)}"
            for chunk in response.iter_bytes():
                digest.update(chunk)
    except httpx.HTTPError as exc:
        return f"cut off ({type(exc).__name__})"
    if sha256 is not None and digest.hexdigest() != sha256:
        return "its bytes do not match the page's sha256"
    return None


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        return str(detail["message"])
    return response.text.strip()[:300]


def requirements_from_files(paths: Iterable[Path]) -> list[Requirement]:
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise WarmError(f"{path}: {exc.strerror or exc}.") from None
        found += read_requirements(text.splitlines(), str(path))
    return found
