"""The backend set the live-server tests run on, and the shared servers it needs.

`make test` runs the index, upload, trusted-publishing and web suites twice: on SQLite + the
data folder (the default, what `keyless serve` uses with no settings) and on PostgreSQL + an S3
bucket (`pytest --backend=postgresql`, or KEYLESS_TEST_BACKEND=postgresql). On the second,
`start_server` gives each server a database of its own on the session's PostgreSQL (tests/pg.py)
and a bucket of its own on the session's S3 server (tests/store/s3_server.py), through the same
settings an operator would set (KEYLESS_DATABASE_URL, KEYLESS_BLOBS, ...).

Tests about the local backends' files themselves (the SQLite file's bytes, its WAL, the blob
folder's layout, a full disk under them) carry the `local_only` marker; the second pass skips
them, saying so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

BACKENDS = ("sqlite", "postgresql")
VARIABLE = "KEYLESS_TEST_BACKEND"

T = TypeVar("T")


def current() -> str:
    backend = os.environ.get(VARIABLE, "sqlite")
    if backend not in BACKENDS:
        raise RuntimeError(f"{VARIABLE}={backend!r}: use one of {', '.join(BACKENDS)}")
    return backend


def on_postgresql() -> bool:
    return current() == "postgresql"


# Servers started on first use and stopped at the session's end (`stop_shared`, from an
# autouse session fixture in tests/conftest.py): `start_server` is a plain function, so it
# cannot ask for a fixture.
_running: dict[str, tuple[Any, contextlib.AbstractContextManager[Any]]] = {}


def shared(name: str, start: Callable[[], contextlib.AbstractContextManager[T]]) -> T:
    if name not in _running:
        manager = start()
        _running[name] = (manager.__enter__(), manager)
    value: T = _running[name][0]
    return value


def stop_shared() -> None:
    while _running:
        _, (_, manager) = _running.popitem()
        manager.__exit__(None, None, None)


def server_environment(hint: str) -> dict[str, str]:
    """The settings (as KEYLESS_* variables) that put one new server on the current backend
    set: nothing on SQLite + folder; a new database and a new bucket on PostgreSQL + S3."""
    if not on_postgresql():
        return {}
    from tests.pg import shared_postgresql
    from tests.store.s3_server import shared_s3_server

    s3 = shared_s3_server()
    return {
        "KEYLESS_DATABASE_URL": shared_postgresql().new_database(hint),
        "KEYLESS_BLOBS": f"s3://{s3.new_bucket()}/blobs",
        "KEYLESS_S3_ENDPOINT_URL": s3.endpoint,
        "KEYLESS_S3_REGION": "us-east-1",
        "KEYLESS_S3_ADDRESSING_STYLE": "path",
    }
