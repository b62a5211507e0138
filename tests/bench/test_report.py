"""The benchmark harness' own arithmetic: wrk output, ratios and the issue's target verdicts.

The figures themselves are never asserted (timing asserts make flaky tests); what is tested is
that the harness turns figures into the right ratios and verdicts.
"""

from __future__ import annotations

import math

import pytest
from bench.load import parse_wrk
from bench.report import ratio, targets
from bench.scenarios import Results

# Real `wrk -t1 -c2 -d1s --latency` output (against python -m http.server).
WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:18765/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.07ms    1.27ms   6.78ms   61.62%
    Req/Sec   641.00     88.11     0.88k    90.00%
  Latency Distribution
     50%    3.44ms
     75%    4.00ms
     90%    4.51ms
     99%    5.45ms
  639 requests in 1.00s, 4.72MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:    638.09
Transfer/sec:      4.72MB
"""


def test_wrk_output_is_parsed() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.rps == 638.09
    assert result.requests == 639
    assert (result.p50_ms, result.p99_ms) == (3.44, 5.45)
    assert result.errors == 3 + 1 + 2  # non-2xx and socket errors both count


def test_latencies_in_microseconds_and_seconds() -> None:
    text = WRK_OUTPUT.replace("3.44ms", "812.00us").replace("5.45ms", "1.20s")
    result = parse_wrk(text)
    assert math.isclose(result.p50_ms, 0.812)
    assert result.p99_ms == 1200.0


def test_output_without_a_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="not wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_ratio_says_how_many_times_better_keyless_is_whatever_the_unit() -> None:
    assert ratio(300.0, 100.0, "req/s") == 3.0  # more requests: better
    assert ratio(0.5, 1.5, "s") == 3.0  # less time: better
    assert math.isnan(ratio(0.0, 1.0, "req/s"))  # a figure that is missing
    assert math.isnan(ratio(1.0, float("nan"), "s"))


def verdicts(results: Results) -> dict[str, tuple[str, str]]:
    """target row -> (measured, verdict)."""
    rows = targets(results)[2:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return {c[0]: (c[2], c[3]) for c in cells}


def page_results(nginx: float) -> Results:
    results = Results()
    for kind in ("html", "json"):
        case = f"31 files {kind}"
        results.add("1 simple page", case, "keyless", "req/s", 30_000)
        results.add("1 simple page", case, "devpi", "req/s", 700)
        results.add("1 simple page", case, "nginx", "req/s", nginx)
    results.add("1 simple page", "31 files html", "pypiserver", "req/s", 400)
    return results


def test_simple_page_targets() -> None:
    met = verdicts(page_results(nginx=120_000))
    assert met["simple page 31 files html: keyless ÷ pypiserver"] == ("75×", "met")
    assert met["simple page 31 files html: keyless ÷ devpi"] == ("43×", "met")
    assert met["simple page 31 files json: keyless ÷ nginx (same bytes)"] == ("0.25×", "met")
    # pypiserver answers no JSON: no row rather than a made-up one.
    assert "simple page 31 files json: keyless ÷ pypiserver" not in met
    missed = verdicts(page_results(nginx=130_000))
    assert missed["simple page 31 files html: keyless ÷ nginx (same bytes)"] == (
        "0.23×",
        "**missed**",
    )


def test_flat_cost_is_judged_against_the_small_project_of_the_same_format() -> None:
    results = page_results(nginx=120_000)
    results.add("2 simple page, many files", "2,031 files html", "keyless", "req/s", 25_000)
    results.add("2 simple page, many files", "20,031 files json", "keyless", "req/s", 23_000)
    rows = verdicts(results)
    assert rows["cost flat with files: keyless 2,031 files html vs small"] == ("-17%", "met")
    assert rows["cost flat with files: keyless 20,031 files json vs small"] == (
        "-23%",
        "**missed**",
    )


def test_upload_and_publish_targets() -> None:
    results = Results()
    results.add("4 upload", "200 MB wheel", "disk copy", "MB/s", 1000)
    results.add("4 upload", "200 MB wheel", "keyless", "MB/s", 650, growth_mb=21.0)
    results.add("4 upload", "200 MB wheel", "keyless", "MB/s", 600, growth_mb=61.0)
    results.add("7 publish 50 wheels", "50 wheels", "twine upload", "s", 0.6)
    results.add("7 publish 50 wheels", "50 wheels", "keyless publish", "s", 0.18)
    rows = verdicts(results)
    assert rows["upload 200 MB wheel: keyless ÷ disk copy"] == ("0.62×", "met")  # median 625
    # The worst run counts for memory, not the median.
    assert rows["upload 200 MB wheel: keyless memory growth (worst run)"] == (
        "61.0 MB",
        "**missed**",
    )
    assert rows["publish 50 wheels: keyless publish ÷ twine upload (time)"] == ("0.30", "met")


def test_every_keyless_publish_row_is_judged_against_uv_publish() -> None:
    """Issue 14: keyless publish at most uv publish's time on the same files and server; a
    variant of the client (another row of scenario 7) is judged on its own."""
    results = Results()
    scenario, case = "7 publish 50 wheels", "50 wheels"
    for seconds in (0.50, 0.62, 0.48):
        results.add(scenario, case, "uv publish", "s", seconds)
    results.add(scenario, case, "twine upload", "s", 0.9)
    for seconds in (0.47, 0.52, 0.45):  # median 0.47 of uv's 0.50
        results.add(scenario, case, "keyless publish", "s", seconds)
    results.add(scenario, case, "keyless publish (session)", "s", 0.6)
    rows = verdicts(results)
    assert rows["publish 50 wheels: keyless publish ÷ uv publish (time)"] == ("0.94", "met")
    assert rows["publish 50 wheels: keyless publish (session) ÷ uv publish (time)"] == (
        "1.20",
        "**missed**",
    )
    assert rows["publish 50 wheels: keyless publish (session) ÷ twine upload (time)"] == (
        "0.67",
        "**missed**",
    )


def test_the_static_tree_is_judged_against_nginx_on_the_same_bytes() -> None:
    results = Results()
    for case, tree in (("small project html", 9_300), ("small project json", 8_900)):
        results.add("9 static tree via nginx", case, "keyless", "req/s", 4_000)
        results.add("9 static tree via nginx", case, "static tree", "req/s", tree)
        results.add("9 static tree via nginx", case, "nginx", "req/s", 10_000)
    rows = verdicts(results)
    name = "small project {}: static tree via nginx ÷ nginx on the same bytes (issue 12)"
    assert rows[name.format("html")] == ("0.93×", "met")
    assert rows[name.format("json")] == ("0.89×", "**missed**")


def test_the_s3_upload_is_judged_against_boto3_straight_to_the_same_server() -> None:
    results = Results()
    results.add("10 upload to S3", "200 MB wheel", "boto3 straight to S3", "MB/s", 40)
    results.add("10 upload to S3", "200 MB wheel", "keyless", "MB/s", 14, growth_mb=36.9)
    results.add("10 upload to S3", "200 MB wheel", "keyless", "MB/s", 30, growth_mb=25.1)
    rows = verdicts(results)
    name = "upload 200 MB wheel to S3: keyless ÷ boto3 straight to the same S3 server (issue 12)"
    assert rows[name] == ("0.55×", "**missed**")  # median 22 of 40
    growth = rows["upload 200 MB wheel to S3: keyless memory growth (worst run)"]
    assert growth == ("36.9 MB", "met")
