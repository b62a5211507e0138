"""SIGKILL at random points of a PEP 694 publish: after the restart the release is either fully
visible or not at all, every time.

Each round opens a session with FILES wheels on a live server, sends the publish and kills the
server (SIGKILL, no clean-up runs) after a random delay around the publish's own duration, so
the kills land before, inside and after it; what the database said at the kill is tallied
(`processing` is a kill inside the publish). The restarted server finishes a publish left
`processing` before it answers anything.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from keyless.store import db
from keyless.store.db import open_database
from tests.builders import build_wheel
from tests.conftest import LiveServer, start_server, stop_server

from .sessions_api import get, open_session, publish, upload_completed

KILLS = 20
FILES = 12


def simple_files(http: httpx.Client, name: str) -> list[str]:
    page = http.get(
        f"/prod/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    return [] if page.status_code == 404 else sorted(f["filename"] for f in page.json()["files"])


def status_in_database(server: LiveServer, token: str) -> str:
    engine = open_database(server.database)
    try:
        with db.reading(engine) as conn:
            return str(
                conn.execute(
                    select(db.upload_sessions.c.status).where(db.upload_sessions.c.token == token)
                ).scalar()
            )
    finally:
        engine.dispose()


def send(
    http: httpx.Client, session: dict[str, Any], started: float, answered: list[float]
) -> None:
    """Publish; note how long the answer took, if the server lived to give it."""
    try:
        publish(http, session["token"], session)
        answered.append(time.monotonic() - started)
    except httpx.TransportError:
        pass  # killed before it answered


@pytest.mark.fuzz
def test_a_publish_killed_anywhere_is_all_or_nothing_after_restart(tmp_path: Path) -> None:
    folder = tmp_path / "server"
    server = start_server(folder)
    token = server.token("crash-owner", "prod")
    rng = random.Random(694)  # noqa: S311 - reproducible kill points, not secrets
    at_kill: Counter[str] = Counter()
    window = 0.05
    try:
        for round_ in range(KILLS):
            name = f"crash-{round_}"
            wheels = [build_wheel(name, "1.0", build_tag=str(i + 1)) for i in range(FILES)]
            with server.client() as http:
                session = open_session(http, token, name, "1.0")
                session["token"] = token  # for `send`
                for wheel in wheels:
                    upload_completed(http, token, session, *wheel)
                path = httpx.URL(session["links"]["session"]).path
                started = time.monotonic()
                answered: list[float] = []

                sender = threading.Thread(target=send, args=(http, session, started, answered))
                sender.start()
                time.sleep(rng.uniform(0, window))
                os.kill(server.process.pid, signal.SIGKILL)
                sender.join(30)
            server.process.wait(10)
            at_kill[status_in_database(server, session["session-token"])] += 1
            if answered:  # aim the next kills at the publish's own duration
                window = max(window, answered[0] * 1.2)
            stop_server(server)
            server = start_server(folder, data_dir=server.data_dir)
            with server.client() as http:
                visible = simple_files(http, name)
                status = get(http, path, token).json()["status"]
            expected = sorted(w[0] for w in wheels) if status == "published" else []
            assert visible == expected, (round_, status, visible)
            assert status in ("open", "published"), status
    finally:
        stop_server(server)
    print(f"\nsession status at each SIGKILL ({KILLS} kills): {dict(at_kill)}")
    assert sum(at_kill.values()) == KILLS
