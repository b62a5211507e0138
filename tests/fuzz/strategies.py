"""Hypothesis strategies for structured-but-hostile input.

Each strategy keeps the outer shape a real client sends (a multipart upload, a wheel, a JWT, a
JSON object) and mutates what is inside, so cases get past the first check and reach the code
behind it. Sizes are bounded (a case is built in memory and sent in well under a second), but
include the shapes known to hurt: versions with thousands of digits, deep nesting, long
boundaries, descriptions built to make renderers work hard.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.builders import (
    build_sdist,
    build_wheel,
    core_metadata_text,
    escaped_name,
    tar_entry,
    zip_bytes,
)

# ----------------------------------------------------------------------------------- scalars


def lengths(most: int) -> st.SearchStrategy[int]:
    """Sizes up to `most`, with the limits that matter drawn often: 256 (python-multipart's
    boundary), 4,300 (digits Python turns into an int), and `most` itself."""
    marks = {64, 255, 256, 257, 1_000, 4_300, 4_301, 5_000, 20_000, 50_000, most}
    return st.one_of(st.integers(1, most), st.sampled_from(sorted(k for k in marks if k <= most)))


def repeated(units: list[str], most: int) -> st.SearchStrategy[str]:
    """`unit * n` for n up to `most`: the cheap way to long, pathological strings."""
    return st.builds(lambda unit, n: unit * n, st.sampled_from(units), lengths(most))


HOSTILE_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", " ", "\x00", "\r\n", "..", "../x", "/", "\\", "%00", "\ud7ff", "é" * 3]),
    repeated(["a", "9", "-", ".", "\x00", "é", "\n"], 5000),
)

PROJECT_NAMES = st.one_of(
    st.from_regex(r"fz[a-z0-9]{1,10}", fullmatch=True),
    st.from_regex(r"fz[a-z0-9._-]{0,20}[a-z0-9]", fullmatch=True),
    st.sampled_from(["requests", "os", "fz", "Fz-", "-fz", "fz..x", "ｆｚ", "fz\x00"]),
    HOSTILE_TEXT,
)

VERSIONS = st.one_of(
    st.sampled_from(
        ["1.0", "0.0.1", "1!2.0", "1.0.post1.dev2", "1.0rc1", "1.0+local", "v1.0", " 1.0 "]
    ),
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,6}){0,4}((a|b|rc)[0-9]{1,3})?", fullmatch=True),
    # Versions whose numbers have thousands of digits (Python refuses int() past 4,300).
    st.builds(
        lambda n, tail: "1." + "9" * n + tail,
        lengths(20_000),
        st.sampled_from(["", ".0", "rc1", ".post1"]),
    ),
    st.builds(lambda n: "9" * n + "!1.0", lengths(20_000)),
    st.builds(lambda n: ".".join(["1"] * n), lengths(5_000)),
    HOSTILE_TEXT,
)

METADATA_VERSIONS = st.one_of(
    st.sampled_from(["1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "3.0"]),
    st.sampled_from(["", "2", "2.4.1", "x", "2.4\x00"]),
    st.builds(lambda n: "2." + "4" * n, lengths(10_000)),
)

CLASSIFIERS = st.one_of(
    st.sampled_from(
        [
            "Programming Language :: Python :: 3",
            "License :: OSI Approved :: MIT License",
            "Development Status :: 5 - Production/Stable",
            "Private :: Do Not Upload",
            "Framework :: Django :: 9.9",
        ]
    ),
    HOSTILE_TEXT,
)

REQUIREMENTS = st.one_of(
    st.sampled_from(
        [
            "httpx>=0.27",
            "a[b,c]>=1; python_version >= '3.8'",
            "b @ https://example.com/b.whl",
            'c; extra == "test"',
            "d (>=1.0)",
            "e===1.0",
        ]
    ),
    # Deeply nested markers and long extras: parsers that recurse or backtrack.
    st.builds(lambda n: "a; " + "(" * n + "python_version > '3'" + ")" * n, lengths(5_000)),
    st.builds(lambda n: "a; " + " and ".join(["os_name == 'x'"] * n), lengths(3_000)),
    st.builds(lambda n: "a[" + ",".join(["x"] * n) + "]", lengths(5_000)),
    st.builds(lambda n: "a>=" + "1" * n, lengths(10_000)),
    HOSTILE_TEXT,
)

CONTENT_TYPES = st.sampled_from(
    [
        "text/markdown",
        "text/markdown; variant=GFM",
        "text/markdown; variant=CommonMark",
        "text/x-rst",
        "text/plain",
        "text/html",
        "text/markdown; charset=latin-1",
        "text/markdown; variant=nope",
        "",
        "junk/;;;=",
    ]
)


def _nested_list(n: int) -> str:
    return "\n".join("  " * i + "* x" for i in range(n)) + "\n"


def _nested_rst_list(n: int) -> str:
    return "\n\n".join("   " * i + "- x" for i in range(n)) + "\n"


DESCRIPTIONS = st.one_of(
    st.none(),
    st.text(max_size=2_000),
    # Shapes that make markdown and reStructuredText renderers work hard.
    repeated(
        [
            "> ",
            "* ",
            "[",
            "`",
            "*a",
            "_a",
            "<a>",
            "**",
            "![",
            "[a](",
            "\\",
            "|a| ",
            ".. ",
            ":a:`b` ",
            "=\n",
            "-\n",
            "::\n\n",
            "  ",
            "&#x",
            "<!--",
        ],
        50_000,
    ),
    st.builds(_nested_list, lengths(1_500)),
    st.builds(_nested_rst_list, lengths(1_200)),
    st.builds(lambda n: ">" * n + " x\n", lengths(50_000)),
    st.builds(lambda n: "[" * n + "a" + "](b)" * n, lengths(20_000)),
)


# Shapes each renderer is known to find hard, paired with that renderer's content type.
def large(most: int) -> st.SearchStrategy[int]:
    """Sizes where a trap springs: a renderer's cost grows with nesting, so small ones are
    plain text (drawn elsewhere) and these stay in the upper part of the range (which
    `st.integers` alone reaches rarely: it favours small numbers)."""
    return st.one_of(
        st.integers(most // 20, most), st.sampled_from([most // 10, most // 4, most // 2, most])
    )


# Shapes each renderer is known to find hard, paired with that renderer's content type.
MARKDOWN_TRAPS = st.one_of(
    st.builds(lambda n: "> " * n + "x\n", large(50_000)),  # nested block quotes
    st.builds(_nested_list, large(1_500)),
    st.builds(lambda n: "[" * n + "a" + "](b)" * n, large(20_000)),
    st.builds(lambda n: "*a " * n + "b*" * n, large(20_000)),
)
RST_TRAPS = st.one_of(
    st.builds(_nested_rst_list, large(1_200)),
    st.builds(lambda n: "".join(f"{' ' * i}x\n\n" for i in range(n)), large(1_200)),
    st.builds(lambda unit, n: unit * n, st.sampled_from(["|a| ", ":a:`b` ", "* "]), large(30_000)),
)
DESCRIPTION_CASES = st.one_of(
    st.tuples(DESCRIPTIONS.map(lambda d: d or ""), CONTENT_TYPES),
    st.tuples(MARKDOWN_TRAPS, st.sampled_from(["text/markdown", "text/markdown; variant=GFM"])),
    st.tuples(RST_TRAPS, st.sampled_from(["text/x-rst", ""])),  # "" renders as rst too
)


# ----------------------------------------------------------------------------------- JSON

# Half a UTF-16 pair: JSON can escape one ("\ud800"), UTF-8 cannot encode it.
LONE_SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.builds(lambda a, b: a + b, st.text(max_size=5), LONE_SURROGATES),
)

JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _nest(open_: str, close: str, n: int, core: str = "1") -> bytes:
    return (open_ * n + core + close * n).encode()


RAW_JSON_BODIES = st.one_of(
    st.builds(lambda n: _nest("[", "]", n), lengths(30_000)),  # bodies stop at 64 KiB
    st.builds(lambda n: _nest('{"a":', "}", n), lengths(10_000)),
    st.builds(lambda n: _nest('{"token":[', "]}", n, '"x"'), lengths(5_000)),
    st.builds(lambda n: b'{"to": ' + b"1" * n + b"}", lengths(60_000)),
    st.builds(lambda n: b'{"token": 1e' + b"9" * n + b"}", lengths(5_000)),
    st.sampled_from(
        [b"", b"null", b"[]", b'"x"', b"NaN", b"{", b'{"token": "\\ud800"}', b"\xff\xfe", b"{}" * 3]
    ),
    st.binary(max_size=200),
)


# ----------------------------------------------------------------------------------- JWTs


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_segment(value: Any) -> str:
    return b64url(json.dumps(value).encode())


JWT_HEADERS = st.fixed_dictionaries(
    {
        "alg": st.one_of(
            st.sampled_from(["RS256", "none", "HS256", "ES256", "PS256", ""]), JSON_VALUES
        )
    },
    optional={
        "kid": st.one_of(st.text(max_size=100), JSON_VALUES),
        "typ": st.sampled_from(["JWT", "at+jwt", ""]),
        "jku": st.sampled_from(["http://127.0.0.1:1/jwks", "file:///etc/passwd"]),
        "x5u": st.just("http://127.0.0.1:1/cert"),
        "crit": st.lists(st.text(max_size=10), max_size=3),
        "jwk": JSON_VALUES,
    },
)

CLAIM_NAMES = [
    "iss", "aud", "sub", "exp", "nbf", "iat", "jti", "repository", "repository_owner",
    "repository_owner_id", "repository_id", "workflow_ref", "job_workflow_ref", "ref",
    "ref_type", "environment", "event_name", "sha", "run_id", "run_attempt", "actor",
]  # fmt: skip

CLAIM_VALUES = st.one_of(
    JSON_VALUES,
    HOSTILE_TEXT,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(
        [
            "octo-org/demo",
            "octo-org/demo/.github/workflows/release.yml@refs/tags/v1.0.0",
            "refs/tags/v1.0.0",
            "keyless",
            "keyless-test",
            ["keyless", "other"],
            1e308,
            -1,
            0,
            2**63,
            2**64 + 1,
        ]
    ),
)


@st.composite
def mutated_claims(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A real job's claims with some replaced, dropped or added."""
    claims = dict(base)
    for name in draw(st.lists(st.sampled_from(CLAIM_NAMES), max_size=4, unique=True)):
        if draw(st.booleans()):
            claims[name] = draw(CLAIM_VALUES)
        else:
            claims.pop(name, None)
    claims.update(draw(st.dictionaries(st.text(max_size=12), CLAIM_VALUES, max_size=2)))
    return claims


@st.composite
def forged_jwts(draw: st.DrawFn, base_claims: dict[str, Any]) -> str:
    """Three base64url segments (or not quite): header, claims and a signature no key made."""
    header = _json_segment(draw(JWT_HEADERS))
    payload = _json_segment(draw(mutated_claims(base_claims)))
    signature = b64url(draw(st.binary(max_size=300)))
    segments = [header, payload, signature]
    mangle = draw(st.sampled_from(["none", "segments", "padding", "junk", "count"]))
    if mangle == "segments":
        index = draw(st.integers(0, 2))
        segments[index] = draw(st.one_of(st.text(max_size=50), st.just(b64url(b"\xff" * 9))))
    elif mangle == "padding":
        segments = [s + "==" for s in segments]
    elif mangle == "junk":
        segments[1] = b64url(draw(st.binary(max_size=100)))
    elif mangle == "count":
        segments = segments[: draw(st.integers(0, 2))] + ["x"] * draw(st.integers(0, 3))
    return ".".join(segments)


# ----------------------------------------------------------------------------------- archives


@dataclass(frozen=True)
class Archive:
    kind: str  # "wheel" or "sdist"
    name: str
    version: str
    filename: str
    data: bytes = field(repr=False)
    mutation: str = ""  # what was done to it, for the failure report


def patch_zip_size(data: bytes, member: str, size: int) -> bytes:
    """Declare `size` as the member's uncompressed size, in its local and central headers."""
    out = bytearray(data)
    name = member.encode()
    for signature, size_at, name_len_at, header in (
        (b"PK\x03\x04", 22, 26, 30),
        (b"PK\x01\x02", 24, 28, 46),
    ):
        pos = out.find(signature)
        while pos != -1:
            name_len = struct.unpack_from("<H", out, pos + name_len_at)[0]
            if bytes(out[pos + header : pos + header + name_len]) == name:
                struct.pack_into("<I", out, pos + size_at, size & 0xFFFFFFFF)
            pos = out.find(signature, pos + 4)
    return bytes(out)


def patch_zip_method(data: bytes, member: str, method: int) -> bytes:
    """Claim compression `method` (e.g. an unknown number) for a member, in both headers."""
    out = bytearray(data)
    name = member.encode()
    for signature, method_at, name_len_at, header in (
        (b"PK\x03\x04", 8, 26, 30),
        (b"PK\x01\x02", 10, 28, 46),
    ):
        pos = out.find(signature)
        while pos != -1:
            name_len = struct.unpack_from("<H", out, pos + name_len_at)[0]
            if bytes(out[pos + header : pos + header + name_len]) == name:
                struct.pack_into("<H", out, pos + method_at, method)
            pos = out.find(signature, pos + 4)
    return bytes(out)


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
        if name.endswith(suffix) and block[156:157] in (b"0", b"\0"):
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


@functools.lru_cache(maxsize=2)
def _zeros_deflated(size: int) -> bytes:
    return zip_bytes([("fz/zeros.bin", bytes(size))])


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
    st.text(st.characters(exclude_characters="\x00"), max_size=40),
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


# ----------------------------------------------------------------------------------- forms


@dataclass(frozen=True)
class Multipart:
    """A multipart body built by hand, so its boundary and framing can be hostile too."""

    content_type: str
    body: bytes
    note: str

    def __repr__(self) -> str:  # hypothesis prints failing cases: keep them readable
        return f"Multipart({self.note}, {len(self.body)} bytes: {self.body[:200]!r}...)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))


def digest_fields(data: bytes) -> dict[str, str]:
    return {
        "md5_digest": hashlib.md5(data).hexdigest(),  # noqa: S324 - the protocol's field
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }


BOUNDARY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=?"


def encode_multipart(
    fields: list[tuple[str, str]],
    file: tuple[str, bytes] | None,
    *,
    boundary: str,
    newline: bytes = b"\r\n",
    quote_boundary: bool = False,
    close: bool = True,
    disposition_style: str = "plain",
) -> Multipart:
    nl = newline
    dash = b"--" + boundary.encode()
    out = io.BytesIO()
    for key, value in fields:
        out.write(dash + nl)
        out.write(
            b'Content-Disposition: form-data; name="'
            + key.encode("utf-8", "surrogatepass")
            + b'"'
            + nl
            + nl
        )
        out.write(value.encode("utf-8", "surrogatepass") + nl)
    if file is not None:
        filename, data = file
        encoded_name = filename.encode("utf-8", "surrogatepass")
        if disposition_style == "plain":
            disposition = b'form-data; name="content"; filename="' + encoded_name + b'"'
        elif disposition_style == "star":
            disposition = b"form-data; name=\"content\"; filename*=UTF-8''" + encoded_name
        elif disposition_style == "unquoted":
            disposition = b"form-data; name=content; filename=" + encoded_name
        else:  # two filename parameters: which one counts?
            disposition = (
                b'form-data; name="content"; filename="x.whl"; filename="' + encoded_name + b'"'
            )
        out.write(dash + nl + b"Content-Disposition: " + disposition + nl)
        out.write(b"Content-Type: application/octet-stream" + nl + nl + data + nl)
    if close:
        out.write(dash + b"--" + nl)
    shown = f'"{boundary}"' if quote_boundary else boundary
    return Multipart(
        f"multipart/form-data; boundary={shown}",
        out.getvalue(),
        f"boundary of {len(boundary)} chars, newline {newline!r}, close={close}, "
        f"{disposition_style}",
    )


@st.composite
def framings(draw: st.DrawFn) -> dict[str, Any]:
    """How the multipart body is framed: usually as twine does, sometimes not at all."""
    if draw(st.integers(0, 3)):
        return {"boundary": "fuzzboundary" + "x" * draw(st.integers(0, 20))}
    return {
        "boundary": draw(
            st.one_of(
                st.text(BOUNDARY_CHARS, min_size=1, max_size=70),
                st.builds(lambda n: "b" * n, lengths(2_000)),
            )
        ),
        "newline": draw(st.sampled_from([b"\r\n", b"\n"])),
        "quote_boundary": draw(st.booleans()),
        "close": draw(st.booleans()),
        "disposition_style": draw(st.sampled_from(["plain", "star", "unquoted", "twice"])),
    }


FORM_FIELD_VALUES: dict[str, st.SearchStrategy[str]] = {
    "name": PROJECT_NAMES,
    "version": VERSIONS,
    "metadata_version": METADATA_VERSIONS,
    "classifiers": CLASSIFIERS,
    "requires_dist": REQUIREMENTS,
    "requires_python": st.one_of(
        st.sampled_from([">=3.8", "~=3.11", "==3.*", ">=3" * 3]),
        st.builds(lambda n: ">=" + "3" * n, lengths(10_000)),
        HOSTILE_TEXT,
    ),
    "summary": HOSTILE_TEXT,
    "description": st.one_of(DESCRIPTIONS.map(lambda d: d or ""), HOSTILE_TEXT),
    "description_content_type": CONTENT_TYPES,
    "keywords": HOSTILE_TEXT,
    "license_expression": st.one_of(
        st.sampled_from(["MIT", "MIT OR Apache-2.0", "(MIT", "LicenseRef-x"]),
        st.builds(lambda n: "(" * n + "MIT" + ")" * n, lengths(5_000)),
        HOSTILE_TEXT,
    ),
    "project_urls": st.one_of(st.just("Home, https://example.com"), HOSTILE_TEXT),
    "provides_extra": HOSTILE_TEXT,
    "dynamic": st.one_of(st.sampled_from(["Version", "Name", "Requires-Dist"]), HOSTILE_TEXT),
    "filetype": st.one_of(st.sampled_from(["sdist", "bdist_wheel", "bdist_egg", ""]), HOSTILE_TEXT),
    "pyversion": st.one_of(st.sampled_from(["source", "py3", "cp311", ""]), HOSTILE_TEXT),
    "md5_digest": st.one_of(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), HOSTILE_TEXT),
    "sha256_digest": st.one_of(st.from_regex(r"[0-9a-fA-F]{64}", fullmatch=True), HOSTILE_TEXT),
    "blake2_256_digest": st.one_of(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), HOSTILE_TEXT),
    ":action": st.sampled_from(["file_upload", "submit", "", "doc_upload"]),
    "protocol_version": st.sampled_from(["1", "2", "", "1\x00"]),
}


@dataclass(frozen=True)
class UploadCase:
    multipart: Multipart
    note: str
    label: str = ""  # the kind of case, for `event`
    file: bytes | None = field(default=None, repr=False)  # the file part's bytes, if any

    def __repr__(self) -> str:
        return f"UploadCase({self.note}; {self.multipart!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))


@st.composite
def upload_forms(draw: st.DrawFn) -> UploadCase:
    """A twine-shaped upload of a real archive, then its fields mutated: values replaced,
    fields dropped or sent twice, unknown fields added, and the file's name changed."""
    archive = draw(archives()) if draw(st.booleans()) else None
    if archive is None:
        kind = draw(st.sampled_from(["wheel", "sdist"]))
        name, version = draw(st.from_regex(r"fz[a-z0-9]{1,10}", fullmatch=True)), "1.0"
        filename, data = (
            build_wheel(name, version) if kind == "wheel" else build_sdist(name, version)
        )
    else:
        kind, name, version, filename, data = (
            archive.kind,
            archive.name,
            archive.version,
            archive.filename,
            archive.data,
        )
    base = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.4",
        "name": name,
        "version": version,
        "filetype": "bdist_wheel" if kind == "wheel" else "sdist",
        "pyversion": "py3" if kind == "wheel" else "source",
        **digest_fields(data),
    }
    fields = list(base.items())
    changed: list[str] = []
    for key in draw(st.lists(st.sampled_from(sorted(FORM_FIELD_VALUES)), max_size=4, unique=True)):
        action = draw(st.sampled_from(["replace", "drop", "twice"]))
        value = draw(FORM_FIELD_VALUES[key])
        if action == "replace":
            fields = [(k, v) for k, v in fields if k != key] + [(key, value)]
        elif action == "drop":
            fields = [(k, v) for k, v in fields if k != key]
        else:
            fields.append((key, value))
        changed.append(
            f"{action} {key}={value[:40]!r}{'...' if len(value) > 40 else ''} ({len(value)} chars)"
        )
    if draw(st.integers(0, 4)) == 0:
        odd_name = draw(
            st.one_of(
                st.text(max_size=20), st.sampled_from(["content", ":action", "name\x00", "a" * 300])
            )
        )
        fields.append((odd_name, draw(HOSTILE_TEXT)))
        changed.append(f"extra field {odd_name!r}")
    if draw(st.integers(0, 4)) == 0:
        filename = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "../" + filename,
                        "/tmp/" + filename,
                        filename.upper(),
                        filename + ".exe",
                        "",
                        "x\\" + filename,
                    ]
                ),
                st.text(max_size=300),
                repeated(["a"], 5_000).map(lambda s: s + ".whl"),
            )
        )
        changed.append(f"filename {filename[:60]!r}")
    file = None if draw(st.integers(0, 20)) == 0 else (filename, data)
    multipart = encode_multipart(fields, file, **draw(framings()))
    mutation = archive.mutation if archive else "valid archive"
    return UploadCase(
        multipart,
        f"{kind} ({mutation}); {'; '.join(changed) or 'fields as twine'}; {multipart.note}",
        file=data,
    )


# ----------------------------------------------------------------------------------- JSON calls


def json_body(value: Any) -> bytes:
    """`value` as JSON text the way a careless client might send it (NaN and all)."""
    return json.dumps(value).encode()


CONFIG_KEYS = [
    "owner", "repository", "workflow", "environment", "ref", "namespace", "project",
    "workflow_filepath", "email", "sub", "issuer", "claims",
]  # fmt: skip

PUBLISHER_KINDS = st.one_of(
    st.sampled_from(["github", "gitlab", "google", "generic", "", "GitHub"]), HOSTILE_TEXT
)

PUBLISHER_CONFIGS = st.one_of(
    st.dictionaries(st.sampled_from(CONFIG_KEYS), HOSTILE_TEXT, max_size=6),
    st.dictionaries(
        st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=10)), JSON_VALUES, max_size=4
    ),
    st.just({"owner": "octo-org", "repository": "demo", "workflow": "release.yml"}),
    JSON_VALUES,
)

# The object each JSON endpoint reads, with its fields' values made hostile.
BODY_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    "none": st.none(),
    "token": st.fixed_dictionaries({"token": st.one_of(HOSTILE_TEXT, JSON_VALUES)}),
    "reason": st.fixed_dictionaries({}, optional={"reason": st.one_of(HOSTILE_TEXT, JSON_VALUES)}),
    "status": st.fixed_dictionaries(
        {
            "status": st.one_of(
                st.sampled_from(["active", "archived", "quarantined", "deprecated", ""]),
                JSON_VALUES,
            )
        },
        optional={"reason": st.one_of(HOSTILE_TEXT, JSON_VALUES)},
    ),
    "publisher": st.fixed_dictionaries({"kind": PUBLISHER_KINDS, "config": PUBLISHER_CONFIGS}),
    "pending": st.fixed_dictionaries(
        {
            "project": st.one_of(PROJECT_NAMES, JSON_VALUES),
            "kind": PUBLISHER_KINDS,
            "config": PUBLISHER_CONFIGS,
        }
    ),
    "promote": st.fixed_dictionaries(
        {
            "to": st.one_of(
                st.sampled_from(["prod", "test", "private", "tiny", "nowhere", ""]), JSON_VALUES
            )
        }
    ),
}


@st.composite
def json_bodies(draw: st.DrawFn, shape: str) -> bytes | None:
    """Mostly the endpoint's own shape with hostile values; else any JSON, or raw bytes."""
    choice = draw(st.integers(0, 9))
    if choice < 6:
        value = draw(BODY_SHAPES[shape])
        if isinstance(value, dict) and draw(st.integers(0, 3)) == 0:
            value.update(draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3)))
        return None if value is None else json_body(value)
    if choice < 8:
        return json_body(draw(JSON_VALUES))
    return draw(RAW_JSON_BODIES)


# Form fields that are core metadata, and the builders' name for each (tests/builders.FIELDS).
METADATA_KEYS = {
    "name": None,  # the archive keeps its own: a hostile name goes in the form only
    "version": None,
    "metadata_version": None,
    "classifiers": "classifiers",
    "requires_dist": "requires_dist",
    "requires_python": "requires_python",
    "summary": "summary",
    "keywords": "keywords",
    "license_expression": "license_expression",
    "project_urls": "project_urls",
    "provides_extra": "provides_extra",
    "dynamic": "dynamic",
    "description": "description",
    "description_content_type": "description_content_type",
}


def hostile_field_case(
    form: dict[str, str],
    *,
    name: str = "fzcase",
    kind: str = "sdist",
    label: str = "",
    boundary: str = "fuzzbound",
) -> UploadCase:
    """A valid upload of `name` 1.0 but for the `form` fields given, which go in the form and,
    where a METADATA file can carry them, in the archive too."""
    version = "1.0"
    in_metadata = {
        target: ([value] if key == "project_urls" else value)
        for key, value in form.items()
        if (target := METADATA_KEYS[key])
    }
    builder = build_wheel if kind == "wheel" else build_sdist
    try:
        filename, data = builder(name, version, metadata=in_metadata)
    except (TypeError, ValueError, UnicodeEncodeError):
        filename, data = builder(name, version)
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.4",
        "name": name,
        "version": version,
        "filetype": "bdist_wheel" if kind == "wheel" else "sdist",
        "pyversion": "py3" if kind == "wheel" else "source",
        **digest_fields(data),
        **form,
    }
    multipart = encode_multipart(list(fields.items()), (filename, data), boundary=boundary)
    shown = {k: f"{v[:40]!r}... ({len(v)} chars)" for k, v in form.items()}
    return UploadCase(multipart, f"{kind}, hostile {shown}", label=label, file=data)


@st.composite
def one_hostile_field(draw: st.DrawFn) -> UploadCase:
    """A valid upload but for one metadata field, hostile in the form and, where a METADATA
    file can carry it, in the archive too: each value meets every parser of its field."""
    # Descriptions thrice as often: their renderers are the costliest code an upload reaches.
    key = draw(st.sampled_from([*METADATA_KEYS, "description", "description", "version"]))
    if key == "description":
        description, content_type = draw(DESCRIPTION_CASES)
        form = {"description": description, "description_content_type": content_type}
    else:
        form = {key: draw(FORM_FIELD_VALUES[key])}
    name = draw(st.from_regex(r"fz[a-z0-9]{1,10}", fullmatch=True))
    kind = draw(st.sampled_from(["wheel", "sdist"]))
    return hostile_field_case(form, name=name, kind=kind, label=key)


def long_boundary_case(length: int) -> UploadCase:
    """A valid upload framed with a multipart boundary of `length` characters (RFC 2046
    allows 70; clients send 30-odd; a parser may refuse more, but must not crash)."""
    return hostile_field_case({}, name="fzboundary", boundary="b" * length, label="boundary")
