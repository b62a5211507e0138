"""Fixtures for the index suites."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from keyless.ci.emulator import Emulator
from tests.conftest import LiveServer, start_server, start_trusted_server, stop_server


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """One HTTP client to the shared server for a whole test module."""
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def tp_server(
    tmp_path_factory: pytest.TempPathFactory, emulator: Emulator, gitlab_ci: Emulator
) -> Iterator[LiveServer]:
    """A server of the module's own that trusts the GitHub- and GitLab-shaped emulators."""
    live = start_trusted_server(
        tmp_path_factory.mktemp("tp-server"), emulator.issuer, gitlab_ci.issuer
    )
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A keyless server of the module's own that plays the upstream of its mirror indexes
    (test_mirror_upstreams.py has its own `upstream`: servers that are not keyless)."""
    live = start_server(tmp_path_factory.mktemp("upstream"))
    yield live
    stop_server(live)
