"""Multipart upload bodies built by hand: twine's shape, with hostile fields and framing."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.builders import build_sdist, build_wheel

from .archives import archives
from .values import (
    CLASSIFIERS,
    CONTENT_TYPES,
    DESCRIPTION_CASES,
    DESCRIPTIONS,
    HOSTILE_TEXT,
    METADATA_VERSIONS,
    PROJECT_NAMES,
    REQUIREMENTS,
    VERSIONS,
    lengths,
    repeated,
)

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


def twine_fields(kind: str, name: str, version: str, data: bytes) -> dict[str, str]:
    """The fields twine sends for a file, from what the case knows rather than from the
    archive's METADATA, which a fuzzed archive may not have in any readable form."""
    return {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.4",
        "name": name,
        "version": version,
        "filetype": "bdist_wheel" if kind == "wheel" else "sdist",
        "pyversion": "py3" if kind == "wheel" else "source",
        **digest_fields(data),
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
    fields = list(twine_fields(kind, name, version, data).items())
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
    fields = {**twine_fields(kind, name, version, data), **form}
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
