"""Deterministic wheels for the benchmarks (valid for keyless' checks, pip, uv and the peers)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

ZIP_DATE = (2024, 1, 1, 0, 0, 0)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    filename: str
    data: bytes
    requires: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def stem(name: str) -> str:
    return canonicalize_name(name).replace("-", "_")


def metadata_text(name: str, version: str, requires: tuple[str, ...] = ()) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: benchmark package {name}",
        "Requires-Python: >=3.8",
    ]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _members(
    name: str, version: str, requires: tuple[str, ...], payload: bytes
) -> list[tuple[str, bytes]]:
    pkg = stem(name)
    dist_info = f"{pkg}-{version}.dist-info"
    members = [(f"{pkg}/__init__.py", f'__version__ = "{version}"\n'.encode())]
    if payload:
        members.append((f"{pkg}/payload.bin", payload))
    members.append((f"{dist_info}/METADATA", metadata_text(name, version, requires).encode()))
    members.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: keyless-bench\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
        )
    )
    record = [_record_line(p, d) for p, d in members] + [f"{dist_info}/RECORD,,"]
    members.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    return members


def build_wheel(
    name: str, version: str, requires: tuple[str, ...] = (), payload: bytes = b"", build: str = ""
) -> Wheel:
    """A valid pure-Python wheel; `build` (a build tag such as "2") makes several wheels of one
    release, as a release's platform wheels are."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        for path, data in _members(name, version, requires, payload):
            info = zipfile.ZipInfo(path, ZIP_DATE)
            info.compress_type = (
                zipfile.ZIP_STORED if path.endswith(".bin") else zipfile.ZIP_DEFLATED
            )
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    build_tag = f"-{build}" if build else ""
    filename = f"{stem(name)}-{version}{build_tag}-py3-none-any.whl"
    return Wheel(name, version, filename, sink.getvalue(), requires)


def write_big_wheel(folder: Path, name: str, version: str, size: int) -> Path:
    """A valid wheel of about `size` bytes (random, stored: incompressible), streamed to disk."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem(name)}-{version}-py3-none-any.whl"
    if path.exists() and abs(path.stat().st_size - size) < MIB:
        return path
    pkg = stem(name)
    dist_info = f"{pkg}-{version}.dist-info"
    digest = hashlib.sha256()
    tmp = path.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", allowZip64=True) as archive:
        archive.writestr(zipfile.ZipInfo(f"{pkg}/__init__.py", ZIP_DATE), b"")
        info = zipfile.ZipInfo(f"{pkg}/payload.bin", ZIP_DATE)
        info.compress_type = zipfile.ZIP_STORED
        written = 0
        with archive.open(info, "w", force_zip64=True) as member:
            while written < size:
                chunk = os.urandom(min(4 * MIB, size - written))
                member.write(chunk)
                digest.update(chunk)
                written += len(chunk)
        payload_line = (
            f"{pkg}/payload.bin,sha256="
            + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            + f",{size}"
        )
        meta = metadata_text(name, version).encode()
        wheel = (
            b"Wheel-Version: 1.0\nGenerator: keyless-bench\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        )
        for member_name, data in ((f"{dist_info}/METADATA", meta), (f"{dist_info}/WHEEL", wheel)):
            archive.writestr(zipfile.ZipInfo(member_name, ZIP_DATE), data)
        record = [
            _record_line(f"{pkg}/__init__.py", b""),
            payload_line,
            _record_line(f"{dist_info}/METADATA", meta),
            _record_line(f"{dist_info}/WHEEL", wheel),
            f"{dist_info}/RECORD,,",
        ]
        archive.writestr(
            zipfile.ZipInfo(f"{dist_info}/RECORD", ZIP_DATE), ("\n".join(record) + "\n").encode()
        )
    tmp.replace(path)
    return path


def upload_fields(
    wheel_name: str, version: str, requires: tuple[str, ...], data_digests: dict[str, str]
) -> list[tuple[str, str]]:
    """The multipart fields twine sends for a wheel."""
    fields = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("filetype", "bdist_wheel"),
        ("pyversion", "py3"),
        ("metadata_version", "2.1"),
        ("name", wheel_name),
        ("version", version),
        ("summary", f"benchmark package {wheel_name}"),
        ("requires_python", ">=3.8"),
    ]
    fields += [("requires_dist", r) for r in requires]
    fields += list(data_digests.items())
    return fields


def digests_of_file(path: Path) -> dict[str, str]:
    sha, md5, b2 = (
        hashlib.sha256(),
        hashlib.md5(usedforsecurity=False),
        hashlib.blake2b(digest_size=32),
    )
    with path.open("rb") as handle:
        while chunk := handle.read(4 * MIB):
            sha.update(chunk)
            md5.update(chunk)
            b2.update(chunk)
    return {
        "md5_digest": md5.hexdigest(),
        "sha256_digest": sha.hexdigest(),
        "blake2_256_digest": b2.hexdigest(),
    }
