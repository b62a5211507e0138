"""A distribution file on disk, read once: its name, version, hashes and core metadata.

The metadata comes from the artifact itself (METADATA / PKG-INFO), never from a build tool's
idea of it, because that is what the index will compare the upload form against.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from packaging.metadata import Metadata, RawMetadata, parse_email
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from keyless.dists import (
    DistError,
    InvalidMetadata,
    Policy,
    parse_dist_filename,
    read_core_metadata,
)
from keyless.dists.metadata import validate_core_metadata
from keyless.dists.policy import METADATA_VERSIONS
from keyless.publish.errors import PublishError

SDIST = "sdist"
WHEEL = "bdist_wheel"
_CHUNK = 1024 * 1024
# Files up to this size are read once, for their digests and the archive checks together.
_KEEP_IN_MEMORY = 16 * _CHUNK

# Lenient on purpose: PyPI's policy rules are the index's business (and `keyless check`'s);
# here we only need metadata that parses, so the form we send describes the file.
_POLICY = Policy.for_profile("private", max_metadata_version=METADATA_VERSIONS[-1])

# packaging's RawMetadata keys -> the upload form's field names (the legacy API's spelling,
# as twine and warehouse use it; a few were renamed from the header names long ago).
FORM_NAMES: dict[str, str] = {
    "metadata_version": "metadata_version",
    "name": "name",
    "version": "version",
    "platforms": "platform",
    "supported_platforms": "supported_platform",
    "summary": "summary",
    "description": "description",
    "description_content_type": "description_content_type",
    "keywords": "keywords",
    "home_page": "home_page",
    "download_url": "download_url",
    "author": "author",
    "author_email": "author_email",
    "maintainer": "maintainer",
    "maintainer_email": "maintainer_email",
    "license": "license",
    "license_expression": "license_expression",
    "license_files": "license_file",
    "classifiers": "classifiers",
    "requires_dist": "requires_dist",
    "requires_python": "requires_python",
    "requires_external": "requires_external",
    "project_urls": "project_urls",
    "provides_extra": "provides_extra",
    "provides_dist": "provides_dist",
    "obsoletes_dist": "obsoletes_dist",
    "requires": "requires",
    "provides": "provides",
    "obsoletes": "obsoletes",
    "dynamic": "dynamic",
    "import_names": "import_name",
    "import_namespaces": "import_namespace",
}


@dataclass(frozen=True)
class LocalDist:
    """One sdist or wheel ready to upload."""

    path: Path
    filename: str
    packagetype: str  # "sdist" | "bdist_wheel"
    name: str  # as written in the metadata
    normalized: str  # PEP 503 normalized
    version: str  # as written in the metadata
    sha256: str
    md5: str
    blake2_256: str
    size: int
    metadata: Metadata
    core_metadata: bytes
    # The legacy upload API's form for this file (see upload_fields), made once when the
    # file is read: every upload attempt sends it, and parsing the metadata again for each
    # took ~0.5 ms of CPU per file away from the index on a shared machine.
    form: tuple[tuple[str, str], ...]

    @property
    def is_sdist(self) -> bool:
        return self.packagetype == SDIST

    @property
    def pyversion(self) -> str:
        """The upload form's `pyversion`: "source" for an sdist, the wheel's python tag."""
        return _pyversion(self.filename, self.packagetype)

    @property
    def release(self) -> tuple[str, str]:
        """(normalized name, normalized version): the files of one release share it."""
        try:
            return self.normalized, str(Version(self.version))
        except InvalidVersion:
            return self.normalized, self.version


def _pyversion(filename: str, packagetype: str) -> str:
    if packagetype == SDIST:
        return "source"
    # name-version[-build]-python-abi-platform.whl: the python tag is third from the end.
    return filename[: -len(".whl")].split("-")[-3]


def _read(path: Path) -> tuple[bytes, tuple[str, str, str, int]]:
    """The file's digests (sha256, md5, blake2b-256, size), in one pass over it; and its bytes
    when it is small enough to keep (b"" otherwise): the archive checks then read those
    instead of opening the file a second time."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    blake2 = hashlib.blake2b(digest_size=32)
    size = 0
    chunks: list[bytes] = []
    with path.open("rb") as fp:
        while chunk := fp.read(_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
            blake2.update(chunk)
            size += len(chunk)
            if size <= _KEEP_IN_MEMORY:
                chunks.append(chunk)
    content = b"".join(chunks) if size <= _KEEP_IN_MEMORY else b""
    return content, (sha256.hexdigest(), md5.hexdigest(), blake2.hexdigest(), size)


def load_dist(path: Path) -> LocalDist:
    """Read and hash the distribution at `path`.

    Raises PublishError naming the file when it is missing, not a wheel or sdist, an archive
    an index would refuse, or when its metadata does not parse or disagrees with its filename.
    """
    path = Path(path)
    context = {"file": str(path)}
    if not path.is_file():
        raise PublishError(
            f"{path}: no such file.",
            hint="build first (`python -m build`), or name the files to publish.",
            context=context,
        )
    try:
        parsed = parse_dist_filename(path.name, _POLICY)
        content, digests = _read(path)
        raw_metadata = read_core_metadata(io.BytesIO(content) if content else path, parsed)
        # Parsed once: the raw fields make the upload form, and are what is validated.
        raw, leftovers = parse_email(raw_metadata)
        metadata = validate_core_metadata(raw, leftovers, _POLICY)
    except InvalidMetadata as exc:
        raise PublishError(
            f"{path.name}: invalid metadata:\n  " + "\n  ".join(exc.errors),
            hint="fix the project metadata and rebuild; `keyless check` explains each field.",
            context=context,
        ) from exc
    except DistError as exc:
        raise PublishError(
            f"{path.name}: {exc.message}",
            hint="only wheels (.whl) and sdists (.tar.gz) built by a PEP 517 backend upload.",
            context=context,
        ) from exc
    except OSError as exc:
        raise PublishError(f"{path.name}: cannot read it: {exc}", context=context) from exc
    if canonicalize_name(metadata.name) != parsed.name or metadata.version != parsed.version:
        raise PublishError(
            f"{path.name}: the filename says {parsed.name} {parsed.version} but its metadata "
            f"says {metadata.name} {metadata.version}.",
            hint="rebuild the distribution; never rename a built file.",
            context=context,
        )
    sha256, md5, blake2, size = digests
    return LocalDist(
        path=path,
        filename=path.name,
        packagetype=parsed.packagetype,
        name=str(raw.get("name", metadata.name)),
        normalized=str(parsed.name),
        version=str(raw.get("version", metadata.version)),
        sha256=sha256,
        md5=md5,
        blake2_256=blake2,
        size=size,
        metadata=metadata,
        core_metadata=raw_metadata,
        form=_form(raw, parsed.packagetype, path.name, (md5, sha256, blake2)),
    )


def _metadata_version_before_2_4(raw_version: object) -> bool:
    try:
        return Version(str(raw_version)) < Version("2.4")
    except InvalidVersion:
        return False


def upload_fields(dist: LocalDist) -> list[tuple[str, str]]:
    """The multipart fields of the legacy upload API for `dist`, without the file part.

    Lower_snake_case names; multiple-use fields repeated; `project_urls` as "Label, URL";
    `keywords` joined with ", "; the description from the metadata body; the three digests.
    Empty values are left out (some indexes refuse nulls).
    """
    return list(dist.form)


def _form(
    raw: RawMetadata, packagetype: str, filename: str, digests: tuple[str, str, str]
) -> tuple[tuple[str, str], ...]:
    """upload_fields' answer, from the metadata as packaging parses it."""
    # setuptools wrote License-File long before metadata 2.4 gave it other semantics; indexes
    # reject it there, and the file itself is unaffected, so it is not sent.
    old_license_files = _metadata_version_before_2_4(raw.get("metadata_version"))
    fields: list[tuple[str, str]] = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("filetype", packagetype),
        ("pyversion", _pyversion(filename, packagetype)),
    ]
    for key, value in raw.items():
        form_name = FORM_NAMES.get(key)
        if form_name is None or (key == "license_files" and old_license_files):
            continue
        if key == "project_urls" and isinstance(value, dict):
            fields += [(form_name, f"{label}, {url}") for label, url in value.items()]
        elif key == "keywords" and isinstance(value, list):
            fields.append((form_name, ", ".join(value)))
        elif isinstance(value, list):
            fields += [(form_name, str(item)) for item in value if str(item)]
        elif isinstance(value, str) and value:
            fields.append((form_name, value))
    md5, sha256, blake2 = digests
    fields += [("md5_digest", md5), ("sha256_digest", sha256), ("blake2_256_digest", blake2)]
    return tuple(fields)
