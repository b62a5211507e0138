"""The release client this server runs, as a wheel and a hash-pinned requirements file.

A CI job that publishes to a keyless index installs its client from the index itself (the
`/+client/` routes): keyless is not on PyPI, and whoever registered the name there would run
code in the job that holds the upload token. The wheel is made from the installed package
(its files and its dist-info), reproducibly — sorted entries, fixed timestamps and
permissions — so for one version and one code its sha256 does not change between starts, and
a workflow pinned to it keeps working until the server's code changes. The requirements file
pins the client's dependencies (the lock checked in at keyless/publish/locks/client.txt,
from PyPI) and keyless itself by URL, each with its sha256, for `pip install --require-hashes`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import io
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import keyless
from keyless.workflows.client import CLIENT_PATH as CLIENT_PATH  # served by routes.client

# The zip epoch: a fixed time for every entry, so the bytes depend on the contents only.
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_SKIPPED = {"__pycache__"}
_WHEEL = "Wheel-Version: 1.0\nGenerator: keyless\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


class ClientUnavailable(Exception):
    """This keyless cannot serve its client; the message says why and what to do."""


@dataclass(frozen=True)
class ClientWheel:
    """The wheel of the running keyless: its name, bytes and sha256 (hex)."""

    version: str
    filename: str
    data: bytes
    sha256: str


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _package_files(package_dir: Path) -> list[tuple[str, bytes]]:
    """(path in the wheel, bytes) of every file of the package but compiled bytecode."""
    found = []
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir)
        if not path.is_file() or _SKIPPED & set(relative.parts) or path.suffix in {".pyc"}:
            continue
        found.append((f"keyless/{relative.as_posix()}", path.read_bytes()))
    return found


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


@functools.cache
def client_wheel() -> ClientWheel:
    """The wheel of the keyless that runs this code, built on first use and then kept.

    Its METADATA (name, version, dependencies and extras) and entry points are those of the
    installed distribution; its files are the package's as they are on disk.
    """
    try:
        distribution = importlib.metadata.distribution("keyless")
    except importlib.metadata.PackageNotFoundError:
        raise ClientUnavailable(
            "this keyless runs from a source tree that is not installed, so it has no "
            "metadata to build its client from: install it (pip install -e '.[server]')."
        ) from None
    version = distribution.version
    info = f"keyless-{version}.dist-info"
    metadata = distribution.read_text("METADATA") or ""
    unpinned = _unpinned(distribution.requires or [])
    if unpinned:
        raise ClientUnavailable(
            f"keyless {version} needs {', '.join(unpinned)}, which the client lock "
            "(keyless/publish/locks/client.txt) does not pin: run `make client-lock`, or "
            "reinstall keyless if its installed metadata is older than its code."
        )
    entry_points = distribution.read_text("entry_points.txt") or ""
    entries = _package_files(Path(keyless.__file__).parent)
    entries += [
        (f"{info}/METADATA", metadata.encode("utf-8")),
        (f"{info}/WHEEL", _WHEEL.encode("utf-8")),
        (f"{info}/entry_points.txt", entry_points.encode("utf-8")),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode("utf-8")))
    data = _zip(entries)
    return ClientWheel(
        version=version,
        filename=f"keyless-{version.replace('-', '_')}-py3-none-any.whl",
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _unpinned(requires: list[str]) -> list[str]:
    """The client's dependencies (not an extra's) that the lock does not pin."""
    pinned = {
        canonicalize_name(Requirement(line.rstrip(" \\")).name)
        for line in client_lock().splitlines()
        if line and not line.startswith((" ", "#"))
    }
    needed = []
    for text in requires:
        requirement = Requirement(text)
        if requirement.marker and "extra" in str(requirement.marker):
            continue
        if canonicalize_name(requirement.name) not in pinned:
            needed.append(requirement.name)
    return sorted(needed)


def client_lock() -> str:
    """The checked-in lock of the client's dependencies, without its generated header."""
    text = resources.files("keyless.publish").joinpath("locks/client.txt").read_text("utf-8")
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def client_requirements(wheel: ClientWheel, wheel_url: str) -> str:
    """The requirements file that installs this client, every file pinned by sha256."""
    return (
        f"# keyless {wheel.version}, the release client this index runs, and its dependencies\n"
        "# (from PyPI), each pinned by sha256. Install with:\n"
        "#   python -m pip install --require-hashes -r THIS-FILE\n"
        f"keyless @ {wheel_url} \\\n"
        f"    --hash=sha256:{wheel.sha256}\n" + client_lock()
    )


def client_folder(base_url: str, wheel: ClientWheel) -> str:
    """The URL of the folder that serves this client's wheel and requirements file."""
    return f"{base_url.rstrip('/')}{CLIENT_PATH}{wheel.version}"


def client_description(base_url: str) -> dict[str, Any]:
    """What ``{base_url}/+client/`` answers: the client's version, and the URLs and sha256 of
    its wheel and of its requirements file (which names the wheel's URL, so its sha256
    depends on ``base_url``). The web page's workflow snippets can pin the client with it
    (keyless.workflows.ClientSource) without asking the server over HTTP.

    Raises ClientUnavailable.
    """
    wheel = client_wheel()
    folder = client_folder(base_url, wheel)
    wheel_url = f"{folder}/{wheel.filename}"
    requirements = client_requirements(wheel, wheel_url).encode("utf-8")
    return {
        "name": "keyless",
        "version": wheel.version,
        "wheel": {"filename": wheel.filename, "url": wheel_url, "sha256": wheel.sha256},
        "requirements": {
            "url": f"{folder}/requirements.txt",
            "sha256": hashlib.sha256(requirements).hexdigest(),
        },
    }
