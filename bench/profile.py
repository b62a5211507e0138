"""Profile keyless under load: py-spy samples the server process while wrk (or uploads) run.

`python -m bench profile --what page-html` writes the hottest functions (own and inclusive
samples) to bench/results/profile.txt and the raw collapsed stacks beside it (for a flame
graph: flamegraph.pl or speedscope)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from . import datasets
from .env import venv_bin
from .load import wrk
from .scenarios import WORK, datasets_clean
from .servers import HTML_TYPE, JSON_TYPE, Keyless


def profile(what: str, duration: float, out: Path) -> int:
    folder = WORK / "profile"
    datasets_clean(folder)
    keyless = Keyless(folder / "keyless")
    raw = out.with_suffix(".collapsed")
    try:
        datasets.seed_keyless(keyless, 0)
        spy = subprocess.Popen(
            [
                str(venv_bin("tools") / "py-spy"),
                "record",
                "--pid",
                str(keyless.pid),
                "--duration",
                str(int(duration)),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
                # Uploads wait on fsync and on the database: count waiting time too.
                *(["--idle", "--threads"] if what == "upload" else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
        if what.startswith("page"):
            accept = HTML_TYPE if what == "page-html" else JSON_TYPE
            result = wrk(keyless.simple_url(datasets.SMALL), duration=duration - 1, accept=accept)
            header = f"{what}: {result.rps:,.0f} req/s under py-spy (sampling slows it)\n"
        else:
            header = f"{what}\n"
            stop = threading.Event()
            from .dists import build_wheel

            count = 0
            while not stop.is_set() and count < 400:
                keyless.upload([build_wheel(f"prof-{count}", "1.0") for _ in range(1)], parallel=1)
                count += 1
                if spy.poll() is not None:
                    break
        spy.wait(timeout=duration + 60)
    finally:
        keyless.stop()
    text = summarize(raw)
    if what == "upload":
        # Waiting counts here (fsync, database): the breakdown of one upload's wall time.
        text = focus(raw, "Uploads.upload") + "\n" + focus(raw, "read_upload_form") + "\n" + text
    out.write_text(header + text)
    print(out.read_text())
    return 0


def summarize(raw: Path, top: int = 30) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "own:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def focus(raw: Path, root: str, top: int = 25) -> str:
    """Inclusive share of each function below the frames named `root` (their wall time, when
    sampled with --idle)."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        start = next((i for i, f in enumerate(frames) if f.startswith(root + " ")), None)
        if start is None:
            continue
        count = int(count_text)
        total += count
        for frame in set(frames[start + 1 :]):
            inclusive[frame] += count
    lines = [f"below {root}: {total} samples (inclusive, wall time)"]
    lines += [
        f"{100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in inclusive.most_common(top)
    ]
    return "\n".join(lines) + "\n"
