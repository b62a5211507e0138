"""Raw uploads over HTTP, shaped exactly like twine's multipart request, for error-path tests."""

from __future__ import annotations

import datetime as dt
import email.parser
import hashlib
import io
import tarfile
import zipfile
from dataclasses import dataclass
from typing import Any

import httpx

from tests.builders import build_sdist, build_wheel

# Core-metadata headers that twine sends as repeated form fields.
MULTI_USE = {
    "classifier": "classifiers",
    "requires-dist": "requires_dist",
    "project-url": "project_urls",
    "provides-extra": "provides_extra",
    "license-file": "license_file",
    "dynamic": "dynamic",
    "platform": "platform",
    "supported-platform": "supported_platform",
}


def core_metadata_of(filename: str, data: bytes) -> bytes:
    if filename.endswith(".whl"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            return archive.read(name)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        member = next(
            m
            for m in archive.getmembers()
            if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
        )
        extracted = archive.extractfile(member)
        assert extracted is not None
        return extracted.read()


def form_fields(filename: str, data: bytes, **overrides: str | None) -> list[tuple[str, str]]:
    """The fields twine would send for this file; `overrides` replace (None removes) fields."""
    message = email.parser.BytesParser().parsebytes(core_metadata_of(filename, data))
    fields: list[tuple[str, str]] = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("filetype", "bdist_wheel" if filename.endswith(".whl") else "sdist"),
        ("pyversion", "py3" if filename.endswith(".whl") else "source"),
        ("md5_digest", hashlib.md5(data).hexdigest()),  # noqa: S324 - the protocol's field
        ("sha256_digest", hashlib.sha256(data).hexdigest()),
        ("blake2_256_digest", hashlib.blake2b(data, digest_size=32).hexdigest()),
    ]
    for key, value in message.items():
        lowered = key.lower()
        fields.append((MULTI_USE.get(lowered, lowered.replace("-", "_")), str(value)))
    body = message.get_payload()
    if isinstance(body, str) and body.strip():
        fields.append(("description", body))
    for field, override in overrides.items():
        fields = [(k, v) for k, v in fields if k != field]
        if override is not None:
            fields.append((field, override))
    return fields


def upload(
    client: httpx.Client,
    index: str,
    token: str | None,
    filename: str,
    data: bytes,
    fields: list[tuple[str, str]] | None = None,
    **overrides: str | None,
) -> httpx.Response:
    """POST one file to /{index}/legacy/ as twine does (Basic auth with __token__)."""
    # httpx.Auth() sends no credentials (as None would, which `post` is not typed to take).
    auth = ("__token__", token) if token else httpx.Auth()
    pairs = fields if fields is not None else form_fields(filename, data, **overrides)
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return client.post(
        f"/{index}/legacy/",
        data=grouped,
        files={"content": (filename, data, "application/octet-stream")},
        auth=auth,
    )


@dataclass
class Published:
    """A release's wheel and sdist as uploaded, and the moments just before and after."""

    wheel: tuple[str, bytes]
    sdist: tuple[str, bytes]
    before: dt.datetime
    after: dt.datetime


def publish_wheel_and_sdist(
    client: httpx.Client, index: str, token: str, name: str, version: str, metadata: dict[str, Any]
) -> Published:
    """Upload a wheel, then an sdist, of `name` `version`; the times bound their upload-time."""
    before = dt.datetime.now(dt.UTC)
    wheel = build_wheel(name, version, metadata=metadata)
    sdist = build_sdist(name, version, metadata=metadata)
    for filename, data in (wheel, sdist):
        answer = upload(client, index, token, filename, data)
        assert answer.status_code == 200, answer.text
    return Published(wheel=wheel, sdist=sdist, before=before, after=dt.datetime.now(dt.UTC))
