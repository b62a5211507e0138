"""Scenario 7 of the harness end to end, small: real keyless server, keyless publish, twine
and uv publish, each checked by the harness against the index's own listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import procs, scenarios


def test_publish_scenario_measures_all_three_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scenarios, "WORK", tmp_path)
    results = scenarios.Results()
    try:
        scenarios.publish(
            results,
            scenarios.Options(
                runs=2,
                publish_wheels=3,
                publish_variants=(
                    ("keyless publish", ()),
                    ("keyless publish, one at a time", ("--parallel", "1")),
                ),
            ),
        )
    finally:
        procs.stop_all()
    records = {
        server: record
        for (scenario, case, server, unit), record in results.records.items()
        if (scenario, case, unit) == ("7 publish 3 wheels", "3 wheels", "s")
    }
    times = {server: record.values for server, record in records.items()}
    assert set(times) == {
        "keyless publish",
        "keyless publish, one at a time",
        "twine upload",
        "uv publish",
    }
    assert all(len(runs) == 2 and min(runs) > 0 for runs in times.values())
    # Each client's own CPU time per run: a Python client spends some, and never more than
    # both cores for its whole wall time.
    for record in records.values():
        cpu = record.extra["client_cpu_s"]
        assert len(cpu) == 2
        assert all(0 < c < 2 * t for c, t in zip(cpu, record.values, strict=True))


def test_a_variant_runs_keyless_publish_with_its_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The arguments of a variant reach the command: an impossible one fails the run."""
    monkeypatch.setattr(scenarios, "WORK", tmp_path)
    options = scenarios.Options(
        runs=1, publish_wheels=1, publish_variants=(("keyless publish", ("--parallel", "0")),)
    )
    try:
        with pytest.raises(RuntimeError, match=r"(?s)keyless publish failed.*must be at least 1"):
            scenarios.publish(scenarios.Results(), options)
    finally:
        procs.stop_all()
