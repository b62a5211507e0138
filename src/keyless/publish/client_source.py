"""Where the jobs `keyless init` writes get the keyless client from: a keyless index, asked
which client it serves (``/+client/``). What the install step then runs is rendered by
keyless.workflows.client (`install_commands`), the one home of the install step.

    source = fetch_client_source("https://pypi.example.com", http)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from keyless.publish.errors import PublishError
from keyless.publish.init import certificate_untrusted
from keyless.workflows import CLIENT_PATH, ClientSource

__all__ = ["ClientSource", "fetch_client_source", "index_base_url", "resolve_client_source"]

_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_URL = re.compile(r"https?://[^\s'\"]+\Z")  # it goes into a shell line and a YAML file


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
        if certificate_untrusted(exc):
            raise PublishError(
                f"the TLS certificate of {base} is not trusted by this machine, so which "
                "keyless client it serves could not be asked.",
                hint="trust the CA that signed it: pass its PEM file with --cert (for a "
                "certificate made by `keyless dev-cert`, the ca.pem it wrote) or set "
                "SSL_CERT_FILE to it.",
            ) from exc
        raise PublishError(
            f"could not ask {url} which keyless client it serves: {exc}", hint=hint
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
