"""The results as markdown: ratios first, then raw figures, with the machine described."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from .scenarios import Options, Results

HIGHER_IS_BETTER = {"req/s": True, "MB/s": True, "s": False}


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _fmt(value: float, unit: str) -> str:
    if value != value:  # nan
        return "—"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "MB/s":
        return f"{value:,.0f} MB/s"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:,.0f} {unit}"


def _ratio(ours: float, theirs: float, unit: str) -> str:
    if ours != ours or theirs != theirs or not theirs or not ours:
        return "—"
    ratio = ours / theirs if HIGHER_IS_BETTER.get(unit, True) else theirs / ours
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.0f}×"


def render(
    results: Results,
    opts: Options,
    versions: dict[str, str],
    started: datetime,
    load_before: str,
    title: str = "keyless benchmarks",
) -> str:
    lines = [f"# {title}", ""]
    mach = machine()
    lines += [
        f"Run {started.strftime('%Y-%m-%d %H:%M UTC')}, on {mach['cpu']}, {mach['cores']} cores, "
        f"{mach['memory']}, Linux {mach['kernel']}. Load average before: {load_before}; "
        f"after: {load_average()}.",
        "",
        "Each figure is the median of "
        f"{opts.runs} runs; loads are `wrk -t1 -c8 -d{opts.duration:g}s` (keep-alive, 8 "
        "connections), runs of all servers interleaved. Ratios > 1 mean keyless is better "
        "(more requests/s, more MB/s, fewer seconds). Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
        "| scenario | case | keyless | pypiserver | devpi | nginx / reference | keyless ÷ pypiserver "
        "| keyless ÷ devpi | keyless ÷ nginx / reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}
    order: list[tuple[str, str]] = []
    for record in results.records.values():
        if record.unit == "bytes":
            continue
        key = (record.scenario, record.case)
        if key not in rows:
            rows[key] = {}
            order.append(key)
        rows[key][record.server] = (record.median, record.unit)
    for key in sorted(order, key=lambda k: (k[0], order.index(k))):
        row = rows[key]
        unit = next(iter(row.values()))[1]
        ours = row.get("keyless", (float("nan"), unit))[0]
        references = [name for name in row if name not in ("keyless", "pypiserver", "devpi")]
        cells = [key[0], key[1]]
        named = {"keyless", "pypiserver", "devpi"}
        for name in ("keyless", "pypiserver", "devpi"):
            cells.append(_fmt(row[name][0], unit) if name in row else "—")
        # Scenario 7 compares `keyless publish` with the other clients.
        if key[0].startswith("7"):
            ours = row.get("keyless publish", (float("nan"), unit))[0]
            cells[2] = _fmt(ours, unit) + " (keyless publish)"
            refs = [n for n in row if n != "keyless publish"]
            cells.append("; ".join(f"{n}: {_fmt(row[n][0], unit)}" for n in refs))
            cells += ["—", "—", "; ".join(f"÷ {n}: {_ratio(ours, row[n][0], unit)}" for n in refs)]
        else:
            cells.append("; ".join(f"{n}: {_fmt(row[n][0], unit)}" for n in references) or "—")
            for name in ("pypiserver", "devpi"):
                cells.append(_ratio(ours, row[name][0], unit) if name in row else "—")
            cells.append("; ".join(_ratio(ours, row[n][0], unit) for n in references) or "—")
        _ = named
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Raw figures",
        "",
        "| scenario | case | server | median | runs | extra (per run) |",
        "|---|---|---|---|---|---|",
    ]
    for record in results.records.values():
        runs = ", ".join(_fmt(v, record.unit) for v in record.values)
        extra = "; ".join(
            f"{name}: " + ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)
            for name, values in record.extra.items()
        )
        lines.append(
            f"| {record.scenario} | {record.case} | {record.server} | "
            f"{_fmt(record.median, record.unit)} | {runs} | {extra} |"
        )
    if results.notes:
        lines += ["", "## Notes from this run", ""] + [
            f"- {note}" for note in dict.fromkeys(results.notes)
        ]
    return "\n".join(lines) + "\n"


def now() -> datetime:
    return datetime.now(UTC)
