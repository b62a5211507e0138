"""What a durable commit costs an upload: scenario 8 of `python -m bench run`, and the same
measurement against any other source tree on its own.

    python -m bench run --only 8 --out bench/results/durability.md
    python -m bench.commit_cost --other-src /tmp/before/src --other-label before --uploads 400

Two servers run at once, this checkout's and another tree's (by default commit 12a72ce, the
last before durability), and take the same kind of upload (a fresh 100 KB wheel, as in
scenario 7) in turn — A, B, B, A… over one keep-alive connection each — so the load other
users put on a shared machine falls on both alike, which separate runs of the harness cannot
promise. Each upload's latency is the client's (request sent to answer read).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import procs, report
from .dists import build_wheel
from .env import BENCH, ROOT, log
from .scenarios import WORK, datasets_clean
from .servers import Keyless, post_upload

# The last commit before uploads were acknowledged only once durable (ab7d94c): SQLite with
# synchronous=NORMAL and no fsync of a new blob folder in its parent.
NOT_DURABLE = "12a72ce"
NOT_DURABLE_LABEL = f"{NOT_DURABLE} (not durable)"
UPLOAD_SIZE = 100 * 1024


class Unavailable(Exception):
    """The other tree cannot be had here; the message says why and what would fix it."""


def extract_tree(commit: str, dest: Path, repo: Path = ROOT) -> Path:
    """`git archive <commit> src | tar -x -C dest`; returns dest/src."""
    git, tar = shutil.which("git"), shutil.which("tar")
    if git is None or tar is None:
        raise Unavailable(
            f"{'git' if git is None else 'tar'} is not installed, so the source tree of "
            f"commit {commit} cannot be extracted"
        )
    try:
        archive = subprocess.run(
            [git, "-C", str(repo), "archive", "--format=tar", commit, "src"],
            capture_output=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"`git archive {commit} src` took over 2 minutes") from exc
    if archive.returncode != 0:
        said = archive.stderr.decode(errors="replace").strip().splitlines()
        raise Unavailable(
            f"`git archive {commit} src` failed in {repo} ({said[-1] if said else 'no message'}):"
            f" this needs a git clone whose history has commit {commit} (a release tarball or"
            " a shallow clone has none)"
        )
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    subprocess.run([tar, "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=120)
    return dest / "src"


@dataclass(frozen=True)
class Latency:
    """Per-upload latency of one server over a series of uploads, in milliseconds."""

    median_ms: float
    p90_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            raise ValueError("no uploads measured")
        ordered = sorted(seconds)
        return cls(
            median_ms=statistics.median(ordered) * 1000,
            p90_ms=ordered[int(0.9 * (len(ordered) - 1))] * 1000,
            mean_ms=statistics.mean(ordered) * 1000,
        )


def turn_order(names: Sequence[str], upload: int) -> list[str]:
    """Who gets upload number `upload` first: each server in turn, so neither is always the
    one whose upload follows the other's (and finds the disk busy with its fsyncs)."""
    return list(names) if upload % 2 == 0 else list(reversed(names))


@contextmanager
def running(folder: Path, trees: Mapping[str, Path | None]) -> Iterator[dict[str, Keyless]]:
    """One keyless server per source tree (None: the one the harness runs), each with its own
    data folder, started; stopped on leaving, also on errors."""
    with ExitStack() as stack:
        servers: dict[str, Keyless] = {}
        for n, (name, src) in enumerate(trees.items()):
            server = Keyless(folder / str(n), src=src)
            server.prepare()
            stack.callback(server.stop)
            server.start()
            servers[name] = server
        yield servers


def alternate(
    servers: Mapping[str, Keyless], uploads: int, first: int = 0
) -> dict[str, list[float]]:
    """`uploads` fresh 100 KB wheels to each server in turn; each upload's latency (seconds).
    Versions start at 1.0.`first` so that several series can go to the same servers."""
    latencies: dict[str, list[float]] = {name: [] for name in servers}
    with ExitStack() as stack:
        clients = {name: stack.enter_context(httpx.Client(timeout=60)) for name in servers}
        for i in range(first, first + uploads):
            wheel = build_wheel("commit-cost", f"1.0.{i}", payload=os.urandom(UPLOAD_SIZE))
            for name in turn_order(list(servers), i):
                server = servers[name]
                auth = httpx.BasicAuth("__token__", server.token)
                began = time.perf_counter()
                post_upload(clients[name], server.upload_url, wheel, auth)
                latencies[name].append(time.perf_counter() - began)
    return latencies


def render(latencies: Mapping[str, Sequence[float]], load_before: str) -> str:
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
        stats = Latency.of(values)
        lines.append(
            f"| {name} | {stats.median_ms:.2f} ms | {stats.p90_ms:.2f} ms "
            f"| {stats.mean_ms:.2f} ms |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_cost", description=__doc__)
    parser.add_argument(
        "--other-src", type=Path, help=f"its src/ folder (default: commit {NOT_DURABLE}'s)"
    )
    parser.add_argument("--other-label", help="its name in the table")
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "commit-cost.md")
    args = parser.parse_args()
    folder = WORK / "commit-cost"
    datasets_clean(folder)
    if args.other_src is None:
        try:
            other, label = extract_tree(NOT_DURABLE, folder / "tree"), NOT_DURABLE_LABEL
        except Unavailable as exc:
            raise SystemExit(f"{exc}; or give another tree with --other-src") from exc
    else:
        other, label = args.other_src.resolve(), "other tree"
    label = args.other_label or label
    load_before = report.load_average()
    try:
        with running(folder, {"this checkout": None, label: other}) as servers:
            log(f"{args.uploads} uploads to each of {', '.join(servers)}")
            latencies = alternate(servers, args.uploads)
    finally:
        procs.stop_all()
    text = render(latencies, load_before)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
