"""The tests' free_port: a port it handed out once is never handed out again.

A port is chosen before the process that listens on it starts, so a kernel that offers a
just-closed port again would give two servers of one test the same port.
"""

from __future__ import annotations

import socket
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


def test_a_port_offered_twice_is_handed_out_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "_HANDED_OUT", set())
    monkeypatch.setattr(KernelRepeatingAPort, "OFFERS", [40001, 40001, 40001, 40002])
    monkeypatch.setattr(socket, "socket", KernelRepeatingAPort)
    assert [conftest.free_port(), conftest.free_port()] == [40001, 40002]


def test_real_ports_are_free_and_distinct() -> None:
    ports = [conftest.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing listens there
