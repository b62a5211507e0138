"""Distribution filenames: safety, parsing (wheel and sdist) and agreement with the project."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from keyless.dists import _texts
from keyless.dists.errors import DistError
from keyless.dists.platforms import is_allowed_platform
from keyless.dists.policy import Policy
from keyless.dists.versions import oversized_number

SDIST = "sdist"
WHEEL = "bdist_wheel"

# keyless accepts only the two formats pip and uv install from an index (PEP 527 retired the
# rest; PyPI still takes .zip sdists, keyless does not).
ACCEPTED_EXTENSIONS: dict[str, frozenset[str]] = {
    SDIST: frozenset({".tar.gz"}),
    WHEEL: frozenset({".whl"}),
}
# Extensions recognised well enough to say "wrong one for this filetype" rather than "unknown".
_KNOWN_EXTENSION = re.compile(r".(?P<ext>\.(?:tar\.gz|zip|whl))\Z", re.IGNORECASE | re.DOTALL)

# Object stores and log pipelines choke on these, and no legitimate build produces them.
_CONTROL_CHARACTERS = frozenset({*map(chr, range(32)), chr(127)})


@dataclass(frozen=True)
class DistFilename:
    """What a distribution's filename says about it."""

    filename: str
    packagetype: str  # "sdist" | "bdist_wheel"
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]  # empty for sdists


def _check_characters(filename: str) -> None:
    if any(c in _CONTROL_CHARACTERS for c in filename):
        raise DistError(
            "Cannot upload a file with non-printable characters (ordinals 0-31) "
            "or the DEL character (ordinal 127) in the name."
        )
    if "/" in filename or "\\" in filename:
        raise DistError("Cannot upload a file with '/' or '\\' in the name.")


def _unknown_extension() -> DistError:
    accepted = " or ".join(sorted(ext for exts in ACCEPTED_EXTENSIONS.values() for ext in exts))
    return DistError(
        f"Invalid file extension: Use {accepted} extension. See {_texts.PEP_527_URL} "
        f"and {_texts.PEP_715_URL} for more information"
    )


def check_filename_safe(filename: str, filetype: str) -> None:
    """Check an uploaded filename before anything is written under it.

    In PyPI's order: control characters, path separators, then the extension against the
    declared ``filetype``. Raises ``DistError`` with PyPI's texts.
    """
    if filetype not in ACCEPTED_EXTENSIONS:
        raise DistError(_texts.UNKNOWN_FILETYPE)
    _check_characters(filename)
    m = _KNOWN_EXTENSION.search(filename)
    if m is None:
        raise _unknown_extension()
    extension = m.group("ext")
    if extension not in ACCEPTED_EXTENSIONS[filetype]:
        raise DistError(
            f"Invalid file extension: Extension {extension} is invalid for filetype "
            f"{filetype}. See {_texts.PEP_527_URL} for more information."
        )


def parse_dist_filename(filename: str, policy: Policy) -> DistFilename:
    """Parse a wheel or sdist filename with ``packaging``.

    Raises ``DistError`` (PyPI's texts) for unsafe characters, an unknown extension, an invalid
    wheel or sdist filename, or, when ``policy.restrict_platform_tags``, a platform tag outside
    PyPI's allow-list.
    """
    _check_characters(filename)
    problem = oversized_number(filename)  # in the version or a build tag: packaging crashes
    if problem and filename.endswith((".whl", ".tar.gz")):
        kind = "wheel" if filename.endswith(".whl") else "source distribution"
        raise DistError(f"Invalid {kind} filename ({problem}): {_texts.abbreviated(filename)!r}")
    if filename.endswith(".whl"):
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise DistError(str(exc)) from exc
        if policy.restrict_platform_tags:
            # Sorted so the reported tag does not depend on set iteration order.
            for platform in sorted({tag.platform for tag in tags}):
                if not is_allowed_platform(platform):
                    raise DistError(
                        f"Binary wheel '{filename}' has an unsupported platform tag '{platform}'."
                    )
        return DistFilename(filename, WHEEL, name, version, tags)
    if filename.endswith(".tar.gz"):
        try:
            name, version = parse_sdist_filename(filename)
        except InvalidSdistFilename as exc:
            raise DistError(f"Invalid source distribution filename: {filename}") from exc
        return DistFilename(filename, SDIST, name, version, frozenset())
    raise _unknown_extension()


def _sdist_name_part(filename: str, version: Version, normalized: str) -> str:
    """The project-name part of an sdist filename, tolerating a '-' inside the version.

    ``packaging`` splits on the last '-', which misreads legacy post-release spellings such as
    ``foo-1.0-1.tar.gz`` (1.0.post1); like PyPI, retry on the second-to-last '-' then, and let
    the exact-filename check report the non-normalized spelling.
    """
    stem = filename[: -len(".tar.gz")]
    name_part = stem.rpartition("-")[0]
    if (
        version.is_postrelease
        and canonicalize_name(name_part) != normalized
        and stem.count("-") >= 2
    ):
        name_part = name_part.rpartition("-")[0]
    return name_part


def check_filename_matches_project(dist: DistFilename, project_name: str, version: Version) -> None:
    """Check the filename against the project and the version being released.

    Sdists must be named exactly ``{normalized_name}-{version}.tar.gz`` (PEP 625); wheels must
    start with the normalized project name and carry an equal version. Raises ``DistError``
    with PyPI's texts.
    """
    normalized = canonicalize_name(project_name)
    escaped = normalized.replace("-", "_")
    if dist.packagetype == SDIST:
        if canonicalize_name(_sdist_name_part(dist.filename, version, normalized)) != normalized:
            raise DistError(f"Start filename for {project_name!r} with {escaped!r}.")
        expected = f"{escaped}-{version}.tar.gz"
        if dist.filename != expected:
            raise DistError(f"Filename {dist.filename!r} is invalid, should be {expected!r}.")
        return
    if dist.name != normalized:
        raise DistError(f"Start filename for {project_name!r} with {escaped!r}.")
    name_part = dist.filename.split("-", 1)[0]
    if name_part != escaped:
        raise DistError(
            f"Filename {dist.filename!r} should contain the normalized project name "
            f"{escaped!r}, not {name_part!r}."
        )
    if dist.version != version:
        raise DistError(
            f"Version in filename should be {str(version)!r} not {str(dist.version)!r}."
        )
