"""What the change-serial check costs the hot path: a cached simple page through the whole
ASGI app, in one process, with the per-request check (this checkout) and with
`IndexApp.__call__` without it, in alternating rounds so a shared machine's load falls on
both alike (the method of bench/counters_cost.py).

    python -m bench.freshness_cost --calls 20000 --rounds 30

No network and no server process: the figure is the app's own time per page. An HTTP
benchmark's time per page also holds uvicorn's parsing and the socket, which the check does
not grow: `--http-ns` puts the difference in proportion to a measured time per HTTP request.
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

from .counters_cost import SCOPE, _discard, _receive


async def _call_without_check(self: IndexApp, scope: Scope, receive: Receive, send: Send) -> None:
    # IndexApp.__call__ without the change-serial check (as before it).
    if scope["type"] == "http":
        scope["app"] = self
        started = time.perf_counter()
        try:
            answered = await simple.answer_cached(scope, send)
        except BaseException:
            self.access_lines.log(scope, 0, 0, started)
            self.cached_counts[4] += 1
            raise
        if answered is not None:
            self.cached_counts[answered[0] // 100 - 1] += 1
            self.access_lines.log(scope, answered[0], answered[1], started)
            return
    await Starlette.__call__(self, scope, receive, send)


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    """Nanoseconds per page for each variant, one figure per round."""
    variants: dict[str, Any] = {
        "without check": _call_without_check,
        "with check": IndexApp.__call__,
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
            order = list(variants.items())
            for name, call in order if round_ % 2 else reversed(order):
                IndexApp.__call__ = call  # type: ignore[method-assign]
                started = time.perf_counter()
                for _ in range(calls):
                    await app(dict(SCOPE), _receive, _discard)
                figures[name].append((time.perf_counter() - started) / calls * 1e9)
    finally:
        IndexApp.__call__ = variants["with check"]  # type: ignore[method-assign]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--calls", type=int, default=20000, help="pages per round")
    parser.add_argument("--rounds", type=int, default=30, help="rounds per variant")
    parser.add_argument(
        "--http-ns", type=float, default=0.0, help="measured ns per page over HTTP, for a ratio"
    )
    args = parser.parse_args()
    figures = asyncio.run(measure(args.calls, args.rounds))
    for name, values in figures.items():
        print(
            f"{name}: best {min(values):.0f} ns, median {statistics.median(values):.0f} ns per page"
        )
    without, with_ = figures["without check"], figures["with check"]
    difference = statistics.median([b - a for a, b in zip(without, with_, strict=True)])
    print(
        f"with - without: median of the rounds' differences {difference:+.0f} ns "
        f"({difference / statistics.median(without):+.1%} of the app's own time)"
    )
    if args.http_ns:
        print(
            f"as a share of {args.http_ns:.0f} ns per HTTP page: {difference / args.http_ns:+.1%}"
        )


if __name__ == "__main__":
    main()
