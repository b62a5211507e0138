"""Reading the core metadata out of an uploaded archive, with the hardening an index needs.

An index hands the same bytes to many different unpackers (pip, uv, installers written in
other languages), so an archive is only accepted when every reasonable reader would see the
same members: zip local headers must agree with the central directory, nothing may hide
between records, and no member may point outside the unpack directory. All reads are
bounded, so a hostile upload costs at most a fixed amount of memory and CPU.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from keyless.dists import _texts
from keyless.dists.errors import DistError
from keyless.dists.filenames import WHEEL, DistFilename
from keyless.dists.metadata import declared_license_files

_MIB = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on the work one archive may cause.

    An archive is a decompression bomb when it decompresses to more than
    ``max_decompressed_bytes`` AND to more than ``max_ratio`` times its own size (PyPI's
    rule: well-compressing data files alone must not trip it).
    """

    max_decompressed_bytes: int = 64 * _MIB
    max_ratio: int = 50
    max_members: int = 100_000
    max_metadata_bytes: int = 10 * _MIB


def read_core_metadata(
    source: Path | BinaryIO, dist: DistFilename, limits: ArchiveLimits = ArchiveLimits()
) -> bytes:
    """Validate the archive (a path, or a seekable binary file) and return its core metadata
    file, byte for byte.

    For a wheel that is ``{name}-{version}.dist-info/METADATA`` (served unchanged as the
    PEP 658 metadata file); for an sdist, ``{top}/PKG-INFO``. The archive format is taken from
    its content, not its name: a file that is both a zip and a tar, or not the format its
    name says, is refused.

    Raises ``DistError`` whose ``message`` is the complete text for the client.
    """
    if isinstance(source, Path):
        with source.open("rb") as file:
            return read_core_metadata(file, dist, limits)
    fp = source
    size = fp.seek(0, os.SEEK_END)
    is_zip = _ends_like_zip(fp, size)
    is_tar = _starts_like_tar(fp)
    fp.seek(0)
    if is_zip and is_tar:
        raise DistError(_texts.invalid_distribution("File is both a zip and a tar file"))
    if dist.packagetype == WHEEL:
        if not is_zip:
            raise DistError(_texts.invalid_distribution("File is not a zipfile"))
        return _read_wheel(fp, size, dist, limits)
    if not is_tar:
        raise DistError(_texts.invalid_distribution("File is not a tarfile"))
    return _read_sdist(fp, size, dist, limits)


def _bomb_threshold(compressed_size: int, limits: ArchiveLimits) -> int:
    """Decompressed size beyond which both halves of the bomb rule hold."""
    return max(limits.max_decompressed_bytes, limits.max_ratio * compressed_size)


def _ends_like_zip(fp: BinaryIO, size: int) -> bool:
    """Whether a zip reader would find an archive here (as ``zipfile.is_zipfile`` does).

    Zip readers look for the end record near the end of the file, even with data after it,
    so that is what decides. Unlike ``is_zipfile``, the record must also point at a central
    directory: four random bytes in a compressed tarball are not a zip.
    """
    tail_start = max(0, size - (_END.size + _MAX16 + 1024))
    fp.seek(tail_start)
    tail = fp.read()
    pos = tail.rfind(_SIG_END)
    while pos != -1:
        if pos + _END.size <= len(tail):
            entries, cd_size = _END.unpack_from(tail, pos)[4:6]
            if pos >= _END64_LOCATOR.size and tail[pos - 20 : pos - 16] == _SIG_END64_LOCATOR:
                return True
            cd_start = tail_start + pos - cd_size
            if cd_size == 0 and entries == 0:
                # An empty zip has nothing to locate, so only a genuine one ends the file.
                comment_len = _END.unpack_from(tail, pos)[7]
                if pos + _END.size + comment_len == len(tail):
                    return True
            elif cd_start >= 0:
                fp.seek(cd_start)
                if fp.read(4) == _SIG_CENTRAL:
                    return True
        pos = tail.rfind(_SIG_END, 0, pos)
    return False


def _starts_like_tar(fp: BinaryIO) -> bool:
    """Whether the file opens with a tar header, uncompressed or gzip-compressed.

    Only the first block is decompressed, so probing a bomb costs nothing.
    """
    fp.seek(0)
    head = fp.read(64 * 1024)
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head, tarfile.BLOCKSIZE)
        except zlib.error:
            return False
    block = head[: tarfile.BLOCKSIZE]
    if block == bytes(tarfile.BLOCKSIZE):
        return True  # an empty archive (end-of-archive marker only) is still a tar file
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _unsafe_path(name: str) -> bool:
    """Absolute, drive-qualified, or climbing out with '..'."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[/\\]", name)


# --------------------------------------------------------------------------------------- zip

_SIG_LOCAL = b"PK\x03\x04"
_SIG_CENTRAL = b"PK\x01\x02"
_SIG_END = b"PK\x05\x06"
_SIG_END64 = b"PK\x06\x06"
_SIG_END64_LOCATOR = b"PK\x06\x07"

_END = struct.Struct(
    "<4s4H2LH"
)  # sig, disk, cd disk, entries here, entries, cd size, offset, comment
_END64_LOCATOR = struct.Struct("<4sLQL")  # sig, disk, end64 offset, disks
_END64 = struct.Struct(
    "<4sQ2H2L4Q"
)  # sig, size, made by, needed, disk, cd disk, entries.., cd size/offset
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")

_ZIP64_EXTRA = 0x0001
_UNICODE_PATH_EXTRA = 0x7075
_UTF8_FLAG = 0x800
_DATA_DESCRIPTOR_FLAG = 0x08
_SUPPORTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_UNPRINTABLE = frozenset({*range(0x20), 0x7F})
_MAX32 = 0xFFFFFFFF
_MAX16 = 0xFFFF


class _ZipStructureError(Exception):
    """The zip cannot be parsed unambiguously; the argument is PyPI-style reason text."""


@dataclass
class _Entry:
    raw_name: bytes
    name: str
    method: int
    compressed: int
    size: int
    offset: int


@dataclass
class _ZipLayout:
    entries: list[_Entry] = field(default_factory=list)
    problem: str | None = None  # first framing problem; reported after PyPI's earlier checks

    def note(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem


def _read_exact(fp: IO[bytes], offset: int, length: int) -> bytes:
    fp.seek(offset)
    data = fp.read(length)
    if len(data) != length:
        raise _ZipStructureError("Malformed zip file")
    return data


def _extras(blob: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while blob:
        if len(blob) < 4:
            raise _ZipStructureError("Malformed zip file")
        ident, length = struct.unpack_from("<HH", blob)
        if 4 + length > len(blob):
            raise _ZipStructureError("Malformed zip file")
        if ident in found and ident in (_ZIP64_EXTRA, _UNICODE_PATH_EXTRA):
            # Readers disagree on which copy wins, so a second copy is a disguise.
            raise _ZipStructureError("Invalid duplicate extra in local file")
        found[ident] = blob[4 : 4 + length]
        blob = blob[4 + length :]
    return found


def _check_unicode_path(extras: dict[int, bytes], name: str) -> None:
    # Some unzippers prefer this extra's name over the header's: they must be the same file.
    data = extras.get(_UNICODE_PATH_EXTRA)
    if data is None:
        return
    try:
        alt = data[5:].decode("utf-8")
    except UnicodeDecodeError:
        raise _ZipStructureError("Filename not valid UTF-8") from None
    if any(ord(c) in _UNPRINTABLE for c in alt):
        raise _ZipStructureError("Invalid character in filename")
    if alt != name:
        raise _ZipStructureError("Mis-matched Unicode path extra")


def _zip64_values(extra: bytes | None, wanted: list[bool]) -> list[int]:
    """Values of a ZIP64 extra field; ``wanted`` says which 8-byte fields it must hold."""
    count = sum(wanted)
    if extra is None or len(extra) < 8 * count:
        raise _ZipStructureError("Malformed zip file")
    return list(struct.unpack_from(f"<{count}Q", extra))


def _decode_name(raw: bytes, flags: int) -> str:
    if any(b in _UNPRINTABLE for b in raw):
        raise _ZipStructureError("Invalid character in filename")
    try:
        return raw.decode("utf-8") if flags & _UTF8_FLAG else raw.decode("cp437")
    except UnicodeDecodeError:
        raise _ZipStructureError("Filename not unicode") from None


def _find_end(fp: IO[bytes], size: int) -> tuple[int, tuple[int, ...]]:
    tail_start = max(0, size - (_END.size + _MAX16))
    tail = _read_exact(fp, tail_start, size - tail_start)
    pos = tail.rfind(_SIG_END)
    while pos != -1:
        record = _END.unpack_from(tail, pos) if pos + _END.size <= len(tail) else None
        # The end record (plus its comment) must be the last thing in the file: bytes after
        # it are where a second, concatenated archive would hide.
        if record is not None and pos + _END.size + record[7] == len(tail):
            return tail_start + pos, record
        pos = tail.rfind(_SIG_END, 0, pos)
    raise _ZipStructureError("Trailing data")


def _scan_zip(fp: IO[bytes], size: int, limits: ArchiveLimits) -> _ZipLayout:
    """Parse the zip structure independently of ``zipfile`` and cross-check every record."""
    end_pos, end = _find_end(fp, size)
    _, disk, cd_disk, entries_here, entries, cd_size, cd_offset, _ = end
    cd_end = end_pos
    locator_pos = end_pos - _END64_LOCATOR.size
    if locator_pos >= 0 and _read_exact(fp, locator_pos, 4) == _SIG_END64_LOCATOR:
        _, _, end64_pos, _ = _END64_LOCATOR.unpack(
            _read_exact(fp, locator_pos, _END64_LOCATOR.size)
        )
        if end64_pos + _END64.size != locator_pos:
            raise _ZipStructureError("Malformed zip file")
        sig, rest, _, _, disk, cd_disk, entries_here, entries, cd_size, cd_offset = _END64.unpack(
            _read_exact(fp, end64_pos, _END64.size)
        )
        if sig != _SIG_END64:
            raise _ZipStructureError("Malformed zip file")
        if rest != _END64.size - 12:
            raise _ZipStructureError("ZIP64 extensible data not allowed")
        cd_end = end64_pos
    if disk != 0 or cd_disk != 0 or entries_here != entries:
        raise _ZipStructureError("Malformed zip file")
    if entries > limits.max_members:
        raise _ZipStructureError(f"More than {limits.max_members} members")
    if cd_offset + cd_size != cd_end:
        raise _ZipStructureError("Mismatched central directory offset")

    layout = _ZipLayout()
    seen: set[str] = set()
    pos = cd_offset
    while pos < cd_end:
        if len(layout.entries) >= limits.max_members:
            raise _ZipStructureError(f"More than {limits.max_members} members")
        header = _CENTRAL.unpack(_read_exact(fp, pos, _CENTRAL.size))
        (sig, _, _, flags, method, _, _, _, compressed, size_, name_len, extra_len) = header[:12]
        comment_len, start_disk, _, _, offset = header[12:]
        if sig != _SIG_CENTRAL:
            raise _ZipStructureError("Unknown record signature")
        raw_name = _read_exact(fp, pos + _CENTRAL.size, name_len)
        extras = _extras(_read_exact(fp, pos + _CENTRAL.size + name_len, extra_len))
        pos += _CENTRAL.size + name_len + extra_len + comment_len
        name = _decode_name(raw_name, flags)
        _check_unicode_path(extras, name)
        wanted = [size_ == _MAX32, compressed == _MAX32, offset == _MAX32]
        if any(wanted):
            values = iter(_zip64_values(extras.get(_ZIP64_EXTRA), wanted))
            size_ = next(values) if wanted[0] else size_
            compressed = next(values) if wanted[1] else compressed
            offset = next(values) if wanted[2] else offset
        if comment_len:
            layout.note("Comment in central directory")
        if start_disk not in (0, _MAX16):
            raise _ZipStructureError("Malformed zip file")
        if name in seen:
            layout.note("Duplicate filename in central directory")
        seen.add(name)
        layout.entries.append(_Entry(raw_name, name, method, compressed, size_, offset))
    if pos != cd_end:
        raise _ZipStructureError("Mismatched central directory size")
    if len(layout.entries) != entries:
        raise _ZipStructureError("Mismatched central directory records")
    _walk_local_headers(fp, layout, cd_offset)
    return layout


def _walk_local_headers(fp: IO[bytes], layout: _ZipLayout, cd_offset: int) -> None:
    """Local records must tile the file from byte 0 to the central directory, each one
    describing the same member as its central directory entry."""
    expected = 0
    for entry in sorted(layout.entries, key=lambda e: e.offset):
        if entry.offset != expected:
            layout.note("Unexpected data between local file records")
            return
        header = _LOCAL.unpack(_read_exact(fp, entry.offset, _LOCAL.size))
        sig, _, flags, method, _, _, _, compressed, size_, name_len, extra_len = header
        if sig != _SIG_LOCAL:
            layout.note("Missing filename in local headers")
            return
        raw_name = _read_exact(fp, entry.offset + _LOCAL.size, name_len)
        extras = _extras(_read_exact(fp, entry.offset + _LOCAL.size + name_len, extra_len))
        if any(b in _UNPRINTABLE for b in raw_name):
            layout.note("Invalid character in filename")
        if raw_name != entry.raw_name:
            layout.note("Filename not in central directory")
            return
        _check_unicode_path(extras, entry.name)
        if flags & _DATA_DESCRIPTOR_FLAG:
            # Streaming readers take sizes from the descriptor, others from the directory.
            layout.note("ZIP contains a data descriptor")
            return
        if method != entry.method:
            layout.note("Mis-matched compression method")
        if size_ == _MAX32 or compressed == _MAX32:
            size_, compressed = _zip64_values(extras.get(_ZIP64_EXTRA), [True, True])[:2]
        if compressed != entry.compressed:
            layout.note("Mis-matched data size")
        if size_ != entry.size:
            layout.note("Mis-matched file size")
        expected = entry.offset + _LOCAL.size + name_len + extra_len + entry.compressed
    if expected != cd_offset:
        layout.note("Unexpected data before central directory")


def _read_zip_member(archive: zipfile.ZipFile, name: str, cap: int) -> bytes | None:
    """A member's bytes, or None if absent; refuses members larger than ``cap``."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > cap:
        raise DistError(
            _texts.invalid_distribution(f"{name} is larger than the limit of {cap} bytes")
        )
    try:
        with archive.open(info) as member:
            # zipfile stops at the declared size and checks the CRC, so a member that lies
            # about its size fails here instead of inflating without bound.
            return member.read(cap + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DistError(_texts.zip_not_accepted(f"Member {name!r} is corrupt ({exc})")) from exc


_ENTRY_POINT_NAME = re.compile(r"[\w.-]+")


def _entry_points_valid(data: bytes) -> bool:
    """entry_points.txt is UTF-8 INI with '=' and script names without path parts."""
    # Imported here: only wheels with entry points need it, and `keyless publish` reads its
    # wheels through this module (configparser's import is ~8 million instructions).
    import configparser

    try:
        text = data.decode("utf-8")
        parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # names keep their case
        parser.read_string(text)
    except (UnicodeDecodeError, configparser.Error):
        return False
    for section in ("console_scripts", "gui_scripts"):
        if parser.has_section(section) and not all(
            _ENTRY_POINT_NAME.fullmatch(name) for name in parser[section]
        ):
            return False
    return True


def _read_wheel(fp: BinaryIO, size: int, dist: DistFilename, limits: ArchiveLimits) -> bytes:
    try:
        layout = _scan_zip(fp, size, limits)
    except _ZipStructureError as exc:
        raise DistError(_texts.zip_not_accepted(str(exc))) from None

    if sum(e.size for e in layout.entries) > _bomb_threshold(size, limits):
        raise DistError(_texts.compression_ratio_exceeded(limits.max_ratio))
    if any(e.method not in _SUPPORTED_METHODS for e in layout.entries):
        raise DistError(
            _texts.invalid_distribution("File does not use a supported compression type")
        )
    # Like PyPI, the .dist-info directory is named from the filename exactly as uploaded.
    name, version = dist.filename.split("-", 2)[:2]
    dist_info = f"{name}-{version}.dist-info"
    names = {e.name for e in layout.entries}
    if f"{dist_info}/WHEEL" not in names:
        raise DistError(_texts.invalid_distribution(f"WHEEL not found at {dist_info}/WHEEL"))
    if layout.problem is not None:
        raise DistError(_texts.zip_not_accepted(layout.problem))
    for member in sorted(names):
        if _unsafe_path(member):
            raise DistError(_texts.zip_not_accepted(f"Unsafe member path {member!r}"))

    fp.seek(0)
    try:
        archive = zipfile.ZipFile(fp)
    except zipfile.BadZipFile as exc:  # the scan above accepts a subset of what zipfile does
        raise DistError(_texts.zip_not_accepted(str(exc))) from exc
    with archive:
        metadata_name = f"{dist_info}/METADATA"
        metadata = _read_zip_member(archive, metadata_name, limits.max_metadata_bytes)
        if metadata is not None and len(metadata) > limits.max_metadata_bytes:
            raise DistError(_texts.invalid_distribution(f"{metadata_name} is too large"))
        for license_file in declared_license_files(metadata or b""):
            target = f"{dist_info}/licenses/{license_file}"
            if target not in names:
                raise DistError(
                    f"License-File {license_file} does not exist in distribution file "
                    f"{dist.filename} at {target}"
                )
        record = _read_zip_member(archive, f"{dist_info}/RECORD", limits.max_decompressed_bytes)
        if record is None or not _record_readable(record):
            raise DistError(
                f"Wheel '{dist.filename}' does not contain the required RECORD file: "
                f"{dist_info}/RECORD"
            )
        entry_points = _read_zip_member(
            archive, f"{dist_info}/entry_points.txt", limits.max_metadata_bytes
        )
        if entry_points is not None and not _entry_points_valid(entry_points):
            raise DistError(
                f"Wheel '{dist.filename}' has invalid entry points defined in the "
                "entry_points.txt file"
            )
        if metadata is None:
            raise DistError(
                f"Wheel '{dist.filename}' does not contain the required METADATA file: "
                f"{metadata_name}"
            )
        return metadata


def _record_readable(data: bytes) -> bool:
    try:
        for _row in csv.reader(data.decode("utf-8").splitlines()):
            pass
    except (UnicodeDecodeError, csv.Error):
        return False
    return True


# --------------------------------------------------------------------------------------- tar


class _TooMuchData(Exception):
    pass


class _Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CountingReader(io.RawIOBase):
    """Decompressed bytes of the tar stream, refusing to produce more than ``limit``."""

    def __init__(self, source: _Source, limit: int) -> None:
        self._source = source
        self._limit = limit
        self.total = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # Never more than 1 MiB at a time, so the limit is checked before memory grows.
        chunk = self._source.read(_MIB if size < 0 else min(size, _MIB))
        self.total += len(chunk)
        if self.total > self._limit:
            raise _TooMuchData
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


_MAX_LINK_HOPS = 40  # like the kernel's ELOOP limit; more is a loop or an attack


def _path_parts(name: str) -> list[str]:
    return [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]


def _resolve(parts: list[str], symlinks: dict[str, str]) -> list[str] | None:
    """Where a path inside the archive ends up once unpacked, following the archive's own
    symlinks; None if it leaves the unpack directory (or loops)."""
    resolved: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(part)
        target = symlinks.get("/".join(resolved))
        if target is None:
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS or _unsafe_absolute(target):
            return None
        resolved.pop()
        pending[:0] = _path_parts(target)
    return resolved


def _unsafe_absolute(target: str) -> bool:
    return target.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", target) is not None


@dataclass
class _SdistScan:
    names: set[str] = field(default_factory=set)
    directories: set[str] = field(default_factory=set)
    top_levels: list[str] = field(default_factory=list)
    symlinks: dict[str, str] = field(default_factory=dict)
    hardlinks: dict[str, str] = field(default_factory=dict)
    pkg_info: bytes | None = None


def _check_tar_member(member: tarfile.TarInfo, scan: _SdistScan) -> list[str]:
    name = member.name
    if _unsafe_path(name):
        raise DistError(_texts.tar_not_accepted(f"Unsafe member path {name!r}"))
    if member.issparse():
        # Sparse files need GNU extensions that other unpackers ignore or misread.
        raise DistError(_texts.tar_not_accepted("Sparse members are not allowed"))
    if member.ischr() or member.isblk() or member.isfifo():
        raise DistError(_texts.tar_not_accepted(f"Device or FIFO member {name!r} is not allowed"))
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise DistError(_texts.tar_not_accepted(f"Unsupported member type for {name!r}"))
    parts = _path_parts(name)
    if not parts:
        return parts
    path = "/".join(parts)
    if path in scan.names and not (member.isdir() and path in scan.directories):
        # Unpackers disagree on whether the first or the last copy wins.
        raise DistError(_texts.tar_not_accepted(f"Duplicate member {name!r}"))
    scan.names.add(path)
    if member.isdir():
        scan.directories.add(path)
    if parts[0] not in scan.top_levels:
        scan.top_levels.append(parts[0])
    if member.issym():
        scan.symlinks[path] = member.linkname
    elif member.islnk():
        scan.hardlinks[path] = member.linkname
    return parts


def _check_links(scan: _SdistScan) -> None:
    for path, target in sorted(scan.symlinks.items()):
        # A symlink's target is relative to the directory holding the link.
        base = path.split("/")[:-1]
        if _unsafe_absolute(target) or _resolve(base + _path_parts(target), scan.symlinks) is None:
            raise DistError(
                _texts.tar_not_accepted(f"Link {path!r} points outside the archive ({target!r})")
            )
    for path, target in sorted(scan.hardlinks.items()):
        # A hard link's target is an archive member path.
        if _unsafe_absolute(target) or _resolve(_path_parts(target), scan.symlinks) is None:
            raise DistError(
                _texts.tar_not_accepted(f"Link {path!r} points outside the archive ({target!r})")
            )


def _scan_tar_stream(stream: _CountingReader, scan: _SdistScan, limits: ArchiveLimits) -> None:
    # Stream mode reads each header once, front to back, and never seeks: memory stays flat
    # and the decompressed byte count covers everything the archive makes us inflate.
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for count, member in enumerate(archive, start=1):
            if count > limits.max_members:
                raise DistError(_texts.tar_not_accepted(f"More than {limits.max_members} members"))
            parts = _check_tar_member(member, scan)
            if (
                scan.pkg_info is None
                and len(parts) == 2
                and parts[1] == "PKG-INFO"
                and parts[0] == scan.top_levels[0]
                and member.isreg()
            ):
                if member.size > limits.max_metadata_bytes:
                    raise DistError(
                        _texts.invalid_distribution(
                            f"{member.name} is larger than the limit of "
                            f"{limits.max_metadata_bytes} bytes"
                        )
                    )
                extracted = archive.extractfile(member)
                if extracted is not None:
                    scan.pkg_info = extracted.read(member.size)
    # Inflate the rest too: it checks the gzip CRC, and the bomb rule must see it all.
    while stream.read(_MIB):
        pass


def _read_sdist(fp: BinaryIO, size: int, dist: DistFilename, limits: ArchiveLimits) -> bytes:
    if fp.read(2) != b"\x1f\x8b":
        raise DistError(_texts.tar_not_accepted("File is not gzip-compressed"))
    fp.seek(0)
    scan = _SdistScan()
    stream = _CountingReader(gzip.GzipFile(fileobj=fp, mode="rb"), _bomb_threshold(size, limits))
    try:
        _scan_tar_stream(stream, scan, limits)
    except _TooMuchData:
        raise DistError(_texts.compression_ratio_exceeded(limits.max_ratio)) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DistError(_texts.tar_not_accepted(f"Corrupt archive ({exc})")) from None
    _check_links(scan)

    if len(scan.top_levels) != 1:
        raise DistError(
            _texts.invalid_distribution("Incorrect number of top-level directories in sdist")
        )
    top = scan.top_levels[0]
    if scan.pkg_info is None:
        raise DistError(_texts.invalid_distribution(f"PKG-INFO not found at {top}/PKG-INFO"))
    for license_file in declared_license_files(scan.pkg_info):
        target = f"{top}/{license_file}"
        if target not in scan.names:
            raise DistError(
                f"License-File {license_file} does not exist in distribution file "
                f"{dist.filename} at {target}"
            )
    return scan.pkg_info
