"""Server-side promotion: ask a keyless server to put a staged release on its production index.

The server copies no bytes — the production index gets the very files (same sha256) that were
install-tested on staging. That needs both indexes on one keyless server; `locate` tells
whether two upload URLs are that, so a caller can fall back to uploading the same files.

    pair = locate(staging_upload_url, production_upload_url, http=http)
    if pair is not None:
        files = promote(pair, "demo", "1.2.0", token=credentials.token(), http=http)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from packaging.utils import canonicalize_name

from keyless.publish.errors import PublishError
from keyless.publish.indexclient import redact, server_message
from keyless.publish.reporter import FileResult


class PromoteUnsupported(PublishError):
    """The server has no promote endpoint (an older keyless, or not keyless at all)."""


@dataclass(frozen=True)
class IndexPair:
    """Two indexes of one keyless server: `source` (staging) and `target` (production)."""

    base: str  # the server's root URL, no trailing slash
    source: str
    target: str
    target_profile: str | None = None  # the target's policy profile ("pypi", "private")

    def promote_url(self, project: str, version: str) -> str:
        name = canonicalize_name(project)
        return (
            f"{self.base}/{quote(self.source)}/api/projects/{quote(name)}/releases/"
            f"{quote(version, safe='')}/promote"
        )


def _split(upload_url: str) -> tuple[str, str] | None:
    """(server root, index name) of a keyless upload URL `<root>/<index>/legacy/`."""
    parts = urlsplit(upload_url)
    segments = parts.path.rstrip("/").split("/")
    if len(segments) < 3 or segments[-1] != "legacy" or not segments[-2]:
        return None
    root_path = "/".join(segments[:-2])
    return urlunsplit((parts.scheme, parts.netloc, root_path, "", "")), segments[-2]


def locate(staging_url: str, production_url: str, *, http: httpx.Client) -> IndexPair | None:
    """The two indexes as one keyless server's pair, or None when they are not.

    None when the URLs are not `<root>/<index>/legacy/` on the same root, name the same index,
    or the root does not answer as a keyless server listing both. Never raises.
    """
    staging, production = _split(staging_url), _split(production_url)
    if staging is None or production is None:
        return None
    if staging[0] != production[0] or staging[1] == production[1]:
        return None
    base = staging[0]
    try:
        answer = http.get(base + "/", headers={"Accept": "application/json"})
        document = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("service") != "keyless":
        return None
    indexes = document.get("indexes")
    if not isinstance(indexes, dict) or staging[1] not in indexes or production[1] not in indexes:
        return None
    target = indexes[production[1]]
    profile = target.get("profile") if isinstance(target, dict) else None
    return IndexPair(
        base=base,
        source=staging[1],
        target=production[1],
        target_profile=profile if isinstance(profile, str) else None,
    )


def _results(document: Any, base: str) -> list[FileResult]:
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, list):
        raise PublishError("the promote answer lists no files.", context={"url": base})
    results: list[FileResult] = []
    for entry in files:
        if not isinstance(entry, dict):
            continue
        results.append(
            FileResult(
                filename=str(entry.get("filename", "?")),
                status="uploaded" if entry.get("status") == "promoted" else "exists",
                url=str(entry["url"]) if entry.get("url") else None,
                sha256=str(entry.get("sha256", "")),
                size=int(entry.get("size", 0) or 0),
            )
        )
    return results


def promote(
    pair: IndexPair, project: str, version: str, *, token: str, http: httpx.Client
) -> list[FileResult]:
    """Promote `project` `version` from `pair.source` to `pair.target`; the files on the
    target, "uploaded" (new there) or "exists" (the same bytes were there already).

    `token` is an upload token for the TARGET index (an API token of an owner of the project
    on both indexes, or a Trusted Publishing token minted for the target). Raises
    PromoteUnsupported when the server has no promote endpoint, PublishError (with the
    server's message) when it refuses or cannot be reached.
    """
    url = pair.promote_url(project, version)
    shown = redact(url)
    context = {"url": shown}
    try:
        answer = http.post(
            url,
            json={"to": pair.target},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise PublishError(f"cannot reach {shown}: {exc}", context=context) from exc
    if answer.status_code == 200:
        try:
            return _results(answer.json(), shown)
        except ValueError:
            raise PublishError(f"{shown} answered 200 without JSON.", context=context) from None
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code in (404, 405) and not (isinstance(body, dict) and "message" in body):
        raise PromoteUnsupported(
            f"{pair.base} has no promote endpoint (HTTP {answer.status_code}).",
            hint="upgrade the keyless server, or publish to production instead of promoting.",
            context=context,
        )
    message = server_message(answer)
    hint = None
    if answer.status_code == 403:
        hint = (
            f"promoting needs a token for the target index {pair.target!r}: a Trusted "
            f"Publishing token of a publisher registered for the project on {pair.target!r}, "
            "or an API token of a user who owns the project on both indexes."
        )
    raise PublishError(
        f"promoting {project} {version} from {pair.source!r} to {pair.target!r} failed: {message}",
        hint=hint,
        context={**context, "status": str(answer.status_code)},
    )
