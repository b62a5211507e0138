"""`keyless serve --workers N`: N processes answer on one address, as one server.

A connection is served by one worker from start to end, so the tests hold a keep-alive
connection to each worker (found through /_/metrics, which names its process) and send each
request through the one they mean.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builders import build_wheel
from tests.conftest import LiveServer, make_tls_files, start_server, stop_server

from .uploading import upload

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def answering_pid(client: httpx.Client) -> int:
    metrics = client.get("/_/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("keyless_process_id "))
    return int(line.split()[1])


def one_connection_per_worker(server: LiveServer, count: int) -> dict[int, httpx.Client]:
    """A client (one kept-alive connection) to each of `count` workers, by process id.

    New connections until each worker took one: the kernel gives each to any process waiting
    on the socket (a worker just started takes none until its app is built), so this tries
    for a while.
    """
    held: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        client = server.client()
        pid = answering_pid(client)
        if pid in held:
            client.close()
            time.sleep(0.05)
        else:
            held[pid] = client
        if len(held) == count:
            return held
    for client in held.values():
        client.close()
    raise AssertionError(f"30 s of new connections reached only the workers {sorted(held)}")


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("workers")
    live = start_server(folder, tls=make_tls_files(folder), extra_args=("--workers", "2"))
    yield live
    stop_server(live)


def files_on(client: httpx.Client, project: str) -> list[str]:
    answer = client.get(f"/prod/simple/{project}/", headers={"Accept": JSON_TYPE})
    assert answer.status_code == 200, answer.text
    return sorted(f["filename"] for f in answer.json()["files"])


def test_two_workers_answer_over_tls_and_agree_at_once(workers: LiveServer) -> None:
    held = one_connection_per_worker(workers, 2)
    try:
        assert set(held) == children(workers.process.pid)  # the supervisor's two workers
        one, two = held.values()
        token = workers.token("workers-owner", "prod")
        assert upload(one, "prod", token, *build_wheel("workers-demo", "1.0")).status_code == 200
        first = ["workers_demo-1.0-py3-none-any.whl"]
        assert files_on(two, "workers-demo") == first
        assert files_on(one, "workers-demo") == first  # both have the page in memory now
        assert upload(one, "prod", token, *build_wheel("workers-demo", "1.1")).status_code == 200
        both = [*first, "workers_demo-1.1-py3-none-any.whl"]
        assert files_on(two, "workers-demo") == both
        assert upload(two, "prod", token, *build_wheel("workers-demo", "1.2")).status_code == 200
        assert files_on(one, "workers-demo") == [*both, "workers_demo-1.2-py3-none-any.whl"]
    finally:
        for client in held.values():
            client.close()


def test_a_worker_that_dies_is_replaced(workers: LiveServer) -> None:
    before = children(workers.process.pid)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = children(workers.process.pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no worker replaced {victim}: {children(workers.process.pid)}")
    held = one_connection_per_worker(workers, 2)  # and the new one answers
    for client in held.values():
        client.close()
    assert set(held) == now


def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, extra_args=("--workers", "2"))
    pids = children(server.process.pid)
    assert len(pids) == 2
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=40) == 0
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"workers left running: {alive}\n{server.log()}"


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    server = start_server(tmp_path, extra_args=("--workers", "2"))
    pids = children(server.process.pid)
    assert len(pids) == 2
    server.process.send_signal(signal.SIGKILL)  # no chance to stop them itself
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    for pid in alive:  # not to leave them behind when this fails
        os.kill(pid, signal.SIGKILL)
    assert alive == [], "workers kept running without their supervisor"


@pytest.mark.parametrize("value", ["0", "lots", "100000"])
def test_a_bad_number_of_workers_is_named(tmp_path: Path, value: str) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "keyless", "serve", "--workers", value, "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 2
    assert f"workers must be a number from 1 to 256, not {value!r}" in ran.stderr
    assert "Traceback" not in ran.stderr
