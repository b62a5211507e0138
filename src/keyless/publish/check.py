"""`keyless check`: everything an index would refuse, found before the upload — and more.

Stricter than `twine check`: the core metadata is validated with ``packaging`` and keyless'
PyPI rules (every problem at once, not the first), the long description must render whatever
its content type, classifiers must exist and not be deprecated, file names must be the
normalized ones (PEP 625 sdists, PEP 427 wheels), the name and version in a file's name must
be the ones in its METADATA/PKG-INFO, files must fit under the index's size limit, the git tag
(when releasing from one) must be the version, and the wheels and the sdist of one release
must describe the same release.

    report = check_dists(["dist"], git_tag=current_git_tag())
    if not report.ok:
        for finding in report.all_findings():
            print(finding.level, finding.file, finding.message, finding.fix)

The functions here print nothing; they return findings for the caller to render.
"""

from __future__ import annotations

import email.message
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import readme_renderer.markdown
import readme_renderer.rst
import readme_renderer.txt
from packaging.metadata import parse_email
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from keyless.dists import (
    DistError,
    DistFilename,
    InvalidMetadata,
    Policy,
    check_artifact_agrees,
    check_filename_matches_project,
    metadata_from_form,
    parse_core_metadata,
    parse_dist_filename,
    read_core_metadata,
)
from keyless.dists.filenames import SDIST
from keyless.publish.errors import PublishError
from keyless.publish.localdist import LocalDist, load_dist, upload_fields
from keyless.publish.project import current_git_tag, version_of_tag

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "CheckReport",
    "FileCheck",
    "Finding",
    "check_dists",
    "current_git_tag",
    "find_dists",
]

Level = Literal["error", "warning"]

# PyPI's default per-file limit; a keyless index's own limit is per index.
DEFAULT_MAX_FILE_SIZE = 100 * 1024 * 1024
DIST_PATTERNS = ("*.whl", "*.tar.gz")
DESCRIPTION_HELP = "https://packaging.python.org/guides/making-a-pypi-friendly-readme/"
CLASSIFIERS_URL = "https://pypi.org/classifiers/"

# Fields that describe the release rather than one build of it: every file of a release must
# agree on them (an sdist may mark some Dynamic, PEP 643, and then its wheels may differ).
_RELEASE_FIELDS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("description", "Description"),
    ("description_content_type", "Description-Content-Type"),
    ("requires_python", "Requires-Python"),
    ("requires_dist", "Requires-Dist"),
    ("provides_extra", "Provides-Extra"),
    ("classifiers", "Classifier"),
    ("license", "License"),
    ("license_expression", "License-Expression"),
    ("keywords", "Keywords"),
    ("author", "Author"),
    ("author_email", "Author-email"),
    ("maintainer", "Maintainer"),
    ("maintainer_email", "Maintainer-email"),
    ("project_urls", "Project-URL"),
    ("home_page", "Home-page"),
)
_UNORDERED = frozenset({"requires_dist", "provides_extra", "classifiers", "keywords"})

_RENDERERS = {
    "text/plain": "plain text",
    "text/x-rst": "reStructuredText",
    "text/markdown": "Markdown",
}


@dataclass(frozen=True)
class Finding:
    """One problem: an ``error`` (the upload would fail or the release be wrong) or a
    ``warning`` (it would go through, but probably not as intended).

    ``rule`` names the check (e.g. ``metadata``, ``description``, ``git-tag``); ``file`` is the
    file name it is about, None when it concerns the set of files; ``fix`` says what to do.
    """

    level: Level
    rule: str
    message: str
    fix: str = ""
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data."""
        return {
            "level": self.level,
            "rule": self.rule,
            "file": self.file,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class FileCheck:
    """What was found about one file; ``name``/``version`` are None when unreadable."""

    path: Path
    filename: str
    packagetype: str | None = None
    name: str | None = None
    version: str | None = None
    size: int | None = None
    sha256: str | None = None
    findings: list[Finding] = field(default_factory=list)
    # The artifact's raw core metadata (as packaging's RawMetadata), for cross-file checks.
    raw_metadata: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """No error (warnings allowed)."""
        return not any(f.level == "error" for f in self.findings)

    def add(self, level: Level, rule: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(level, rule, message, fix, self.filename))

    def to_dict(self) -> dict[str, Any]:
        """The file's result as JSON-ready data."""
        return {
            "path": str(self.path),
            "filename": self.filename,
            "packagetype": self.packagetype,
            "name": self.name,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class CheckReport:
    """The result of `check_dists`: per-file findings and findings about the set."""

    files: list[FileCheck]
    findings: list[Finding] = field(default_factory=list)
    git_tag: str | None = None
    max_file_size: int = DEFAULT_MAX_FILE_SIZE

    def all_findings(self) -> list[Finding]:
        """Every finding, the files' first (in file order), then the set's."""
        return [f for file in self.files for f in file.findings] + list(self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.all_findings() if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.all_findings() if f.level == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings do not fail a check)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what `keyless check --json` prints)."""
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "git_tag": self.git_tag,
            "max_file_size": self.max_file_size,
            "files": [file.to_dict() for file in self.files],
            "findings": [f.to_dict() for f in self.findings],
        }


def find_dists(paths: Iterable[str | Path]) -> list[Path]:
    """The files to check: files as given, folders expanded to their wheels and sdists.

    Order is kept and duplicates (the same path twice) dropped. Never raises: a path that does
    not exist is kept, and `check_dists` reports it.
    """
    found: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            inside = sorted({p for pattern in DIST_PATTERNS for p in path.glob(pattern)})
            found.extend(p for p in inside if p.is_file())
        else:
            found.append(path)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)


def check_dists(
    paths: Iterable[str | Path | LocalDist],
    *,
    index_limits: int | None = None,
    git_tag: str | None = None,
    policy: str | Policy = "pypi",
) -> CheckReport:
    """Check distribution files as an index would, and more strictly.

    ``paths``: files, or folders whose ``*.whl``/``*.tar.gz`` are checked (see `find_dists`);
    a file already read with `load_dist` (a LocalDist) is not read and hashed again.
    ``index_limits``: the index's maximum file size in bytes (None: PyPI's 100 MiB).
    ``git_tag``: the tag being released (see `current_git_tag`); every version must equal it,
    a leading ``v`` aside. ``policy``: the index's policy profile (``pypi``, ``private``) or a
    `keyless.dists.Policy`.

    Every problem is a `Finding` in the report; the report is ``ok`` when none is an error.
    Raises ValueError only for an unknown policy profile.
    """
    rules = policy if isinstance(policy, Policy) else Policy.for_profile(policy)
    limit = DEFAULT_MAX_FILE_SIZE if index_limits is None else index_limits
    items = list(paths)
    loaded = {item.path: item for item in items if isinstance(item, LocalDist)}
    wanted = [item.path if isinstance(item, LocalDist) else item for item in items]
    files = [_check_file(path, rules, limit, loaded.get(path)) for path in find_dists(wanted)]
    report = CheckReport(files=files, git_tag=git_tag, max_file_size=limit)
    if not files:
        report.findings.append(
            Finding(
                "error",
                "no-files",
                "No distribution files to check.",
                "Build them first (`python -m build`), or name the files to check.",
            )
        )
        return report
    report.findings.extend(_check_set(files))
    if git_tag is not None:
        report.findings.extend(_check_tag(files, git_tag))
    return report


# ------------------------------------------------------------------------------- one file


def _check_file(path: Path, policy: Policy, limit: int, local: LocalDist | None) -> FileCheck:
    result = FileCheck(path=path, filename=path.name)
    if not path.is_file():
        result.add(
            "error",
            "file",
            f"{path} does not exist or is not a file.",
            "Build the distributions first (`python -m build`) or fix the path.",
        )
        return result
    result.size = path.stat().st_size
    try:
        dist = parse_dist_filename(path.name, policy)
    except DistError as exc:
        result.add(
            "error",
            "filename",
            exc.message,
            "Upload only wheels (.whl) and sdists (.tar.gz) as your build backend names them.",
        )
        return result
    result.packagetype = dist.packagetype
    result.name = dist.name
    result.version = str(dist.version)
    # Read and hashed once: the upload form check below needs the file as `publish` reads it.
    loaded: LocalDist | PublishError
    try:
        loaded = local or load_dist(path)
    except PublishError as exc:
        loaded = exc
    result.sha256 = loaded.sha256 if isinstance(loaded, LocalDist) else _sha256(path)
    if result.size > limit:
        result.add(
            "error",
            "size",
            f"{path.name} is {_size(result.size)}, over the index's limit of {_size(limit)}.",
            "Leave data and build artifacts out of the distribution, or ask the index's "
            "administrators for a higher limit for this project.",
        )
    try:
        data = (
            loaded.core_metadata
            if isinstance(loaded, LocalDist)
            else read_core_metadata(path, dist)
        )
    except DistError as exc:
        result.add(
            "error",
            "archive",
            exc.message,
            "Rebuild the file with your build backend; do not edit archives by hand.",
        )
        return result
    raw, _ = parse_email(data)
    result.raw_metadata = dict(raw)
    _check_metadata(result, data, policy)
    _check_names(result, dist, raw)
    if result.ok:
        _check_form(result, dist, policy, loaded)
    _check_description(result, raw)
    return result


def _check_form(
    result: FileCheck, dist: DistFilename, policy: Policy, loaded: LocalDist | PublishError
) -> None:
    """The upload form keyless publish would send must say what the file says."""
    if isinstance(loaded, PublishError):  # publish could not even read it
        result.add("error", "form", loaded.message, loaded.hint or "")
        return
    try:
        form: dict[str, list[str]] = {}
        for key, value in upload_fields(loaded):
            form.setdefault(key, []).append(value)
        check_artifact_agrees(metadata_from_form(form, policy), loaded.metadata, dist)
    except InvalidMetadata as exc:
        for message in exc.errors:
            result.add(
                "error",
                "form",
                f"the upload form made from this file is refused: {message}",
                "Rebuild the distribution with a current build backend.",
            )
    except DistError as exc:
        result.add("error", "form", exc.message, "Rebuild the distribution.")


def _check_metadata(result: FileCheck, data: bytes, policy: Policy) -> None:
    inside = "PKG-INFO" if result.packagetype == SDIST else "METADATA"
    try:
        parse_core_metadata(data, policy)
    except InvalidMetadata as exc:
        for message in exc.errors:
            if "classifier" in message.split(" See ", 1)[0].lower():
                result.add(
                    "error",
                    "classifiers",
                    message,
                    f"Use classifiers from {CLASSIFIERS_URL} (pyproject.toml "
                    "[project] classifiers).",
                )
            else:
                result.add(
                    "error",
                    "metadata",
                    f"{inside}: {message}",
                    "Fix the [project] table in pyproject.toml (or your build configuration) "
                    "and rebuild.",
                )


def _check_names(result: FileCheck, dist: DistFilename, raw: Mapping[str, Any]) -> None:
    inside = "PKG-INFO" if dist.packagetype == SDIST else "METADATA"
    name = raw.get("name")
    text_version = raw.get("version")
    version: Version | None = None
    if isinstance(text_version, str):
        try:
            version = Version(text_version)
        except InvalidVersion:
            version = None  # reported as a metadata error
    rebuild = "Rebuild the distribution; never rename a built file."
    if isinstance(name, str) and canonicalize_name(name) != dist.name:
        result.add(
            "error",
            "name-version",
            f"The file name says project {dist.name!r} but its {inside} says {name!r}.",
            rebuild,
        )
    if version is not None and version != dist.version:
        result.add(
            "error",
            "name-version",
            f"The file name says version '{dist.version}' but its {inside} says '{version}'.",
            rebuild,
        )
    agree = not any(f.rule == "name-version" for f in result.findings)
    if not isinstance(name, str) or version is None or not agree:
        return  # the normalization rules below assume the name and version agree
    try:
        check_filename_matches_project(dist, name, version)
    except DistError as exc:
        result.add(
            "error",
            "filename",
            f"{exc.message} (file names must be normalized: PEP 625 for sdists, the wheel "
            "specification for wheels)",
            "Rebuild with a current build backend (hatchling, setuptools>=69.3, flit, "
            "pdm-backend, poetry-core>=2) and upload the files it writes unchanged.",
        )
        return
    if dist.packagetype != SDIST:
        written = dist.filename.split("-")[1]
        if written != str(version):
            result.add(
                "warning",
                "filename",
                f"The wheel's file name spells the version {written!r}; the normalized "
                f"spelling is '{version}'.",
                "Rebuild with a current build backend.",
            )


def _check_description(result: FileCheck, raw: Mapping[str, Any]) -> None:
    description = raw.get("description")
    declared = raw.get("description_content_type")
    if not isinstance(description, str) or not description.strip():
        result.add(
            "warning",
            "description",
            "There is no long description: the project page will be empty.",
            'Set readme = "README.md" in the [project] table of pyproject.toml.',
        )
        return
    if not isinstance(declared, str) or not declared.strip():
        result.add(
            "warning",
            "description",
            "No Description-Content-Type: indexes render the description as reStructuredText.",
            'Declare it: readme = "README.md" (or .rst) in pyproject.toml sets it, or '
            'readme = {file = "README", content-type = "text/markdown"}.',
        )
        declared = ""
    problem = render_problem(description, declared)
    if problem:
        result.add(
            "error",
            "description",
            problem,
            f"Fix the README so it renders (see {DESCRIPTION_HELP}); `keyless check` after "
            "every rebuild.",
        )


def render_problem(description: str, content_type: str = "") -> str | None:
    """Why ``description`` does not render as ``content_type`` (the indexes' renderers:
    readme_renderer), or None when it renders. reStructuredText problems are listed with
    their line numbers. Never raises.
    """
    media_type, params = "text/x-rst", {}
    if content_type:
        header = email.message.EmailMessage()
        header["content-type"] = content_type
        media_type = header.get_content_type()
        params = {k.lower(): str(v) for k, v in header["content-type"].params.items()}
    kind = _RENDERERS.get(media_type)
    if kind is None:
        return (
            f"The description's content type {content_type!r} is none of text/plain, "
            "text/x-rst, text/markdown: indexes show it as plain text."
        )
    if media_type == "text/x-rst":
        messages = io.StringIO()
        if readme_renderer.rst.render(description, stream=messages) is not None:
            return None
        details = "; ".join(
            line.replace("<string>:", "line ")
            for line in messages.getvalue().splitlines()
            if line.startswith("<string>:")
        )
        return (
            f"The description does not render as {kind}"
            + (f": {details}" if details else ".")
            + ("" if content_type else " (no content type was declared, so rst was assumed)")
        )
    if media_type == "text/markdown":
        variant = params.get("variant", "GFM")
        if readme_renderer.markdown.render(description, variant=variant) is None:
            return (
                f"The description does not render as Markdown: variant {variant!r} is not "
                "one of GFM, CommonMark."
            )
        return None
    if readme_renderer.txt.render(description) is None:
        return "The description does not render as plain text."
    return None


# ----------------------------------------------------------------------- the set of files


def _check_set(files: Sequence[FileCheck]) -> list[Finding]:
    findings: list[Finding] = []
    seen: dict[str, Path] = {}
    for file in files:
        if file.filename in seen and seen[file.filename] != file.path:
            findings.append(
                Finding(
                    "error",
                    "duplicate",
                    f"Two files are named {file.filename}: {seen[file.filename]} and "
                    f"{file.path}; an index keeps one file per name.",
                    "Check only one of them.",
                )
            )
        seen.setdefault(file.filename, file.path)

    releases: dict[tuple[str, str], list[FileCheck]] = {}
    for file in files:
        if file.name is not None and file.version is not None:
            releases.setdefault((file.name, file.version), []).append(file)
    if len(releases) > 1:
        listed = ", ".join(f"{name} {version}" for name, version in sorted(releases))
        findings.append(
            Finding(
                "warning",
                "releases",
                f"The files belong to {len(releases)} releases ({listed}); all of them would "
                "be uploaded.",
                "Empty dist/ before building (`rm -rf dist`), or name the files to publish.",
            )
        )
    for (name, version), members in sorted(releases.items()):
        sdists = [m for m in members if m.packagetype == SDIST]
        if len(sdists) > 1:
            findings.append(
                Finding(
                    "error",
                    "one-sdist",
                    f"{name} {version} has {len(sdists)} sdists "
                    f"({', '.join(s.filename for s in sdists)}); a release has at most one.",
                    "Keep only the sdist your build backend writes.",
                )
            )
        findings.extend(_check_agreement(members))
    return findings


def _comparable(field_name: str, value: Any) -> Any:
    if value is None or value == "" or value == []:
        return None
    if field_name == "project_urls" and isinstance(value, Mapping):
        return sorted(value.items())
    if field_name in _UNORDERED and isinstance(value, list):
        return sorted(value)
    return value


def _check_agreement(members: Sequence[FileCheck]) -> list[Finding]:
    readable = [m for m in members if m.raw_metadata is not None]
    sdists = [m for m in readable if m.packagetype == SDIST]
    wheels = [m for m in readable if m.packagetype != SDIST]
    level: Level
    if sdists:
        reference, level = sdists[0], "error"
    elif len(wheels) > 1:
        # Wheels for different platforms may legitimately differ; without an sdist to say
        # which fields are dynamic, a difference is only suspicious.
        reference, level = wheels[0], "warning"
    else:
        return []
    expected = reference.raw_metadata or {}
    dynamic = {d.lower() for d in expected.get("dynamic") or []}
    findings: list[Finding] = []
    for other in wheels:
        if other is reference or other.raw_metadata is None:
            continue
        differing = [
            header
            for key, header in _RELEASE_FIELDS
            if header.lower() not in dynamic
            and _comparable(key, expected.get(key)) != _comparable(key, other.raw_metadata.get(key))
        ]
        if differing:
            findings.append(
                Finding(
                    level,
                    "wheel-sdist-agree",
                    f"{other.filename} and {reference.filename} disagree on "
                    f"{', '.join(differing)}: they were not built from the same source.",
                    "Build all files of a release in one go from one clean checkout "
                    "(`python -m build`), or mark fields that vary per wheel as Dynamic in "
                    "the sdist (PEP 643).",
                )
            )
    return findings


def _check_tag(files: Sequence[FileCheck], tag: str) -> list[Finding]:
    versions = sorted({Version(f.version) for f in files if f.version is not None})
    wanted = version_of_tag(tag)
    if wanted is None:
        return [
            Finding(
                "warning",
                "git-tag",
                f"The git tag {tag!r} is not a version, so it was not compared with the "
                "files' versions.",
                "Tag releases with their version, e.g. v1.2.0.",
            )
        ]
    wrong = [v for v in versions if v != wanted]
    if not wrong:
        return []
    said = ", ".join(str(v) for v in wrong)
    return [
        Finding(
            "error",
            "git-tag",
            f"The git tag {tag!r} says version {wanted}, but the files are version {said}.",
            f'Set version = "{wanted}" in pyproject.toml (or whatever sets the version), '
            f"rebuild, and move the tag; or tag the commit v{said.split(', ')[0]}.",
        )
    ]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        for chunk in iter(lambda: fp.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"
