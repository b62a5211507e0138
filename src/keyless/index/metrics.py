"""The server's counters, and their Prometheus text exposition (served at `/_/metrics`).

Counting sits on the hot path (every cached simple page is counted), so a counter is a plain
list slot or attribute incremented on the event loop: no lock, no label lookup, no allocation.
The text is written here rather than with prometheus_client: it is a few lines of a small,
stable format (https://prometheus.io/docs/instrumenting/exposition_formats/), and that
library's counters take a lock per increment.

The counters belong to one process. With several workers each has its own, and whoever
scrapes sums them per instance; the HELP lines say so.
"""

from __future__ import annotations

import os

from keyless.store import db

# Route classes, as the request paths fall (see `route_class`); "other" is health, metrics,
# the client served at /+client/ and the owners' JSON API.
ROUTE_CLASSES = ("simple", "files", "upload", "json", "oidc", "web", "other")
SIMPLE, FILES, UPLOAD, JSON, OIDC, WEB, OTHER = range(len(ROUTE_CLASSES))
# Status classes by the hundreds digit; a request that ended with no response is counted a
# 5xx, as the access log logs it a 500.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

PER_PROCESS = "Counted by this server process since it started (per process: sum over workers)."

_API_AREAS = {"simple": SIMPLE, "pypi": JSON, "api": OTHER}


def route_class(path: str) -> int:
    """The route class of a request path (an index into ROUTE_CLASSES)."""
    parts = path.split("/", 4)  # "", first, second, third, rest
    first = parts[1] if len(parts) > 1 else ""
    if first == "files":
        return FILES
    if first == "_":
        return OIDC if len(parts) > 2 and parts[2] == "oidc" else OTHER
    if first == ".well-known":
        return OIDC
    if first == "+client":
        return OTHER
    if len(parts) > 2:
        second = parts[2]
        if second == "legacy":
            rest = parts[3] if len(parts) > 3 else ""
            if not rest:
                return UPLOAD  # POST /{index}/legacy/
            # hatch's check for files already there reads the simple page; the release links
            # hatch and flit print lead to web pages.
            return SIMPLE if rest == "+simple" else WEB
        area = _API_AREAS.get(second)
        if area is not None:
            return area
    return WEB  # the web pages own every other path (index/web/__init__.py)


class Metrics:
    """Counters of one server process; `exposition()` renders them."""

    def __init__(self) -> None:
        # requests[route class][status // 100 - 1]
        self.requests = [[0] * len(STATUS_CLASSES) for _ in ROUTE_CLASSES]
        # Cached simple pages answered before any routing (IndexApp), by status class: simple
        # requests and cache hits both, added to those when rendered.
        self.cached_pages = [0] * len(STATUS_CLASSES)
        self.upload_bytes = 0
        self.mints: dict[str, int] = {}  # outcome: "ok" or the refusal's PyPI error code

    def count_request(self, route: int, status: int) -> None:
        self.requests[route][min(max(status // 100, 1), 5) - 1 if status else 4] += 1

    def count_mint(self, outcome: str) -> None:
        # Outcomes are the mint's fixed set of error codes, so the labels stay few.
        self.mints[outcome] = self.mints.get(outcome, 0) + 1

    def exposition(self, cache_hits: int, cache_misses: int) -> str:
        """The Prometheus text format (version 0.0.4) of every counter.

        `cache_hits` and `cache_misses` are the simple-page cache's own counts (SimplePages);
        the pages answered before routing are added to the hits here.
        """
        lines: list[str] = []
        _family(
            lines,
            "keyless_requests_total",
            "HTTP requests answered, by route class and status class.",
        )
        requests = [list(row) for row in self.requests]
        requests[SIMPLE] = [a + b for a, b in zip(requests[SIMPLE], self.cached_pages, strict=True)]
        for route, row in zip(ROUTE_CLASSES, requests, strict=True):
            for status, count in zip(STATUS_CLASSES, row, strict=True):
                lines.append(f'keyless_requests_total{{route="{route}",status="{status}"}} {count}')
        _family(
            lines,
            "keyless_upload_bytes_total",
            "Request body bytes received by the upload route, whatever the upload's outcome.",
        )
        lines.append(f"keyless_upload_bytes_total {self.upload_bytes}")
        _family(
            lines,
            "keyless_oidc_mints_total",
            "Trusted Publishing token exchanges, by outcome: ok, or the refusal's error code.",
        )
        for outcome in sorted(self.mints.keys() | {"ok"}):
            lines.append(
                f'keyless_oidc_mints_total{{outcome="{_label(outcome)}"}} '
                f"{self.mints.get(outcome, 0)}"
            )
        _family(
            lines,
            "keyless_simple_cache_hits_total",
            "Simple pages (project and root) answered from memory.",
        )
        hits = cache_hits + sum(self.cached_pages)
        lines.append(f"keyless_simple_cache_hits_total {hits}")
        _family(
            lines,
            "keyless_simple_cache_misses_total",
            "Simple pages looked up in the database (not in memory: first request after a "
            "change, or no such project).",
        )
        lines.append(f"keyless_simple_cache_misses_total {cache_misses}")
        _family(
            lines,
            "keyless_db_transactions_total",
            "Database transactions begun, reading or writing (a writing one commits with an "
            "fsync).",
        )
        for mode, count in zip(("read", "write"), db.TRANSACTIONS, strict=True):
            lines.append(f'keyless_db_transactions_total{{mode="{mode}"}} {count}')
        # Which process answered: with `serve --workers N`, a scrape reaches one of them.
        lines.append(
            "# HELP keyless_process_id The id of the server process these counters are of."
        )
        lines.append("# TYPE keyless_process_id gauge")
        lines.append(f"keyless_process_id {os.getpid()}")
        return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text} {PER_PROCESS}")
    lines.append(f"# TYPE {name} counter")


def _label(value: str) -> str:
    # The format's escapes for a label value: backslash, double quote, line feed.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
