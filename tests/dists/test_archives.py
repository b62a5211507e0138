"""read_core_metadata: archive hardening, PyPI's texts, and byte-exact metadata."""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from keyless.dists import ArchiveLimits, DistError, Policy, parse_dist_filename, read_core_metadata
from tests.builders import (
    MIB,
    absolute_path_sdist,
    build_sdist,
    build_wheel,
    core_metadata_text,
    device_sdist,
    duplicate_member_wheel,
    forged_wheel,
    hide_member,
    rename_in_local_header,
    sdist_with,
    symlink_escape_sdist,
    tar_bomb_sdist,
    tar_entry,
    tar_gz_bytes,
    traversal_sdist,
    traversal_wheel,
    two_top_dirs_sdist,
    zip_bomb_wheel,
    zip_tar_polyglot,
)

PRIVATE = Policy.for_profile("private")
WHEEL = "demo-1.0-py3-none-any.whl"
SDIST = "demo-1.0.tar.gz"
DEFAULT = ArchiveLimits()
ARCHIVES = "See https://docs.pypi.org/archives for more information"


def invalid(reason: str) -> str:
    return f"Invalid distribution file. {reason}"


def zip_refused(reason: str) -> str:
    return invalid(f"ZIP archive not accepted: {reason}. {ARCHIVES}")


def tar_refused(reason: str) -> str:
    return invalid(f"tar archive not accepted: {reason}. {ARCHIVES}")


def read(tmp_path: Path, filename: str, data: bytes, limits: ArchiveLimits = DEFAULT) -> bytes:
    path = tmp_path / filename
    path.write_bytes(data)
    return read_core_metadata(path, parse_dist_filename(filename, PRIVATE), limits)


def refusal(tmp_path: Path, filename: str, data: bytes, limits: ArchiveLimits = DEFAULT) -> str:
    with pytest.raises(DistError) as exc:
        read(tmp_path, filename, data, limits)
    return exc.value.message


# ------------------------------------------------------------------------------ accepted


def test_wheel_metadata_is_returned_byte_for_byte(tmp_path: Path) -> None:
    text = core_metadata_text(summary="Ünïcode", description="Body\r\nwith CRLF\r\n")
    filename, data = build_wheel(metadata_text=text)
    assert read(tmp_path, filename, data) == text.encode()


def test_sdist_pkg_info_is_returned_byte_for_byte(tmp_path: Path) -> None:
    text = core_metadata_text(summary="Ünïcode", description="Body\n")
    filename, data = build_sdist(metadata_text=text)
    assert read(tmp_path, filename, data) == text.encode()


@pytest.mark.parametrize(
    "dist",
    [
        build_wheel(license_files={"LICENSE": b"MIT", "sub/NOTICE": b"n"}),
        build_wheel(entry_points="[console_scripts]\ndemo = demo:main\ndemo.x-y = demo:y\n"),
        build_wheel(compression=zipfile.ZIP_STORED),
        build_wheel(tag="cp312-cp312-linux_x86_64"),
        build_wheel("Demo.Pkg", "2.0", build_tag="1"),
        # setuptools < 77 style: License-File under 2.1, file not under licenses/
        build_wheel(
            metadata_text=core_metadata_text(metadata_version="2.1") + "License-File: LICENSE\n",
            extra_files={"demo-1.0.dist-info/LICENSE": b"MIT"},
        ),
        build_sdist(license_files={"LICENSE": b"MIT", "LICENSES/Apache-2.0.txt": b"a"}),
        build_sdist("Demo.Pkg", "2.0"),
        sdist_with(tar_entry("demo-1.0/link", type=tarfile.SYMTYPE, linkname="src/demo")),
        sdist_with(tar_entry("demo-1.0/hard", type=tarfile.LNKTYPE, linkname="demo-1.0/PKG-INFO")),
        sdist_with(tar_entry("demo-1.0/up", type=tarfile.SYMTYPE, linkname="..")),
    ],
)
def test_valid_distributions_are_accepted(tmp_path: Path, dist: tuple[str, bytes]) -> None:
    assert read(tmp_path, *dist).startswith(b"Metadata-Version: ")


def test_forged_metadata_is_read_for_the_agreement_check(tmp_path: Path) -> None:
    # The archive itself is fine; check_artifact_agrees refuses the version mismatch.
    assert b"Version: 6.6.6" in read(tmp_path, *forged_wheel())


def test_dot_slash_member_names_are_accepted(tmp_path: Path) -> None:
    data = tar_gz_bytes(
        [
            tar_entry("./demo-1.0", type=tarfile.DIRTYPE),
            tar_entry("./demo-1.0/PKG-INFO", core_metadata_text().encode()),
        ]
    )
    assert read(tmp_path, SDIST, data) == core_metadata_text().encode()


def test_zip64_local_headers_are_understood(tmp_path: Path) -> None:
    _, data = build_wheel()
    sink = io.BytesIO(data)
    with (
        zipfile.ZipFile(sink, "a") as archive,
        archive.open("demo/big.py", "w", force_zip64=True) as f,
    ):
        f.write(b"x = 1\n")
    assert read(tmp_path, WHEEL, sink.getvalue()).startswith(b"Metadata-Version")


# ---------------------------------------------------------------------- format mismatches


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        (WHEEL, build_sdist()[1], invalid("File is not a zipfile")),
        (WHEEL, b"not an archive at all", invalid("File is not a zipfile")),
        (SDIST, build_wheel()[1], invalid("File is not a tarfile")),
        (SDIST, b"not an archive at all" * 100, invalid("File is not a tarfile")),
        (WHEEL, zip_tar_polyglot(), invalid("File is both a zip and a tar file")),
        (SDIST, zip_tar_polyglot(), invalid("File is both a zip and a tar file")),
    ],
)
def test_content_decides_the_format(
    tmp_path: Path, filename: str, data: bytes, message: str
) -> None:
    assert refusal(tmp_path, filename, data) == message


def test_uncompressed_tar_is_not_an_sdist(tmp_path: Path) -> None:
    data = gzip.decompress(build_sdist()[1])
    assert refusal(tmp_path, SDIST, data) == tar_refused("File is not gzip-compressed")


def test_truncated_sdist_is_corrupt(tmp_path: Path) -> None:
    data = build_sdist(extra_files={"big.bin": os.urandom(64 * 1024)})[1]
    message = refusal(tmp_path, SDIST, data[: len(data) // 2])
    assert message.startswith(invalid("tar archive not accepted: Corrupt archive ("))


# ---------------------------------------------------------------------------- bomb rule


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path, *zip_bomb_wheel()) == invalid("File exceeds compression ratio of 50")


def test_tar_bomb_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path, *tar_bomb_sdist()) == invalid("File exceeds compression ratio of 50")


SMALL = ArchiveLimits(max_decompressed_bytes=1 * MIB, max_ratio=50)


@pytest.mark.parametrize("builder", [build_wheel, build_sdist])
def test_bomb_rule_needs_both_size_and_ratio(
    tmp_path: Path, builder: Callable[..., tuple[str, bytes]]
) -> None:
    zeros = {"zeros.bin": bytes(2 * MIB)}  # compresses ~1000:1
    noise = {"noise.bin": os.urandom(2 * MIB)}  # does not compress
    dist_zeros = builder(extra_files=zeros)
    dist_noise = builder(extra_files=noise)
    assert refusal(tmp_path, *dist_zeros, SMALL) == invalid("File exceeds compression ratio of 50")
    read(tmp_path, *dist_zeros, ArchiveLimits(max_decompressed_bytes=4 * MIB))  # size under limit
    read(tmp_path, *dist_noise, SMALL)  # big, but ratio ~1


# --------------------------------------------------------------------------- zip framing


def wheel_with_comment() -> bytes:
    sink = io.BytesIO(build_wheel()[1])
    with zipfile.ZipFile(sink, "a") as archive:
        info = zipfile.ZipInfo("demo/commented.py", (2024, 1, 1, 0, 0, 0))
        info.comment = b"hidden"
        archive.writestr(info, b"")
    return sink.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (duplicate_member_wheel()[1], "Duplicate filename in central directory"),
        (
            rename_in_local_header(build_wheel()[1], "demo/__init__.py", "demo/__init__.pz"),
            "Filename not in central directory",
        ),
        (
            hide_member(build_wheel()[1], "demo/__init__.py"),
            "Unexpected data between local file records",
        ),
        (
            hide_member(build_wheel()[1], "demo-1.0.dist-info/RECORD"),
            "Unexpected data before central directory",
        ),
        (build_wheel(data_descriptors=True)[1], "ZIP contains a data descriptor"),
        (build_wheel()[1] + b"trailing", "Trailing data"),
        (b"prepended" + build_wheel()[1], "Mismatched central directory offset"),
        (wheel_with_comment(), "Comment in central directory"),
        (build_wheel(extra_files={"demo/\x01.py": b""})[1], "Invalid character in filename"),
    ],
)
def test_ambiguous_zip_structure_is_refused(tmp_path: Path, data: bytes, reason: str) -> None:
    assert refusal(tmp_path, WHEEL, data) == zip_refused(reason)


@pytest.mark.parametrize(
    "member",
    ["../evil.py", "/evil.py", "C:/evil.py", "demo/../../evil.py", "..\\evil.py", "\\evil"],
)
def test_unsafe_zip_paths_are_refused(tmp_path: Path, member: str) -> None:
    assert refusal(tmp_path, *traversal_wheel(member=member)) == zip_refused(
        f"Unsafe member path {member!r}"
    )


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_only_stored_and_deflated_members(tmp_path: Path, method: int) -> None:
    assert refusal(tmp_path, *build_wheel(compression=method)) == invalid(
        "File does not use a supported compression type"
    )


def test_too_many_zip_members(tmp_path: Path) -> None:
    dist = build_wheel(extra_files={f"demo/m{i}.py": b"" for i in range(10)})
    assert refusal(tmp_path, *dist, ArchiveLimits(max_members=5)) == zip_refused(
        "More than 5 members"
    )


def test_corrupt_member_is_refused(tmp_path: Path) -> None:
    text = core_metadata_text()
    data = build_wheel(metadata_text=text, compression=zipfile.ZIP_STORED)[1]
    data = data.replace(b"Name: demo", b"Name: evil", 1)  # same size, wrong CRC
    message = refusal(tmp_path, WHEEL, data)
    assert message.startswith(zip_refused("Member 'demo-1.0.dist-info/METADATA' is corrupt (")[:80])
    assert "CRC" in message


# --------------------------------------------------------------------- wheel contents


def test_checks_run_in_pypis_order(tmp_path: Path) -> None:
    # Unsupported compression is reported before the missing WHEEL file.
    dist = build_wheel(compression=zipfile.ZIP_BZIP2, omit=["WHEEL"])
    assert refusal(tmp_path, *dist) == invalid("File does not use a supported compression type")
    # A missing WHEEL file is reported before framing problems.
    dist = build_wheel(omit=["WHEEL"], data_descriptors=True)
    assert refusal(tmp_path, *dist) == invalid("WHEEL not found at demo-1.0.dist-info/WHEEL")


@pytest.mark.parametrize(
    ("dist", "message"),
    [
        (build_wheel(omit=["WHEEL"]), invalid("WHEEL not found at demo-1.0.dist-info/WHEEL")),
        (
            build_wheel(dist_info="demo-2.0.dist-info"),
            invalid("WHEEL not found at demo-1.0.dist-info/WHEEL"),
        ),
        (
            build_wheel(omit=["RECORD"]),
            f"Wheel '{WHEEL}' does not contain the required RECORD file: demo-1.0.dist-info/RECORD",
        ),
        (
            build_wheel(
                omit=["RECORD"], extra_entries=[("demo-1.0.dist-info/RECORD", b"\xff\xfe")]
            ),
            f"Wheel '{WHEEL}' does not contain the required RECORD file: demo-1.0.dist-info/RECORD",
        ),
        (
            build_wheel(omit=["METADATA"]),
            f"Wheel '{WHEEL}' does not contain the required METADATA file: "
            "demo-1.0.dist-info/METADATA",
        ),
        (
            build_wheel(entry_points="[console_scripts]\n../bin/evil = demo:main\n"),
            f"Wheel '{WHEEL}' has invalid entry points defined in the entry_points.txt file",
        ),
        (
            build_wheel(entry_points="not an ini file"),
            f"Wheel '{WHEEL}' has invalid entry points defined in the entry_points.txt file",
        ),
        (
            build_wheel(metadata={"license_files": ["LICENSE"]}),
            f"License-File LICENSE does not exist in distribution file {WHEEL} at "
            "demo-1.0.dist-info/licenses/LICENSE",
        ),
        (
            # Header names are case-insensitive: a quick look for the field must be too.
            build_wheel(metadata_text=core_metadata_text() + "license-FILE: LICENSE\n"),
            f"License-File LICENSE does not exist in distribution file {WHEEL} at "
            "demo-1.0.dist-info/licenses/LICENSE",
        ),
    ],
)
def test_wheel_contents_with_pypis_texts(
    tmp_path: Path, dist: tuple[str, bytes], message: str
) -> None:
    assert refusal(tmp_path, *dist) == message


def test_metadata_size_is_capped(tmp_path: Path) -> None:
    dist = build_wheel(metadata={"description": "x" * 5000})
    assert refusal(tmp_path, *dist, ArchiveLimits(max_metadata_bytes=1000)) == invalid(
        "demo-1.0.dist-info/METADATA is larger than the limit of 1000 bytes"
    )


# ------------------------------------------------------------------------------ sdists


@pytest.mark.parametrize(
    ("dist", "message"),
    [
        (traversal_sdist(), tar_refused("Unsafe member path '../evil.py'")),
        (
            traversal_sdist("demo-1.0/../../evil.py"),
            tar_refused("Unsafe member path 'demo-1.0/../../evil.py'"),
        ),
        (absolute_path_sdist(), tar_refused("Unsafe member path '/tmp/evil.py'")),
        (
            symlink_escape_sdist(),
            tar_refused("Link 'demo-1.0/passwd' points outside the archive ('../../etc/passwd')"),
        ),
        (
            symlink_escape_sdist("/etc/passwd"),
            tar_refused("Link 'demo-1.0/passwd' points outside the archive ('/etc/passwd')"),
        ),
        (
            # Each link looks harmless on its own; followed together they climb out.
            sdist_with(
                tar_entry("demo-1.0/up", type=tarfile.SYMTYPE, linkname=".."),
                tar_entry("demo-1.0/out", type=tarfile.SYMTYPE, linkname="up/.."),
            ),
            tar_refused("Link 'demo-1.0/out' points outside the archive ('up/..')"),
        ),
        (
            sdist_with(tar_entry("demo-1.0/loop", type=tarfile.SYMTYPE, linkname="loop/x")),
            tar_refused("Link 'demo-1.0/loop' points outside the archive ('loop/x')"),
        ),
        (
            sdist_with(tar_entry("demo-1.0/hard", type=tarfile.LNKTYPE, linkname="../etc/passwd")),
            tar_refused("Link 'demo-1.0/hard' points outside the archive ('../etc/passwd')"),
        ),
        (device_sdist(), tar_refused("Device or FIFO member 'demo-1.0/null' is not allowed")),
        (
            device_sdist(tarfile.BLKTYPE),
            tar_refused("Device or FIFO member 'demo-1.0/null' is not allowed"),
        ),
        (
            device_sdist(tarfile.FIFOTYPE),
            tar_refused("Device or FIFO member 'demo-1.0/null' is not allowed"),
        ),
        (
            sdist_with(tar_entry("demo-1.0/PKG-INFO", b"Metadata-Version: 2.4\nName: evil\n")),
            tar_refused("Duplicate member 'demo-1.0/PKG-INFO'"),
        ),
        (two_top_dirs_sdist(), invalid("Incorrect number of top-level directories in sdist")),
        (
            (SDIST, tar_gz_bytes([])),
            invalid("Incorrect number of top-level directories in sdist"),
        ),
        (build_sdist(omit_pkg_info=True), invalid("PKG-INFO not found at demo-1.0/PKG-INFO")),
        (
            build_sdist(
                omit_pkg_info=True,
                extra_entries=[tar_entry("demo-1.0/sub/PKG-INFO", core_metadata_text().encode())],
            ),
            invalid("PKG-INFO not found at demo-1.0/PKG-INFO"),
        ),
        (
            build_sdist(
                omit_pkg_info=True,
                extra_entries=[
                    tar_entry("demo-1.0/PKG-INFO", type=tarfile.SYMTYPE, linkname="pyproject.toml")
                ],
            ),
            invalid("PKG-INFO not found at demo-1.0/PKG-INFO"),
        ),
        (
            build_sdist(metadata={"license_files": ["LICENSE"]}),
            f"License-File LICENSE does not exist in distribution file {SDIST} at demo-1.0/LICENSE",
        ),
    ],
)
def test_hostile_sdists_are_refused(tmp_path: Path, dist: tuple[str, bytes], message: str) -> None:
    assert refusal(tmp_path, *dist) == message


def test_sparse_members_are_refused(tmp_path: Path) -> None:
    info, _ = tar_entry("demo-1.0/sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for entry, data in [
            tar_entry("demo-1.0", type=tarfile.DIRTYPE),
            tar_entry("demo-1.0/PKG-INFO", core_metadata_text().encode()),
        ]:
            archive.addfile(entry, io.BytesIO(data) if data is not None else None)
        archive.addfile(info)
    data = gzip.compress(raw.getvalue())
    assert refusal(tmp_path, SDIST, data) == tar_refused("Sparse members are not allowed")


def test_too_many_tar_members(tmp_path: Path) -> None:
    dist = build_sdist(extra_files={f"m{i}.py": b"" for i in range(10)})
    assert refusal(tmp_path, *dist, ArchiveLimits(max_members=5)) == tar_refused(
        "More than 5 members"
    )


def test_pkg_info_size_is_capped(tmp_path: Path) -> None:
    dist = build_sdist(metadata={"description": "x" * 5000})
    assert refusal(tmp_path, *dist, ArchiveLimits(max_metadata_bytes=1000)) == invalid(
        "demo-1.0/PKG-INFO is larger than the limit of 1000 bytes"
    )


def test_pre_2_4_license_files_are_not_required_in_sdists(tmp_path: Path) -> None:
    text = core_metadata_text(metadata_version="2.1") + "License-File: MISSING\n"
    assert read(tmp_path, *build_sdist(metadata_text=text)) == text.encode()


def patch_first_local_header(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of the first local file header (offsets per APPNOTE 4.3.7)."""
    patched = bytearray(data)
    struct.pack_into(fmt, patched, offset, value)
    return bytes(patched)


def wheel_with_extra(extra: bytes) -> bytes:
    sink = io.BytesIO(build_wheel()[1])
    with zipfile.ZipFile(sink, "a") as archive:
        info = zipfile.ZipInfo("demo/extra.py", (2024, 1, 1, 0, 0, 0))
        info.extra = extra
        archive.writestr(info, b"")
    return sink.getvalue()


def unicode_path(name: str) -> bytes:
    body = b"\x01" + struct.pack("<L", 0) + name.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (patch_first_local_header(build_wheel()[1], 8, "<H", 0), "Mis-matched compression method"),
        (patch_first_local_header(build_wheel()[1], 18, "<L", 1), "Mis-matched data size"),
        (patch_first_local_header(build_wheel()[1], 22, "<L", 1), "Mis-matched file size"),
        (wheel_with_extra(unicode_path("demo/other.py")), "Mis-matched Unicode path extra"),
        (
            wheel_with_extra(unicode_path("demo/extra.py") * 2),
            "Invalid duplicate extra in local file",
        ),
        (wheel_with_extra(b"\x01\x00\xff"), "Malformed zip file"),
    ],
)
def test_local_headers_must_describe_the_same_member(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    assert refusal(tmp_path, WHEEL, data) == zip_refused(reason)


def test_matching_unicode_path_extra_is_fine(tmp_path: Path) -> None:
    read(tmp_path, WHEEL, wheel_with_extra(unicode_path("demo/extra.py")))


def test_central_directory_record_count_must_match(tmp_path: Path) -> None:
    data = bytearray(build_wheel()[1])
    end = data.rindex(b"PK\x05\x06")
    count = struct.unpack_from("<H", data, end + 10)[0]
    struct.pack_into("<HH", data, end + 8, count + 1, count + 1)
    assert refusal(tmp_path, WHEEL, bytes(data)) == zip_refused(
        "Mismatched central directory records"
    )


@pytest.mark.parametrize(
    "fake_end",
    [b"PK\x05\x06" + bytes(18), b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 1, 1, 100, 0, 0)],
)
def test_zip_signature_inside_a_tarball_is_not_a_zip(tmp_path: Path, fake_end: bytes) -> None:
    # An sdist whose last bytes happen to contain an end-of-zip signature: zipfile.is_zipfile
    # says "zip", but no central directory is there, so it is just a tarball.
    tarball = gzip.decompress(build_sdist(extra_files={"data.bin": fake_end})[1])
    data = gzip.compress(tarball, compresslevel=0, mtime=0)  # stored: bytes appear verbatim
    path = tmp_path / SDIST
    path.write_bytes(data)
    assert zipfile.is_zipfile(path)
    assert read(tmp_path, SDIST, data).startswith(b"Metadata-Version")


@pytest.mark.parametrize(
    "data",
    [
        zip_tar_polyglot() + b"junk after the zip",
        build_sdist()[1] + b"PK\x05\x06" + bytes(18),  # a genuine empty zip at the end
    ],
)
def test_polyglots_are_caught_however_the_zip_is_appended(tmp_path: Path, data: bytes) -> None:
    assert refusal(tmp_path, SDIST, data) == invalid("File is both a zip and a tar file")
