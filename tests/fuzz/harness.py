"""What every fuzz test needs: how many examples, the server's health, and the store's state.

The invariants (issue 10): never a 5xx, never a hang past a deadline, nothing stored on
refusal, and the server answers a health check during and after. `Guard.check` holds an answer
to them; `Watchdog` polls `/_/health` from another thread for the whole module.

`make test` runs the small profile (a few thousand cases in all); `make fuzz` sets
KEYLESS_FUZZ_PROFILE=deep (ten times as many); KEYLESS_FUZZ_EXAMPLES=<n> sets every test's
count outright, e.g. to run one test at length.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, settings

from tests.conftest import LiveServer

# An answer later than this is a hang (it is far above any honest request's time here).
ANSWER_DEADLINE = 10.0
# The health check must answer within this, during and after each example, even on a loaded
# 2-core machine; a request that blocks the event loop for seconds fails it.
HEALTH_DEADLINE = 3.0
PROFILE_SCALE = {"small": 1, "deep": 10}


def fuzz_settings(small_examples: int) -> settings:
    """Hypothesis settings for a test that runs `small_examples` cases under `make test`."""
    override = os.environ.get("KEYLESS_FUZZ_EXAMPLES")
    profile = os.environ.get("KEYLESS_FUZZ_PROFILE", "small")
    if profile not in PROFILE_SCALE:
        raise ValueError(f"KEYLESS_FUZZ_PROFILE must be one of {sorted(PROFILE_SCALE)}")
    examples = int(override) if override else small_examples * PROFILE_SCALE[profile]
    return settings(
        max_examples=examples,
        deadline=None,  # our own deadline is the HTTP client's timeout
        # Shrinking a hang costs ANSWER_DEADLINE per step; the first failing case is reported
        # as found (with its seed) rather than spending minutes of `make test` on it.
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
        print_blob=True,
        report_multiple_bugs=False,
    )


# Tables a refused request must leave exactly as they were.
WATCHED_TABLES = (
    "projects",
    "releases",
    "files",
    "filename_log",
    "core_metadata",
    "journal",
    "publishers",
    "api_tokens",
)
_COUNTS = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in WATCHED_TABLES)  # noqa: S608 - fixed names


@dataclass(frozen=True)
class StoreState:
    rows: dict[str, int]
    temp_files: frozenset[str]
    blobs: frozenset[str]  # of the hashes asked about, those stored


class Store:
    """The server's database (a read-only connection) and blob folder, as tests see them.

    Listing every blob costs tens of milliseconds once there are hundreds; a case instead
    names the hashes it could have stored (its file's), and `orphan_blobs` looks at them all
    once at the end of a module.
    """

    def __init__(self, server: LiveServer) -> None:
        self.blobs = server.data_dir / "blobs"
        self.conn = sqlite3.connect(
            f"file:{server.database}?mode=ro", uri=True, timeout=10, check_same_thread=False
        )

    def state(self, hashes: Iterable[str] = ()) -> StoreState:
        counts = self.conn.execute(_COUNTS).fetchone()
        return StoreState(
            rows=dict(zip(WATCHED_TABLES, counts, strict=True)),
            temp_files=frozenset(os.listdir(self.blobs / "tmp")),
            blobs=frozenset(h for h in hashes if self.blob_path(h).exists()),
        )

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def orphan_blobs(self) -> list[str]:
        """Blobs no `files` row refers to: what a refused upload would have left behind."""
        referenced = {row[0] for row in self.conn.execute("SELECT DISTINCT sha256 FROM files")}
        stored = [f for _, _, files in os.walk(self.blobs / "sha256") for f in files]
        return sorted(set(stored) - referenced)

    def close(self) -> None:
        self.conn.close()


@dataclass
class Watchdog:
    """Polls `/_/health` on its own connection while the tests run; remembers every miss."""

    server: LiveServer
    interval: float = 0.2
    misses: list[str] = field(default_factory=list)
    polls: int = 0
    worst: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watchdog:
        # One poll before any test: a module whose tests pytest-xdist spread over its workers
        # may leave this worker a share that ends before the first interval (CI saw 0 polls).
        with httpx.Client(base_url=self.server.url, timeout=HEALTH_DEADLINE) as client:
            self._poll(client)
        self._thread = threading.Thread(target=self._run, name="health-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEALTH_DEADLINE + 5)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=HEALTH_DEADLINE) as client:
            while not self._stop.wait(self.interval):
                self._poll(client)

    def _poll(self, client: httpx.Client) -> None:
        started = time.monotonic()
        try:
            status = client.get("/_/health").status_code
        except httpx.HTTPError as exc:
            status = 0
            problem = f"{type(exc).__name__}: {exc}"
        else:
            problem = f"status {status}"
        took = time.monotonic() - started
        self.polls += 1
        self.worst = max(self.worst, took)
        if status != 200:
            self.misses.append(f"health check failed after {took:.1f} s: {problem}")

    def assert_healthy(self) -> None:
        assert not self.misses, (
            f"/_/health did not answer within {HEALTH_DEADLINE} s during the run "
            f"({len(self.misses)} of {self.polls} polls): {self.misses[:5]}"
        )


def describe(request: httpx.Request | None) -> str:
    if request is None:
        return "(no request)"
    try:
        body = request.read()
    except (httpx.StreamError, TypeError):
        body = b"(streamed)"
    shown = body[:300] + (b"..." if len(body) > 300 else b"")
    return f"{request.method} {request.url.raw_path.decode('ascii', 'replace')[:300]} {shown!r}"


@dataclass
class Guard:
    """Sends one fuzz case and holds the answer to the invariants."""

    server: LiveServer
    client: httpx.Client
    store: Store

    def send(
        self, send: Callable[[httpx.Client], httpx.Response], hashes: Iterable[str] = ()
    ) -> httpx.Response:
        """Run `send`; asserts: an answer within the deadline, no 5xx, nothing stored on a
        refusal (no row, no temp file, no blob under `hashes`: the sha256 of a file the case
        sends), and the health check answering afterwards. Returns the answer."""
        before = self.store.state(hashes)
        started = time.monotonic()
        try:
            answer = send(self.client)
        except httpx.TimeoutException as exc:
            raise AssertionError(
                f"no answer within {ANSWER_DEADLINE} s (a hang): {describe(exc.request)}"
            ) from None
        took = time.monotonic() - started
        assert answer.status_code < 500, (
            f"{answer.status_code} after {took:.1f} s for {describe(answer.request)}: "
            f"{answer.text[:500]}\nserver log tail:\n{self.server.log()[-3000:]}"
        )
        if answer.status_code >= 400:
            after = self.store.state(hashes)
            # The watchdog's /_/health probe writes a temp file and drops it at once (what an
            # upload does first): look again for up to a second before calling a change a
            # leftover. A file a refusal left behind stays, so it is still caught.
            # (A temp file gone since `before` is such a probe too: only new ones count.)
            settle = time.monotonic() + 1.0
            while _changed(before, after) and time.monotonic() < settle:
                time.sleep(0.02)
                after = self.store.state(hashes)
            assert not _changed(before, after), (
                f"refused with {answer.status_code} but the store changed: "
                f"{_difference(before, after)}; {describe(answer.request)}"
            )
        self.assert_health()
        return answer

    def assert_health(self) -> None:
        started = time.monotonic()
        try:
            status = self.client.get("/_/health", timeout=HEALTH_DEADLINE).status_code
        except httpx.HTTPError as exc:
            raise AssertionError(f"/_/health failed after a fuzz case: {exc!r}") from None
        assert status == 200, f"/_/health answered {status} after a fuzz case"
        assert time.monotonic() - started < HEALTH_DEADLINE


def _changed(before: StoreState, after: StoreState) -> bool:
    """Whether a request stored something: a row, a new temp file, a blob."""
    difference = _difference(before, after)
    return any(difference[what] for what in ("rows", "new temp files", "new blobs"))


def _difference(before: StoreState, after: StoreState) -> dict[str, Any]:
    return {
        "rows": {
            t: (before.rows[t], after.rows[t])
            for t in before.rows
            if before.rows[t] != after.rows[t]
        },
        "new temp files": sorted(after.temp_files - before.temp_files)[:5],
        "new blobs": sorted(after.blobs - before.blobs),
    }


def assert_server_held(server: LiveServer, watchdog: Watchdog, store: Store) -> None:
    """At the end of a module: the watchdog never missed, no handler raised (a traceback in
    the log), and no blob was left that no file row refers to."""
    watchdog.assert_healthy()
    assert watchdog.polls > 0
    tracebacks = server.log().split("Traceback (most recent call last)")[1:]
    assert not tracebacks, f"{len(tracebacks)} handler crashes; the first:\n{tracebacks[0][:3000]}"
    assert store.orphan_blobs() == []
