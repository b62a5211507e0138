"""Distribution files built in memory for tests: valid ones, and hostile ones.

Every builder returns ``(filename, data)``. Outputs are deterministic (fixed timestamps, sorted
members), so the same call always yields the same bytes and hashes.

    filename, data = build_wheel("demo", "1.0", metadata={"requires_dist": ["httpx>=0.27"]})
    path = write_dist(tmp_path, filename, data)
    fields = upload_form_fields(core_metadata("demo", "1.0"), content=data, filetype="bdist_wheel")

Metadata is given as a dict keyed like ``packaging.metadata.RawMetadata`` (``classifiers``,
``requires_dist``, ``project_urls`` as a dict, ``keywords`` as a list, ...); the same dict
renders both the METADATA/PKG-INFO file and the upload form, so the two agree unless a test
makes them differ on purpose.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from keyless.workflows import ClientSource

MIB = 1024 * 1024
ZIP_DATE = (2024, 1, 1, 0, 0, 0)
TAR_MTIME = 1_704_067_200  # 2024-01-01

# RawMetadata key -> (core metadata header, multipart form field)
FIELDS: dict[str, tuple[str, str]] = {
    "metadata_version": ("Metadata-Version", "metadata_version"),
    "name": ("Name", "name"),
    "version": ("Version", "version"),
    "dynamic": ("Dynamic", "dynamic"),
    "platforms": ("Platform", "platform"),
    "supported_platforms": ("Supported-Platform", "supported_platform"),
    "summary": ("Summary", "summary"),
    "description": ("Description", "description"),
    "description_content_type": ("Description-Content-Type", "description_content_type"),
    "keywords": ("Keywords", "keywords"),
    "home_page": ("Home-page", "home_page"),
    "download_url": ("Download-URL", "download_url"),
    "author": ("Author", "author"),
    "author_email": ("Author-email", "author_email"),
    "maintainer": ("Maintainer", "maintainer"),
    "maintainer_email": ("Maintainer-email", "maintainer_email"),
    "license": ("License", "license"),
    "license_expression": ("License-Expression", "license_expression"),
    "license_files": ("License-File", "license_file"),
    "classifiers": ("Classifier", "classifiers"),
    "requires_dist": ("Requires-Dist", "requires_dist"),
    "requires_python": ("Requires-Python", "requires_python"),
    "requires_external": ("Requires-External", "requires_external"),
    "project_urls": ("Project-URL", "project_urls"),
    "provides_extra": ("Provides-Extra", "provides_extra"),
    "provides_dist": ("Provides-Dist", "provides_dist"),
    "obsoletes_dist": ("Obsoletes-Dist", "obsoletes_dist"),
    "requires": ("Requires", "requires"),
    "provides": ("Provides", "provides"),
    "obsoletes": ("Obsoletes", "obsoletes"),
    "import_names": ("Import-Name", "import_name"),
    "import_namespaces": ("Import-Namespace", "import_namespace"),
}


def escaped_name(name: str) -> str:
    """The project name as it appears in file and directory names (PEP 427/625)."""
    return canonicalize_name(name).replace("-", "_")


def core_metadata(
    name: str = "demo", version: str = "1.0", *, metadata_version: str = "2.4", **fields: Any
) -> dict[str, Any]:
    """A metadata dict with the required fields set; ``fields`` add or override."""
    return {"metadata_version": metadata_version, "name": name, "version": version, **fields}


def _values(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if key == "project_urls":
        # A mapping of label -> URL, or the raw "Label, URL" strings (to send odd ones).
        if isinstance(value, Mapping):
            return [f"{label}, {url}" for label, url in value.items()]
        return [str(v) for v in value]
    if key == "keywords" and not isinstance(value, str):
        return [",".join(value)]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def core_metadata_text(
    name: str = "demo", version: str = "1.0", *, metadata_version: str = "2.4", **fields: Any
) -> str:
    """A METADATA/PKG-INFO file. The description, if any, goes in the body."""
    meta = core_metadata(name, version, metadata_version=metadata_version, **fields)
    description = meta.pop("description", None)
    lines = []
    for key, value in meta.items():
        if key not in FIELDS:
            raise TypeError(f"unknown core metadata field {key!r}; expected one of {list(FIELDS)}")
        header = FIELDS[key][0]
        # Continuation lines keep multi-line values (e.g. a License text) inside one header.
        lines += [f"{header}: {v}".replace("\n", "\n        ") for v in _values(key, value)]
    text = "\n".join(lines) + "\n"
    if description is not None:
        text += "\n" + description
    return text


def upload_form_fields(
    metadata: Mapping[str, Any],
    *,
    content: bytes | None = None,
    filetype: str | None = None,
    pyversion: str | None = None,
) -> list[tuple[str, str]]:
    """The multipart fields twine sends for ``metadata`` (a dict as from ``core_metadata``).

    With ``content``, also the three digests; ``filetype``/``pyversion`` are added when given.
    The file part itself (``content``) is left to the HTTP client.
    """
    fields = [(":action", "file_upload"), ("protocol_version", "1")]
    if filetype is not None:
        fields.append(("filetype", filetype))
    if pyversion is not None:
        fields.append(("pyversion", pyversion))
    meta = dict(metadata)
    meta.setdefault("metadata_version", "2.4")
    for key, value in meta.items():
        form_key = FIELDS[key][1]
        fields += [(form_key, v) for v in _values(key, value)]
    if content is not None:
        fields += [
            ("md5_digest", hashlib.md5(content).hexdigest()),  # noqa: S324 - protocol field
            ("sha256_digest", hashlib.sha256(content).hexdigest()),
            ("blake2_256_digest", hashlib.blake2b(content, digest_size=32).hexdigest()),
        ]
    return fields


def form_mapping(fields: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Multipart fields as the mapping ``keyless.dists.metadata_from_form`` takes."""
    mapping: dict[str, list[str]] = {}
    for key, value in fields:
        mapping.setdefault(key, []).append(value)
    return mapping


def write_dist(directory: Path, filename: str, data: bytes) -> Path:
    path = directory / filename
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------ wheels


def record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


class _NonSeekable(io.RawIOBase):
    """A write-only stream zipfile cannot seek in, so it writes data descriptors."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer += bytes(data)
        return len(data)


def zip_bytes(
    entries: Iterable[tuple[str, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    data_descriptors: bool = False,
) -> bytes:
    """A zip of ``entries`` in order; names are kept verbatim (even '../x' or duplicates)."""
    sink: Any = _NonSeekable() if data_descriptors else io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(sink, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name" is the point sometimes
        for name, data in entries:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return bytes(sink.buffer) if data_descriptors else sink.getvalue()


def _metadata_text(
    name: str,
    version: str,
    metadata: Mapping[str, Any] | None,
    metadata_text: str | None,
    license_files: Mapping[str, bytes] | None,
) -> str:
    """A builder's core metadata: `metadata_text` as given, or made from `metadata` with the
    license files declared."""
    if metadata_text is not None:
        return metadata_text
    fields = dict(metadata or {})
    if license_files:
        fields.setdefault("license_files", list(license_files))
    return core_metadata_text(name, version, **fields)


def build_wheel(
    name: str = "demo",
    version: str = "1.0",
    *,
    metadata: Mapping[str, Any] | None = None,
    metadata_text: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    license_files: Mapping[str, bytes] | None = None,
    entry_points: str | None = None,
    tag: str = "py3-none-any",
    build_tag: str | None = None,
    filename: str | None = None,
    dist_info: str | None = None,
    omit: Sequence[str] = (),
    extra_entries: Sequence[tuple[str, bytes]] = (),
    compression: int = zipfile.ZIP_DEFLATED,
    data_descriptors: bool = False,
) -> tuple[str, bytes]:
    """A valid wheel unless told otherwise.

    ``metadata`` adds fields to METADATA; ``metadata_text`` replaces the file outright.
    ``license_files`` are stored under ``.dist-info/licenses/`` and declared in METADATA.
    ``omit`` drops dist-info files by name ("WHEEL", "METADATA", "RECORD").
    ``extra_entries`` are appended verbatim after RECORD (not listed in it): for duplicate
    or hostile member names.
    """
    stem = escaped_name(name)
    dist_info = dist_info or f"{stem}-{version}.dist-info"
    build = f"-{build_tag}" if build_tag else ""
    filename = filename or f"{stem}-{version}{build}-{tag}.whl"
    metadata_text = _metadata_text(name, version, metadata, metadata_text, license_files)
    files: dict[str, bytes] = {f"{stem}/__init__.py": f'__version__ = "{version}"\n'.encode()}
    files.update(extra_files or {})
    for license_name, data in (license_files or {}).items():
        files[f"{dist_info}/licenses/{license_name}"] = data
    if entry_points is not None:
        files[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    files[f"{dist_info}/METADATA"] = metadata_text.encode()
    tags = "".join(f"Tag: {t}\n" for t in _expand_tags(tag))
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: keyless-tests\nRoot-Is-Purelib: true\n{tags}".encode()
    )
    for dropped in omit:
        files.pop(f"{dist_info}/{dropped}", None)
    entries = list(files.items())
    if "RECORD" not in omit:
        record = [record_line(path, data) for path, data in entries] + [f"{dist_info}/RECORD,,"]
        entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    entries += extra_entries
    return filename, zip_bytes(entries, compression=compression, data_descriptors=data_descriptors)


def _expand_tags(tag: str) -> list[str]:
    python, abi, platform = tag.split("-")
    return [
        f"{p}-{a}-{pl}"
        for p in python.split(".")
        for a in abi.split(".")
        for pl in platform.split(".")
    ]


def forged_wheel(
    name: str = "demo", version: str = "1.0", inner_version: str = "6.6.6"
) -> tuple[str, bytes]:
    """A wheel whose filename says ``version`` but whose METADATA says ``inner_version``."""
    return build_wheel(name, version, metadata_text=core_metadata_text(name, inner_version))


def traversal_wheel(
    name: str = "demo", version: str = "1.0", member: str = "../evil.py"
) -> tuple[str, bytes]:
    return build_wheel(name, version, extra_entries=[(member, b"print('pwned')\n")])


def duplicate_member_wheel(name: str = "demo", version: str = "1.0") -> tuple[str, bytes]:
    """Two members with the same name: readers disagree on which one counts."""
    stem = escaped_name(name)
    return build_wheel(name, version, extra_entries=[(f"{stem}/__init__.py", b"evil = True\n")])


@functools.lru_cache(maxsize=4)
def zip_bomb_wheel(
    name: str = "demo", version: str = "1.0", *, size: int = 100 * MIB
) -> tuple[str, bytes]:
    """A valid wheel plus ``size`` zero bytes DEFLATEd into one member (~1000:1).

    Streamed in 1 MiB chunks, so building it never holds ``size`` bytes in memory.
    """
    filename, wheel = build_wheel(name, version)
    stem = escaped_name(name)
    chunk = bytes(MIB)
    sink = io.BytesIO(wheel)
    with zipfile.ZipFile(sink, "a") as archive:
        info = zipfile.ZipInfo(f"{stem}/zeros.bin", ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            remaining = size
            while remaining:
                piece = chunk[: min(MIB, remaining)]
                member.write(piece)
                remaining -= len(piece)
    return filename, sink.getvalue()


def rename_in_local_header(data: bytes, old: str, new: str) -> bytes:
    """Rename a member in its local header only, leaving the central directory alone.

    A streaming unpacker then sees ``new`` where a directory-based one sees ``old``.
    """
    if len(old) != len(new):
        raise ValueError("old and new names must have the same length")
    needle = b"PK\x03\x04"
    pos = data.find(needle)
    while pos != -1:
        name_len = int.from_bytes(data[pos + 26 : pos + 28], "little")
        start = pos + 30
        if data[start : start + name_len] == old.encode():
            return data[:start] + new.encode() + data[start + name_len :]
        pos = data.find(needle, pos + 4)
    raise ValueError(f"no local header for {old!r}")


def hide_member(data: bytes, name: str) -> bytes:
    """Drop ``name`` from the central directory but keep its local record in place.

    Directory-based unpackers (pip) no longer see the member; streaming ones still do.
    """
    end = data.rindex(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack_from("<HLL", data, end + 10)
    kept, pos, removed = [], cd_offset, 0
    while pos < cd_offset + cd_size:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        record_end = pos + 46 + name_len + extra_len + comment_len
        if data[pos + 46 : pos + 46 + name_len] == name.encode():
            removed += 1
        else:
            kept.append(data[pos:record_end])
        pos = record_end
    if not removed:
        raise ValueError(f"no central directory entry for {name!r}")
    directory = b"".join(kept)
    eocd = bytearray(data[end:])
    struct.pack_into("<HHL", eocd, 8, count - removed, count - removed, len(directory))
    return data[:cd_offset] + directory + bytes(eocd)


# ------------------------------------------------------------------------------------ sdists


def tar_entry(
    name: str,
    data: bytes = b"",
    *,
    type: bytes = tarfile.REGTYPE,
    linkname: str = "",
    mode: int = 0o644,
) -> tuple[tarfile.TarInfo, bytes | None]:
    """One tar member; ``data`` only matters for regular files."""
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.mode = 0o755 if type == tarfile.DIRTYPE else mode
    info.mtime = TAR_MTIME
    info.uname = info.gname = "root"
    if type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
        return info, data
    return info, None


def tar_gz_bytes(entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A gzip-compressed tar of ``entries`` in order, names kept verbatim."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def build_sdist(
    name: str = "demo",
    version: str = "1.0",
    *,
    metadata: Mapping[str, Any] | None = None,
    metadata_text: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    license_files: Mapping[str, bytes] | None = None,
    top_dir: str | None = None,
    filename: str | None = None,
    omit_pkg_info: bool = False,
    extra_entries: Sequence[tuple[tarfile.TarInfo, bytes | None]] = (),
) -> tuple[str, bytes]:
    """A valid sdist: ``{name}-{version}/`` holding PKG-INFO, pyproject.toml and a module.

    ``extra_files`` and ``license_files`` are relative to the top directory;
    ``extra_entries`` (see ``tar_entry``) are appended verbatim, for hostile members.
    """
    stem = escaped_name(name)
    top = top_dir or f"{stem}-{version}"
    filename = filename or f"{stem}-{version}.tar.gz"
    metadata_text = _metadata_text(name, version, metadata, metadata_text, license_files)
    files: dict[str, bytes] = {
        "pyproject.toml": (
            f'[project]\nname = "{name}"\nversion = "{version}"\n\n'
            '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        ).encode(),
        f"src/{stem}/__init__.py": f'__version__ = "{version}"\n'.encode(),
    }
    if not omit_pkg_info:
        files["PKG-INFO"] = metadata_text.encode()
    files.update(license_files or {})
    files.update(extra_files or {})
    entries = [tar_entry(top, type=tarfile.DIRTYPE)]
    entries += [tar_entry(f"{top}/{path}", data) for path, data in sorted(files.items())]
    entries += extra_entries
    return filename, tar_gz_bytes(entries)


def sdist_with(
    *extra: tuple[tarfile.TarInfo, bytes | None], name: str = "demo", version: str = "1.0"
) -> tuple[str, bytes]:
    """A valid sdist plus hostile members, e.g.
    ``sdist_with(tar_entry("demo-1.0/link", type=tarfile.SYMTYPE, linkname="../../etc"))``."""
    return build_sdist(name, version, extra_entries=extra)


def traversal_sdist(member: str = "../evil.py") -> tuple[str, bytes]:
    return sdist_with(tar_entry(member, b"print('pwned')\n"))


def absolute_path_sdist(member: str = "/tmp/evil.py") -> tuple[str, bytes]:
    return sdist_with(tar_entry(member, b"print('pwned')\n"))


def symlink_escape_sdist(target: str = "../../etc/passwd") -> tuple[str, bytes]:
    return sdist_with(tar_entry("demo-1.0/passwd", type=tarfile.SYMTYPE, linkname=target))


def device_sdist(kind: bytes = tarfile.CHRTYPE) -> tuple[str, bytes]:
    return sdist_with(tar_entry("demo-1.0/null", type=kind))


def two_top_dirs_sdist() -> tuple[str, bytes]:
    return sdist_with(tar_entry("other-1.0/PKG-INFO", core_metadata_text().encode()))


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left, MIB)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


@functools.lru_cache(maxsize=4)
def tar_bomb_sdist(
    name: str = "demo", version: str = "1.0", *, size: int = 100 * MIB
) -> tuple[str, bytes]:
    """A valid sdist with one extra member of ``size`` zero bytes, gzip-compressed (~1000:1).

    Streamed: the zeros are never all in memory at once.
    """
    stem = escaped_name(name)
    top = f"{stem}-{version}"
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as archive,
    ):
        for info, data in [
            tar_entry(top, type=tarfile.DIRTYPE),
            tar_entry(f"{top}/PKG-INFO", core_metadata_text(name, version).encode()),
        ]:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
        zeros, _ = tar_entry(f"{top}/zeros.bin")
        zeros.size = size
        archive.addfile(zeros, io.BufferedReader(_Zeros(size), MIB))
    return f"{top}.tar.gz", raw.getvalue()


def zip_tar_polyglot(name: str = "demo", version: str = "1.0") -> bytes:
    """Bytes that are a valid sdist (gzip+tar from the front) AND a valid wheel (zip from the
    end): readers picking different formats would see different contents."""
    return build_sdist(name, version)[1] + build_wheel(name, version)[1]


# A keyless index's client as `keyless init` pins it (keyless.publish.client_source), for
# workflows rendered without asking a live index which client it serves.
CLIENT_SOURCE = ClientSource(
    index_url="https://pypi.example.com",
    version="0.1.0",
    requirements_url="https://pypi.example.com/+client/0.1.0/requirements.txt",
    requirements_sha256="0" * 64,
)
