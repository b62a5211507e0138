"""Fixtures for the index suites."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """One HTTP client to the shared server for a whole test module."""
    with server.client() as client:
        yield client
