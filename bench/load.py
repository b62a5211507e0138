"""wrk runs (bounded in duration) and medians."""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

CONNECTIONS = 8
THREADS = 1  # one core for wrk, one for the (single-process) server under test


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    *,
    duration: float,
    accept: str | None = None,
    script: Path | None = None,
    connections: int = CONNECTIONS,
    threads: int = THREADS,
    lua_args: list[str] | None = None,
    cpus: str | None = None,
) -> WrkResult:
    command = [
        *(["taskset", "-c", cpus] if cpus else []),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if accept:
        command += ["-H", f"Accept: {accept}"]
    if script:
        command += ["-s", str(script)]
    out = subprocess.run(
        [*command, url, *(["--", *lua_args] if lua_args else [])],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> WrkResult:
    """The figures of `wrk --latency` output; ValueError if it has no request rate."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rate is None or count is None:
        raise ValueError(f"not wrk output: {out[:200]!r}")
    rps, requests = float(rate.group(1)), int(count.group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return WrkResult(
        rps,
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        errors,
        requests,
    )


def check(url: str, accept: str | None) -> tuple[int, str, int]:
    """One request before loading: status, content type, body size (a 404 is no benchmark)."""
    answer = httpx.get(url, headers={"Accept": accept} if accept else {}, timeout=30)
    return answer.status_code, answer.headers.get("content-type", ""), len(answer.content)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
