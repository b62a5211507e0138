"""What a durable commit costs an upload: this checkout's server against another source tree's.

    python -m bench.commit_cost --other-src /tmp/before/src --other-label before --uploads 400

Both servers run at once and take the same kind of upload (a fresh 100 KB wheel, as in
scenario 7) in turn — A, B, A, B… over one keep-alive connection each — so the load other
users put on a shared machine falls on both alike, which separate runs of the harness cannot
promise. Each upload's latency is the client's (request sent to answer read); the table gives
median, p90 and mean per server and writes `bench/results/commit-cost.md`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import httpx

from . import procs, report
from .dists import build_wheel
from .env import BENCH, ROOT
from .scenarios import WORK, datasets_clean
from .servers import Keyless, _post_upload


def _server(folder: Path, src: Path) -> Keyless:
    server = Keyless(folder)
    server.prepare()
    os.environ["BENCH_KEYLESS_SRC"] = str(src)  # read by start()
    try:
        server.start()
    finally:
        del os.environ["BENCH_KEYLESS_SRC"]
    return server


def measure(other_src: Path, other_label: str, uploads: int) -> dict[str, list[float]]:
    folder = WORK / "commit-cost"
    datasets_clean(folder)
    trees = {"this checkout": ROOT / "src", other_label: other_src}
    servers = {name: _server(folder / str(n), src) for n, (name, src) in enumerate(trees.items())}
    latencies: dict[str, list[float]] = {name: [] for name in servers}
    clients = {name: httpx.Client(timeout=60) for name in servers}
    try:
        for i in range(uploads):
            wheel = build_wheel("commit-cost", f"1.0.{i}", payload=os.urandom(100 * 1024))
            order = list(servers) if i % 2 == 0 else list(reversed(servers))
            for name in order:
                server = servers[name]
                auth = httpx.BasicAuth("__token__", server.token)
                began = time.perf_counter()
                _post_upload(clients[name], server.upload_url, wheel, auth)
                latencies[name].append(time.perf_counter() - began)
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
        procs.stop_all()
    return latencies


def render(latencies: dict[str, list[float]], load_before: str) -> str:
    lines = [
        "# Upload latency: durable commits",
        "",
        f"{len(next(iter(latencies.values())))} uploads of a 100 KB wheel per server, "
        "alternating between the servers; load average before: "
        f"{load_before}, after: {report.load_average()}.",
        "",
        "| server | median | p90 | mean |",
        "|---|---|---|---|",
    ]
    for name, values in latencies.items():
        ordered = sorted(values)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        lines.append(
            f"| {name} | {statistics.median(values) * 1000:.2f} ms | {p90 * 1000:.2f} ms "
            f"| {statistics.mean(values) * 1000:.2f} ms |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_cost", description=__doc__)
    parser.add_argument("--other-src", type=Path, required=True)
    parser.add_argument("--other-label", default="other tree", help="its name in the table")
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "commit-cost.md")
    args = parser.parse_args()
    load_before = report.load_average()
    latencies = measure(args.other_src.resolve(), args.other_label, args.uploads)
    text = render(latencies, load_before)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
