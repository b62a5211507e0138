"""A local project on its index's merge list (`upstream-merge`) served with the upstream's files
as well: the one explicit way a name the index owns takes anything from the upstream.

Every file says where it comes from: `_source` ("local" or "upstream") in PEP 691 JSON and in
the JSON API (PEP 691/700 leave `_`-prefixed keys to the index), `data-keyless-source` in PEP
503 HTML. A file the index has wins over an upstream file of the same name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from keyless.dists.versions import oversized_number

from ..catalog import version_key
from ..pages import PageSet, project_html, project_json, rendered
from .upstream import UpstreamPage

LOCAL = "local"
UPSTREAM = "upstream"


def merge_pages(local: PageSet, upstream: PageSet | None, upstream_url: str) -> PageSet:
    """The local project's page with the upstream's files of other names (None: the upstream
    has no such project), each file marked with its source."""
    document = json.loads(local.json.body)
    files = [{**entry, "_source": LOCAL} for entry in document["files"]]
    versions = list(document["versions"])
    meta = {k: v for k, v in document["meta"].items() if k != "api-version"}
    if upstream is not None:
        theirs = json.loads(upstream.json.body)
        ours = {entry["filename"] for entry in files}
        files += [
            {**entry, "_source": UPSTREAM}
            for entry in theirs["files"]
            if entry["filename"] not in ours
        ]
        versions = sorted(set(versions) | set(theirs["versions"]), key=version_key)
        meta["_upstream"] = upstream_url
    status = document["project-status"]
    pair = (status["status"], status.get("reason"))
    return PageSet(
        html=rendered(project_html(document["name"], pair, files)),
        json=rendered(project_json(document["name"], pair, versions, files, meta)),
    )


def json_api_files(
    page: UpstreamPage, url: Callable[[str, str], str]
) -> dict[str, list[dict[str, Any]]]:
    """The upstream's files in the JSON API's shape, by version (read from their filenames;
    one that does not parse is left out); `url(sha256, filename)` is where this server serves
    it."""
    by_version: dict[str, list[dict[str, Any]]] = {}
    for f in page.files:
        version = version_of(f.filename)
        if version is None:
            continue
        wheel = f.filename.endswith(".whl")
        by_version.setdefault(str(version), []).append(
            {
                "comment_text": "",
                "digests": {"sha256": f.sha256},  # a simple page gives no other digest
                "downloads": -1,
                "filename": f.filename,
                "has_sig": False,
                "md5_digest": None,
                "packagetype": "bdist_wheel" if wheel else "sdist",
                # PyPI's: a wheel's Python tag (its filename's third field from the end, the
                # filename parsed above), "source" for an sdist.
                "python_version": f.filename.split("-")[-3] if wheel else "source",
                "requires_python": f.requires_python,
                "size": f.size,
                "upload_time": f.upload_time[:19] if f.upload_time else None,
                "upload_time_iso_8601": f.upload_time,
                "url": url(f.sha256, f.filename),
                "yanked": f.yanked is not False,
                "yanked_reason": f.yanked if isinstance(f.yanked, str) else None,
                "_source": UPSTREAM,
            }
        )
    return by_version


def version_of(filename: str) -> Version | None:
    """The version a distribution's filename gives, or None when it is not one's."""
    if oversized_number(filename):  # packaging would raise a plain ValueError
        return None
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
