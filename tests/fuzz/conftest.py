"""Fixtures of the fuzz modules. Each module defines `fuzz_server` (its own live server, as
its cases need their own settings); these build on whichever one the module has."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer

from .harness import ANSWER_DEADLINE, Guard, Store, Watchdog


@pytest.fixture(scope="module")
def watchdog(fuzz_server: LiveServer) -> Iterator[Watchdog]:
    dog = Watchdog(fuzz_server).start()
    yield dog
    dog.stop()


@pytest.fixture(scope="module")
def store(fuzz_server: LiveServer) -> Iterator[Store]:
    opened = Store(fuzz_server)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def guard(fuzz_server: LiveServer, watchdog: Watchdog, store: Store) -> Iterator[Guard]:
    with httpx.Client(base_url=fuzz_server.url, timeout=ANSWER_DEADLINE) as client:
        yield Guard(fuzz_server, client, store)
