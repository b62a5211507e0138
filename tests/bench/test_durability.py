"""Scenario 8 (what a durable upload costs): the harness' arithmetic, its report section, the
extraction of the older tree from git — and a skip with the reason where that cannot be done.

Figures are never asserted (timing asserts make flaky tests): what is tested is that the
harness measures both trees and turns their figures into the right ratio and difference.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench.commit_cost import Latency, Unavailable, extract_tree, turn_order
from bench.report import durability, summary
from bench.scenarios import Results

from bench import commit_cost, procs, scenarios
from tests.conftest import git


def test_latency_is_per_upload_in_milliseconds() -> None:
    stats = Latency.of([0.010, 0.030, 0.020, 0.040, 0.100])
    assert stats.median_ms == pytest.approx(30.0)
    assert stats.p90_ms == pytest.approx(40.0)  # the 4th of 5 sorted: index int(0.9 * 4)
    assert stats.mean_ms == pytest.approx(40.0)
    with pytest.raises(ValueError, match="no uploads"):
        Latency.of([])


def test_each_server_goes_first_every_other_upload() -> None:
    names = ["keyless", "old"]
    assert [turn_order(names, i)[0] for i in range(4)] == ["keyless", "old", "keyless", "old"]
    assert sorted(turn_order(names, 1)) == names


def durable_results(durable: list[float], not_durable: list[float]) -> Results:
    results = Results()
    for ours, theirs in zip(durable, not_durable, strict=True):
        results.add("8 durable commit", "100 KB upload", "keyless", "ms", ours)
        results.add("8 durable commit", "100 KB upload", "old (not durable)", "ms", theirs)
    return results


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_cost_of_durability_is_the_ratio_and_the_difference_of_the_medians() -> None:
    lines = durability(durable_results([6.0, 5.0, 9.0], [4.0, 4.5, 3.0]))
    assert len(lines) == 3  # header, rule, one row
    assert cells(lines[2]) == [
        "100 KB upload",
        "6.00 ms",
        "old (not durable): 4.00 ms",
        "1.50×",
        "+2.00 ms",
    ]


def test_summary_counts_fewer_milliseconds_as_better() -> None:
    rows = summary(durable_results([6.0], [4.0]))
    row = cells(next(line for line in rows if line.startswith("| 8 ")))
    assert row[2] == "6.00 ms"
    assert row[-1] == "old (not durable): 0.67×"  # keyless is slower: below 1


def test_no_durability_section_without_scenario_8() -> None:
    results = Results()
    results.add("7 publish 50 wheels", "50 wheels", "keyless publish", "s", 0.5)
    assert durability(results) == []


def test_tree_of_a_commit_is_extracted(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src" / "pkg").mkdir(parents=True)
    (repo / "src" / "pkg" / "mod.py").write_text("OLD = True\n")
    (repo / "README.md").write_text("not extracted\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "old")
    git(repo, "tag", "old")
    (repo / "src" / "pkg" / "mod.py").write_text("OLD = False\n")
    git(repo, "commit", "-q", "-am", "new")
    src = extract_tree("old", tmp_path / "out", repo=repo)
    assert src == tmp_path / "out" / "src"
    assert (src / "pkg" / "mod.py").read_text() == "OLD = True\n"
    assert not (tmp_path / "out" / "README.md").exists()


def test_no_history_says_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="history has commit 12a72ce"):
        extract_tree("12a72ce", tmp_path / "out", repo=tmp_path)  # not a git clone
    assert not (tmp_path / "out").exists()


def test_no_git_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unavailable, match="git is not installed"):
        extract_tree("12a72ce", tmp_path / "out")


def test_scenario_is_skipped_with_the_reason_when_the_commit_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scenarios, "WORK", tmp_path)
    monkeypatch.setattr(commit_cost, "NOT_DURABLE", "0" * 40)
    results = Results()
    scenarios.durable_commit(results, scenarios.Options(runs=1, durable_uploads=2))
    assert results.records == {}
    assert len(results.notes) == 1
    assert results.notes[0].startswith("8 durable commit skipped: `git archive 0000")


def test_scenario_measures_both_trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        old = extract_tree(commit_cost.NOT_DURABLE, tmp_path / "check")
    except Unavailable as exc:
        pytest.skip(str(exc))
    # The commit named is the one before durability; this checkout is durable.
    assert "PRAGMA synchronous=NORMAL" in (old / "keyless" / "store" / "db.py").read_text()
    this = Path(__file__).resolve().parents[2] / "src" / "keyless" / "store" / "db.py"
    assert "PRAGMA synchronous=FULL" in this.read_text()
    monkeypatch.setattr(scenarios, "WORK", tmp_path)
    results = Results()
    try:
        scenarios.durable_commit(results, scenarios.Options(runs=2, durable_uploads=3))
    finally:
        procs.stop_all()
    medians = {
        server: record
        for (scenario, case, server, unit), record in results.records.items()
        if (scenario, case, unit) == ("8 durable commit", "100 KB upload", "ms")
    }
    assert set(medians) == {"keyless", commit_cost.NOT_DURABLE_LABEL}
    for record in medians.values():
        assert len(record.values) == 2
        assert all(v > 0 for v in record.values)
        assert record.extra["uploads"] == [3, 3]
    assert math.isfinite(float(durability(results)[2].split("|")[4].strip().rstrip("×")))
