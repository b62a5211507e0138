"""Wheels and sdists built in memory, each with one hostile mutation inside."""

from __future__ import annotations

import gzip
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.builders import build_sdist, build_wheel, core_metadata_text, escaped_name, tar_entry

from .values import (
    CLASSIFIERS,
    CONTENT_TYPES,
    DESCRIPTIONS,
    HOSTILE_TEXT,
    METADATA_VERSIONS,
    REQUIREMENTS,
    repeated,
)

# ----------------------------------------------------------------------------------- archives


@dataclass(frozen=True)
class Archive:
    kind: str  # "wheel" or "sdist"
    name: str
    version: str
    filename: str
    data: bytes = field(repr=False)
    mutation: str = ""  # what was done to it, for the failure report


# Where a zip member's fields sit: (signature, name length offset, header length) for its
# local header and its central directory entry, and each patched field's offset in both.
_ZIP_HEADERS = ((b"PK\x03\x04", 26, 30), (b"PK\x01\x02", 28, 46))
_ZIP_FIELDS = {"size": ("<I", 22, 24), "method": ("<H", 8, 10)}


def _patch_zip(data: bytes, member: str, field: str, value: int) -> bytes:
    """Write `value` into `field` of `member`'s local header and central directory entry."""
    fmt, *offsets = _ZIP_FIELDS[field]
    out = bytearray(data)
    name = member.encode()
    for (signature, name_len_at, header), field_at in zip(_ZIP_HEADERS, offsets, strict=True):
        pos = out.find(signature)
        while pos != -1:
            name_len = struct.unpack_from("<H", out, pos + name_len_at)[0]
            if bytes(out[pos + header : pos + header + name_len]) == name:
                struct.pack_into(fmt, out, pos + int(field_at), value)
            pos = out.find(signature, pos + 4)
    return bytes(out)


def patch_zip_size(data: bytes, member: str, size: int) -> bytes:
    """Declare `size` as the member's uncompressed size, in its local and central headers."""
    return _patch_zip(data, member, "size", size & 0xFFFFFFFF)


def patch_zip_method(data: bytes, member: str, method: int) -> bytes:
    """Claim compression `method` (e.g. an unknown number) for a member, in both headers."""
    return _patch_zip(data, member, "method", method)


def patch_tar_size(gz: bytes, suffix: str, size: int) -> bytes:
    """Declare `size` in the tar header of the first regular member ending in `suffix`."""
    raw = bytearray(gzip.decompress(gz))
    pos = 0
    while pos + 512 <= len(raw):
        block = raw[pos : pos + 512]
        if not any(block):
            break
        name = bytes(block[:100]).rstrip(b"\0").decode("utf-8", "replace")
        declared = int(bytes(block[124:136]).strip(b"\0 ") or b"0", 8)
        if name.endswith(suffix) and bytes(block[156:157]) in (b"0", b"\0"):
            size_field = f"{size:011o}".encode()
            if len(size_field) > 11:  # base-256 for sizes past 8 GiB, as GNU tar writes them
                size_field = b"\x80" + size.to_bytes(11, "big")
            else:
                size_field += b"\0"
            raw[pos + 124 : pos + 136] = size_field
            raw[pos + 148 : pos + 156] = b" " * 8
            checksum = sum(raw[pos : pos + 512])
            raw[pos + 148 : pos + 156] = f"{checksum:06o}\0 ".encode()
            break
        pos += 512 + (declared + 511) // 512 * 512
    return gzip.compress(bytes(raw), mtime=0)


HOSTILE_MEMBER_NAMES = st.one_of(
    st.sampled_from(
        [
            "../evil.py",
            "/etc/evil",
            "a/../../evil",
            "C:\\evil.py",
            "a\\..\\..\\evil",
            "./PKG-INFO",
            "",
            "a//b",
            "é/ü.py",
        ]
    ),
    repeated(["a", "a/", "../"], 3_000),
    # Any name an archive can carry: zip stores names as UTF-8, which has no lone surrogates.
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40),
)


@st.composite
def metadata_texts(draw: st.DrawFn, name: str, version: str) -> str:
    """A METADATA/PKG-INFO file for name/version, then mutated line by line."""
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["classifiers"] = draw(st.lists(CLASSIFIERS, max_size=3))
    if draw(st.booleans()):
        fields["requires_dist"] = draw(st.lists(REQUIREMENTS, max_size=3))
    if draw(st.booleans()):
        fields["description"] = draw(DESCRIPTIONS)
        fields["description_content_type"] = draw(CONTENT_TYPES)
    metadata_version = draw(METADATA_VERSIONS)
    try:
        text = core_metadata_text(name, version, metadata_version=metadata_version, **fields)
    except TypeError:
        text = f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n"
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "duplicate", "insert", "replace"]))
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        if action == "drop" and lines:
            lines.pop(at)
        elif action == "duplicate" and lines:
            lines.insert(at, lines[at])
        elif action == "insert":
            header = draw(
                st.sampled_from(["Name", "Version", "Requires-Python", "Dynamic", "X", ""])
            )
            lines.insert(at, f"{header}: {draw(HOSTILE_TEXT)}")
        elif lines:
            lines[at] = draw(HOSTILE_TEXT)
    return "\n".join(lines)


ARCHIVE_MUTATIONS = [
    "metadata",
    "member-names",
    "duplicate-metadata",
    "links",
    "declared-size",
    "compression",
    "bomb",
    "flip-bytes",
    "truncate",
    "none",
]


@st.composite
def archives(draw: st.DrawFn) -> Archive:
    """A wheel or sdist of a valid name/version built in memory, with one hostile mutation."""
    kind = draw(st.sampled_from(["wheel", "sdist"]))
    name = draw(st.from_regex(r"fz[a-z0-9]{1,10}", fullmatch=True))
    version = draw(st.sampled_from(["1.0", "2.0.1", "0.1rc1"]))
    stem = escaped_name(name)
    mutation = draw(st.sampled_from(ARCHIVE_MUTATIONS))
    dist_info = f"{stem}-{version}.dist-info"
    metadata_member = f"{dist_info}/METADATA" if kind == "wheel" else f"{stem}-{version}/PKG-INFO"
    metadata_text = None
    wheel_extra: list[tuple[str, bytes]] = []
    sdist_extra: list[tuple[tarfile.TarInfo, bytes | None]] = []
    if mutation == "metadata":
        metadata_text = draw(metadata_texts(name, version))
    elif mutation == "member-names":
        for member in draw(st.lists(HOSTILE_MEMBER_NAMES, min_size=1, max_size=3)):
            wheel_extra.append((member, b"x = 1\n"))
            sdist_extra.append(tar_entry(member, b"x = 1\n"))
    elif mutation == "duplicate-metadata":
        other = draw(metadata_texts(name, draw(st.sampled_from([version, "6.6.6"])))).encode()
        wheel_extra.append((metadata_member, other))
        sdist_extra.append(tar_entry(metadata_member, other))
    elif mutation == "links":
        link_type = draw(
            st.sampled_from(
                [
                    tarfile.SYMTYPE,
                    tarfile.LNKTYPE,
                    tarfile.CHRTYPE,
                    tarfile.FIFOTYPE,
                    tarfile.DIRTYPE,
                ]
            )
        )
        target = draw(
            st.sampled_from(
                ["../../etc/passwd", "/etc/passwd", metadata_member, "PKG-INFO", ".", ""]
            )
        )
        member = draw(
            st.sampled_from([metadata_member, f"{stem}-{version}/link", f"{stem}-{version}"])
        )
        sdist_extra.append(tar_entry(member, type=link_type, linkname=target))
        wheel_extra.append((metadata_member + "/", b""))
    filename, data = (
        build_wheel(name, version, metadata_text=metadata_text, extra_entries=wheel_extra)
        if kind == "wheel"
        else build_sdist(name, version, metadata_text=metadata_text, extra_entries=sdist_extra)
    )
    if mutation == "declared-size":
        size = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 10**12, 2**63 - 1]))
        data = (
            patch_zip_size(data, metadata_member, size)
            if kind == "wheel"
            else patch_tar_size(data, "PKG-INFO", size)
        )
    elif mutation == "compression" and kind == "wheel":
        method = draw(st.sampled_from([zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99, 9, 0xFFFF]))
        data = patch_zip_method(data, metadata_member, method)
    elif mutation == "bomb":
        if kind == "wheel":
            data = build_wheel(
                name, version, extra_entries=[(f"{stem}/zeros.bin", bytes(2 * 1024 * 1024))]
            )[1]
        else:
            data = build_sdist(name, version, extra_files={"zeros.bin": bytes(2 * 1024 * 1024)})[1]
    elif mutation == "flip-bytes":
        raw = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[position] ^= draw(st.integers(1, 255))
        data = bytes(raw)
    elif mutation == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    return Archive(kind, name, version, filename, data, mutation)
