"""The tests' free_port: a port it handed out once is never handed out again, by any live
test process.

A port is chosen before the process that listens on it starts, so a kernel that offers a
just-closed port again would give two servers of one test the same port; and pytest-xdist's
workers (`make test` runs several) choose ports each on their own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from tests import conftest


class KernelRepeatingAPort:
    """A socket whose bind to port 0 gets, in turn, the ports in OFFERS."""

    OFFERS: ClassVar[list[int]] = []

    def __enter__(self) -> KernelRepeatingAPort:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        self.port = self.OFFERS.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_a_port_offered_twice_is_handed_out_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(conftest, "_HANDED_OUT", set())
    monkeypatch.setattr(conftest, "PORTS_DIR", tmp_path)
    monkeypatch.setattr(KernelRepeatingAPort, "OFFERS", [40001, 40001, 40001, 40002])
    monkeypatch.setattr(socket, "socket", KernelRepeatingAPort)
    assert [conftest.free_port(), conftest.free_port()] == [40001, 40002]


def test_real_ports_are_free_and_distinct() -> None:
    ports = [conftest.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing listens there


# A second test process (an xdist worker): takes one real port, says which, then waits for a
# line on stdin before it exits.
OTHER_WORKER = """
import sys
from pathlib import Path
from tests import conftest
conftest.PORTS_DIR = Path(sys.argv[1])
print(conftest.free_port(), flush=True)
sys.stdin.readline()
"""


def test_a_port_another_live_process_took_is_not_handed_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_WORKER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None
    assert other.stdin is not None
    try:
        taken = int(other.stdout.readline())
        monkeypatch.setattr(conftest, "_HANDED_OUT", set())
        monkeypatch.setattr(conftest, "PORTS_DIR", tmp_path)
        # The kernel offers this process the port the other one was given (nothing listens
        # on it yet), then another.
        monkeypatch.setattr(KernelRepeatingAPort, "OFFERS", [taken, 40002])
        monkeypatch.setattr(socket, "socket", KernelRepeatingAPort)
        assert conftest.free_port() == 40002
    finally:
        other.communicate("done\n", timeout=30)
    # Once that process has exited, its port is free again.
    monkeypatch.setattr(KernelRepeatingAPort, "OFFERS", [taken])
    assert conftest.free_port() == taken
