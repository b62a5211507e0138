"""What /_/metrics' counters cost the hot path: a cached simple page through the whole ASGI
app, in one process, with the counter (this checkout) and with `IndexApp.__call__` put back
as it was before it, in alternating rounds so a shared machine's load falls on
both alike.

    python -m bench.counters_cost --calls 20000 --rounds 30

No network and no server process: what is measured is only the app's own time per page, of
which the counting is a part (an HTTP benchmark's figure includes uvicorn's, which dilutes it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from keyless.config import Settings
from keyless.index.app import IndexApp, create_app
from keyless.index.routes import simple


async def _call_without_counters(
    self: IndexApp, scope: Scope, receive: Receive, send: Send
) -> None:
    # IndexApp.__call__ as it was before the counters (commit 4585358).
    if scope["type"] == "http":
        scope["app"] = self
        started = time.perf_counter()
        try:
            answered = await simple.answer_cached(scope, send)
        except BaseException:
            self.access_lines.log(scope, 0, 0, started)
            raise
        if answered is not None:
            self.access_lines.log(scope, answered[0], answered[1], started)
            return
    await Starlette.__call__(self, scope, receive, send)


SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "GET",
    "path": "/prod/simple/",
    "root_path": "",
    "headers": [(b"accept", b"application/vnd.pypi.simple.v1+json")],
    "query_string": b"",
}


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    pass


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    """Nanoseconds per page for each variant, one figure per round."""
    variants: dict[str, Any] = {
        "without counters": _call_without_counters,
        "with counters": IndexApp.__call__,
    }
    app = create_app(Settings(data_dir=Path(tempfile.mkdtemp()), access_log=False))
    sent: list[Message] = []

    async def keep(message: Message) -> None:
        sent.append(message)

    await app(dict(SCOPE), _receive, keep)  # renders and caches the page through the router
    assert sent[0]["status"] == 200, sent
    figures: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_ in range(rounds):
            # Each goes first in every other round: neither gets the warmer caches for free.
            order = list(variants.items())
            for name, call in order if round_ % 2 else reversed(order):
                IndexApp.__call__ = call  # type: ignore[method-assign]
                started = time.perf_counter()
                for _ in range(calls):
                    await app(dict(SCOPE), _receive, _discard)
                figures[name].append((time.perf_counter() - started) / calls * 1e9)
    finally:
        IndexApp.__call__ = variants["with counters"]  # type: ignore[method-assign]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--calls", type=int, default=20000, help="pages per round")
    parser.add_argument("--rounds", type=int, default=30, help="rounds per variant")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.calls, args.rounds))
    for name, values in figures.items():
        print(
            f"{name}: best {min(values):.0f} ns, median {statistics.median(values):.0f} ns per page"
        )
    without, with_ = figures["without counters"], figures["with counters"]
    pairs = [b - a for a, b in zip(without, with_, strict=True)]
    print(
        f"with - without: best-to-best {min(with_) - min(without):+.0f} ns, median of the "
        f"rounds' differences {statistics.median(pairs):+.0f} ns"
    )


if __name__ == "__main__":
    main()
