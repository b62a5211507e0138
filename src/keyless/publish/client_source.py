"""How a CI job installs its release client: the one home of the install step `keyless init`
writes, in the build job (for `keyless check`) and in every publish job.

A job that publishes can obtain an upload token, so whatever it installs runs next to that
token: the client is pinned by version and sha256, never `pip install keyless` (keyless is not
on PyPI, and whoever registered the name there would run code in the job).

- ``keyless``: from a keyless index, which serves the very client it runs at ``/+client/``
  (keyless.index.routes.client). The job downloads the index's requirements file for that
  version, checks the file's sha256 (asked from the index when the workflow is written) and
  installs it with ``pip install --require-hashes``: the file pins the keyless wheel and each
  dependency (from PyPI) by sha256.
- ``uv``: from PyPI, its version and the sha256 of each of its files written into the step
  (the lock checked in at keyless/publish/locks/uv.txt; uv has no dependencies).

    source = fetch_client_source("https://pypi.example.com", http)
    lines = install_lines("keyless", source)
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from keyless.publish.errors import PublishError

__all__ = [
    "CLIENT_PATH",
    "REQUIREMENTS_FILE",
    "ClientSource",
    "describe_uv",
    "fetch_client_source",
    "index_base_url",
    "install_lines",
    "resolve_client_source",
    "uv_pin",
]

Client = Literal["keyless", "uv"]

# Where a keyless index serves its client (= keyless.index.routes.client.PREFIX + "/").
CLIENT_PATH = "/+client/"
# The name the job saves the downloaded requirements file under.
REQUIREMENTS_FILE = "keyless-client.txt"
_UV_FILE = "uv-client.txt"
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_URL = re.compile(r"https?://[^\s'\"]+\Z")  # it goes into a shell line and a YAML file


@dataclass(frozen=True)
class ClientSource:
    """The keyless client a keyless index serves: its version, and the requirements file
    that installs it (URL and sha256)."""

    index_url: str
    version: str
    requirements_url: str
    requirements_sha256: str

    def describe(self) -> str:
        """Where the client comes from and how it is pinned, in one sentence."""
        return (
            f"keyless {self.version} from the keyless index at {self.index_url} "
            f"({self.requirements_url}), pinned by sha256: the requirements file's, checked "
            "by sha256sum, and in it each file's, checked by pip --require-hashes"
        )


def index_base_url(upload_url: str) -> str | None:
    """The server URL of a keyless upload URL (``https://HOST[/PREFIX]/INDEX/legacy/``),
    or None when the URL is not of that shape."""
    parts = urlsplit(upload_url)
    segments = parts.path.rstrip("/").split("/")
    if len(segments) < 3 or segments[-1] != "legacy" or not segments[-2]:
        return None
    return f"{parts.scheme}://{parts.netloc}{'/'.join(segments[:-2])}"


def fetch_client_source(index_url: str, http: httpx.Client) -> ClientSource:
    """Ask the keyless index at ``index_url`` (its server URL) which client it serves.

    Raises PublishError, saying what to do, when it cannot be reached or serves no client.
    """
    base = index_url.rstrip("/")
    url = base + CLIENT_PATH
    hint = (
        "pass --client-source with the URL of a keyless index that serves its client "
        f"(it answers {CLIENT_PATH}), or --client uv."
    )
    try:
        answer = http.get(url)
    except httpx.HTTPError as exc:
        raise PublishError(
            f"could not ask {url} which keyless client it serves: {exc}",
            hint=hint + " An index whose certificate is not trusted here: pass --cert CA.pem.",
        ) from exc
    try:
        described: Any = answer.json() if answer.status_code == 200 else {}
        requirements = described["requirements"]
        source = ClientSource(
            index_url=base,
            version=str(described["version"]),
            requirements_url=str(requirements["url"]),
            requirements_sha256=str(requirements["sha256"]),
        )
    except (ValueError, TypeError, KeyError):
        raise PublishError(
            f"{url} answered {answer.status_code} and does not describe a keyless client: "
            "is this a keyless index, of a version that serves its client?",
            hint=hint,
        ) from None
    if not _SHA256.match(source.requirements_sha256) or not _URL.match(source.requirements_url):
        raise PublishError(f"{url} describes its client with a malformed URL or sha256.")
    return source


def resolve_client_source(
    choice: str | None, upload_urls: Sequence[str], http: httpx.Client
) -> ClientSource | None:
    """The source of the keyless client for a workflow publishing to ``upload_urls``.

    ``choice``: a keyless index's URL, ``pypi`` (None: keyless is not on PyPI, so nothing
    can be pinned there), or None for the first keyless index among the targets (None when
    all are PyPI's). Raises PublishError when the chosen index does not serve its client.
    """
    if choice == "pypi":
        return None
    if choice is None:
        bases = [base for base in map(index_base_url, upload_urls) if base]
        if not bases:
            return None
        choice = bases[0]
    parts = urlsplit(choice)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.username:
        raise PublishError(
            f"--client-source {choice!r} is neither 'pypi' nor the URL of a keyless index.",
            hint="write it like https://pypi.example.com (the server, without /INDEX/...).",
        )
    return fetch_client_source(choice, http)


def uv_pin() -> tuple[str, str]:
    """(version, requirements text) of the uv the generated jobs install, from the lock."""
    text = resources.files("keyless.publish").joinpath("locks/uv.txt").read_text("utf-8")
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    match = re.match(r"uv==(\S+)", lines[0])
    if match is None:
        raise PublishError("keyless' uv lock (keyless/publish/locks/uv.txt) pins no uv version.")
    return match.group(1), "\n".join(lines) + "\n"


def install_lines(client: Client, source: ClientSource | None) -> list[str]:
    """The shell commands of a job's install step, each a line of the step.

    The ``keyless`` client needs the ``source`` it comes from; ``uv`` comes from PyPI.
    Raises PublishError for the keyless client without a source.
    """
    if client == "uv":
        _, requirements = uv_pin()
        heredoc = f"cat > {_UV_FILE} <<'EOF'\n{requirements}EOF"
        return [heredoc, f"python -m pip install --require-hashes -r {_UV_FILE}"]
    if source is None:
        raise PublishError(
            "keyless is not on PyPI, so a job cannot install it from there pinned by sha256.",
            hint="pass --client-source with the URL of a keyless index (it serves its own "
            f"client at {CLIENT_PATH}), or --client uv to publish with uv.",
        )
    return [
        # Python, not curl: every image that runs pip has it (python:3-slim has no curl).
        "python -c 'import sys, urllib.request; urllib.request.urlretrieve(*sys.argv[1:])' "
        f"{shlex.quote(source.requirements_url)} {REQUIREMENTS_FILE}",
        f'echo "{source.requirements_sha256}  {REQUIREMENTS_FILE}" | sha256sum --check -',
        f"python -m pip install --require-hashes -r {REQUIREMENTS_FILE}",
    ]


def describe_uv() -> str:
    """Where uv comes from and how it is pinned, in one sentence."""
    version, requirements = uv_pin()
    files = requirements.count("--hash=sha256:")
    return (
        f"uv {version} from PyPI, pinned by version and sha256 (its {files} files' hashes are "
        "written into the step, checked by pip --require-hashes)"
    )
