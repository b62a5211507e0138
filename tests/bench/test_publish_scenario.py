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
        scenarios.publish(results, scenarios.Options(runs=1, publish_wheels=3))
    finally:
        procs.stop_all()
    times = {
        server: record.values
        for (scenario, case, server, unit), record in results.records.items()
        if (scenario, case, unit) == ("7 publish 3 wheels", "3 wheels", "s")
    }
    assert set(times) == {"keyless publish", "twine upload", "uv publish"}
    assert all(len(runs) == 1 and runs[0] > 0 for runs in times.values())
