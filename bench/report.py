"""The results as markdown: targets and ratios first, then every raw figure, machine described."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from .scenarios import Options, Record, Results

HIGHER_IS_BETTER = {"req/s": True, "MB/s": True, "s": False, "ms": False}
PEERS = ("pypiserver", "devpi")


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


def fmt(value: float, unit: str) -> str:
    if value != value:  # nan
        return "—"
    if unit in ("req/s", "MB/s"):
        return f"{value:,.0f} {unit}"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:,.0f} {unit}"


def ratio(ours: float, theirs: float, unit: str) -> float:
    """How many times better keyless is (>1: better), whatever the unit's direction."""
    if not ours or not theirs or ours != ours or theirs != theirs:
        return float("nan")
    return ours / theirs if HIGHER_IS_BETTER.get(unit, True) else theirs / ours


def fmt_ratio(value: float) -> str:
    if value != value:
        return "—"
    return f"{value:.2f}×" if value < 10 else f"{value:.0f}×"


class _Table:
    def __init__(self, results: Results) -> None:
        self.results = results

    def get(self, scenario: str, case: str, server: str, unit: str) -> Record | None:
        return self.results.get(scenario, case, server, unit)

    def value(self, scenario: str, case: str, server: str, unit: str) -> float:
        record = self.get(scenario, case, server, unit)
        return record.median if record else float("nan")


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def targets(results: Results) -> list[str]:
    """The issue's targets, each with the figures it was judged on."""
    t = _Table(results)
    rows: list[str] = []
    ok: bool | None
    cases = [r.case for r in results.records.values() if r.scenario.startswith("1 ")]
    for case in dict.fromkeys(cases):
        ours = t.value("1 simple page", case, "keyless", "req/s")
        for peer, goal in (("pypiserver", 10.0), ("devpi", 20.0)):
            theirs = t.value("1 simple page", case, peer, "req/s")
            value = ratio(ours, theirs, "req/s")
            if value != value:
                continue  # that peer was not run
            ok = value >= goal
            rows.append(
                f"| simple page {case}: keyless ÷ {peer} | ≥ {goal:.0f}× | "
                f"{fmt_ratio(value)} | {_verdict(ok)} |"
            )
        nginx = t.value("1 simple page", case, "nginx", "req/s")
        value = ratio(ours, nginx, "req/s")
        ok = None if value != value else value >= 0.25
        rows.append(
            f"| simple page {case}: keyless ÷ nginx (same bytes) | ≥ 0.25× | "
            f"{fmt_ratio(value)} | {_verdict(ok)} |"
        )
    base = {case.split()[-1]: t.value("1 simple page", case, "keyless", "req/s") for case in cases}
    for record in results.records.values():
        if (
            record.scenario.startswith("2 ")
            and record.server == "keyless"
            and record.unit == "req/s"
        ):
            kind = record.case.split()[-1]
            small = base.get(kind, float("nan"))
            change = record.median / small - 1 if small == small and small else float("nan")
            ok = None if change != change else abs(change) <= 0.20
            rows.append(
                f"| cost flat with files: keyless {record.case} vs small | ±20% | "
                f"{change:+.0%} | {_verdict(ok)} |"
                if change == change
                else f"| cost flat with files: keyless {record.case} | ±20% | — | — |"
            )
    for record in results.records.values():
        if (
            record.scenario.startswith("4 ")
            and record.server == "keyless"
            and record.unit == "MB/s"
        ):
            copy = t.value(record.scenario, record.case, "disk copy", "MB/s")
            value = ratio(record.median, copy, "MB/s")
            ok = None if value != value else value >= 0.60
            rows.append(
                f"| upload {record.case}: keyless ÷ disk copy | ≥ 0.60× | "
                f"{fmt_ratio(value)} | {_verdict(ok)} |"
            )
            growth = record.extra.get("growth_mb", [])
            if growth:
                worst = max(growth)
                rows.append(
                    f"| upload {record.case}: keyless memory growth (worst run) | < 50 MB "
                    f"| {worst:.1f} MB | {_verdict(worst < 50)} |"
                )
    for record in results.records.values():
        # Every `keyless publish` row (scenario 7's variants): against uv publish (issue 14:
        # at most uv's time on the same files and server) and twine upload (issue 6: ⅓).
        if record.scenario.startswith("7 ") and record.server.startswith("keyless publish"):
            for other, goal, shown in (
                ("uv publish", 1.0, "1.00"),
                ("twine upload", 1 / 3, "0.33"),
            ):
                theirs = t.value(record.scenario, record.case, other, "s")
                share = record.median / theirs if theirs == theirs and theirs else float("nan")
                ok = None if share != share else share <= goal
                rows.append(
                    f"| publish {record.case}: {record.server} ÷ {other} (time) | ≤ {shown} "
                    f"| {share:.2f} | {_verdict(ok)} |"
                )
    for record in results.records.values():
        if record.scenario.startswith("9 ") and record.server == "static tree":
            plain = t.value(record.scenario, record.case, "nginx", "req/s")
            value = ratio(record.median, plain, "req/s")
            ok = None if value != value else value >= 0.9
            rows.append(
                f"| {record.case}: static tree via nginx ÷ nginx on the same bytes (issue 12) "
                f"| ≥ 0.90× | {fmt_ratio(value)} | {_verdict(ok)} |"
            )
    for record in results.records.values():
        if record.scenario.startswith("12 ") and record.server == "keyless":
            old = next(
                (
                    r.median
                    for r in results.records.values()
                    if r.scenario == record.scenario and r.server.startswith("keyless at ")
                ),
                float("nan"),
            )
            value = ratio(record.median, old, "req/s")
            ok = None if value != value else value >= 0.95
            rows.append(
                f"| {record.case}: this checkout ÷ the single process before shared state "
                f"(issue 12) | ≥ 0.95× | {fmt_ratio(value)} | {_verdict(ok)} |"
            )
    for record in results.records.values():
        if record.scenario.startswith("10 ") and record.server == "keyless":
            direct = t.value(record.scenario, record.case, "boto3 straight to S3", "MB/s")
            value = ratio(record.median, direct, "MB/s")
            ok = None if value != value else value >= 0.7
            rows.append(
                f"| upload {record.case} to S3: keyless ÷ boto3 straight to the same S3 server "
                f"(issue 12) | ≥ 0.70× | {fmt_ratio(value)} | {_verdict(ok)} |"
            )
            growth = record.extra.get("growth_mb", [])
            if growth:
                worst = max(growth)
                rows.append(
                    f"| upload {record.case} to S3: keyless memory growth (worst run) | < 50 MB "
                    f"| {worst:.1f} MB | {_verdict(worst < 50)} |"
                )
    for record in results.records.values():
        # Issue 15: the mirror's cached upstream page against its own local page (same size),
        # and its first download of an upstream file against the upstream directly.
        if (
            record.scenario.startswith("14 ")
            and record.server == "keyless"
            and record.unit in ("req/s", "MB/s")
        ):
            reference = "local page" if record.unit == "req/s" else "upstream directly"
            theirs = t.value(record.scenario, record.case, reference, record.unit)
            value = ratio(record.median, theirs, record.unit)
            goal = 0.9 if record.unit == "req/s" else 0.8
            ok = None if value != value else value >= goal
            rows.append(
                f"| mirror {record.case}: keyless ÷ {reference} (issue 15) | ≥ {goal:.2f}× "
                f"| {fmt_ratio(value)} | {_verdict(ok)} |"
            )
    if not rows:
        return []
    return ["| target | goal | measured | |", "|---|---|---|---|", *rows]


def durability(results: Results) -> list[str]:
    """Issue 10: what a durable upload costs, this checkout's against the tree before
    durability (scenario 8) — as a ratio and as milliseconds more per upload."""
    rows: list[str] = []
    for record in results.records.values():
        if not (record.scenario.startswith("8 ") and record.server == "keyless"):
            continue
        for other in results.records.values():
            if (other.scenario, other.case, other.unit) != (
                record.scenario,
                record.case,
                record.unit,
            ) or other.server == "keyless":
                continue
            cost = record.median / other.median if other.median else float("nan")
            rows.append(
                f"| {record.case} | {fmt(record.median, record.unit)} | {other.server}: "
                f"{fmt(other.median, other.unit)} | {fmt_ratio(cost)} | "
                f"{record.median - other.median:+.2f} {record.unit} |"
            )
    if not rows:
        return []
    return [
        "| case | keyless (durable), median | not durable, median | durable ÷ not durable "
        "| difference per upload |",
        "|---|---|---|---|---|",
        *rows,
    ]


def workers(results: Results) -> list[str]:
    """Scenario 11: each configuration against nginx on the same bytes and the same cores, and
    against one keyless process."""
    rows: list[str] = []
    cases = [r.case for r in results.records.values() if r.scenario.startswith("11 ")]
    for case in dict.fromkeys(cases):
        t = _Table(results)
        nginx = t.value("11 workers", case, "nginx", "req/s")
        single = t.value("11 workers", case, "keyless --workers 1", "req/s")
        for record in results.records.values():
            if record.scenario != "11 workers" or record.case != case or record.unit != "req/s":
                continue
            rows.append(
                f"| {case} | {record.server} | {fmt(record.median, 'req/s')} | "
                f"{fmt_ratio(ratio(record.median, nginx, 'req/s'))} | "
                f"{fmt_ratio(ratio(record.median, single, 'req/s'))} |"
            )
    if not rows:
        return []
    return [
        "| case | server | median | ÷ nginx | ÷ keyless --workers 1 |",
        "|---|---|---|---|---|",
        *rows,
    ]


def summary(results: Results) -> list[str]:
    """One row per scenario and case: medians and keyless' ratios to each other server."""
    lines = [
        "| scenario | case | keyless | pypiserver | devpi | reference | "
        "keyless vs pypiserver | keyless vs devpi | keyless vs reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows: dict[tuple[str, str], dict[str, Record]] = {}
    for record in results.records.values():
        if record.unit in ("bytes",):
            continue
        rows.setdefault((record.scenario, record.case), {})[record.server] = record
    for (scenario, case), row in sorted(rows.items(), key=lambda item: item[0][0][:1]):
        unit = next(iter(row.values())).unit
        ours_name = "keyless publish" if scenario.startswith("7 ") else "keyless"
        ours = row[ours_name].median if ours_name in row else float("nan")
        cells = [
            scenario,
            case,
            fmt(ours, unit) + (" (keyless publish)" if scenario[0] == "7" else ""),
        ]
        for peer in PEERS:
            cells.append(fmt(row[peer].median, unit) if peer in row else "—")
        refs = [name for name in row if name not in ("keyless", "keyless publish", *PEERS)]
        cells.append("; ".join(f"{name}: {fmt(row[name].median, unit)}" for name in refs) or "—")
        for peer in PEERS:
            cells.append(fmt_ratio(ratio(ours, row[peer].median, unit)) if peer in row else "—")
        cells.append(
            "; ".join(f"{name}: {fmt_ratio(ratio(ours, row[name].median, unit))}" for name in refs)
            or "—"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def raw(results: Results) -> list[str]:
    lines = ["| scenario | case | server | median | runs | per run |", "|---|---|---|---|---|---|"]
    for record in results.records.values():
        runs = ", ".join(fmt(v, record.unit) for v in record.values)
        extra = "; ".join(
            f"{name}: " + ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)
            for name, values in record.extra.items()
        )
        lines.append(
            f"| {record.scenario} | {record.case} | {record.server} | "
            f"{fmt(record.median, record.unit)} | {runs} | {extra} |"
        )
    return lines


def render(
    results: Results,
    opts: Options,
    versions: dict[str, str],
    started: datetime,
    load_before: str,
    title: str = "keyless benchmarks",
) -> str:
    mach = machine()
    lines = [
        f"# {title}",
        "",
        f"Run {started.strftime('%Y-%m-%d %H:%M UTC')} on {mach['cpu']}, {mach['cores']} cores, "
        f"{mach['memory']}, Linux {mach['kernel']}; load average before {load_before}, after "
        f"{load_average()} (the machine is shared).",
        "",
        f"Each figure is the median of {opts.runs} runs. Page loads: `wrk -t1 -c{8} "
        f"-d{opts.duration:g}s` (keep-alive, 8 connections; one core for wrk, one for the "
        'server), runs of all servers interleaved. "vs" columns: how many times better keyless '
        "is (more requests/s or MB/s, fewer seconds); below 1× it is worse. Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
    ]
    target_lines = targets(results)
    if target_lines:
        lines += ["## Targets", "", *target_lines, ""]
    durability_lines = durability(results)
    if durability_lines:
        lines += ["## Cost of durability (issue 10)", "", *durability_lines, ""]
    worker_lines = workers(results)
    if worker_lines:
        lines += ["## Worker processes (issue 12, scenario 11)", "", *worker_lines, ""]
    lines += ["## Results", "", *summary(results), "", "## Raw figures", "", *raw(results)]
    if results.notes:
        lines += ["", "## Notes from this run", ""]
        lines += [f"- {note}" for note in dict.fromkeys(results.notes)]
    return "\n".join(lines) + "\n"


def now() -> datetime:
    return datetime.now(UTC)
