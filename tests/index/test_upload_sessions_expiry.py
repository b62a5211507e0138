"""PEP 694 sessions expire, and garbage collection takes the files of ended sessions only.

A server whose sessions live LIFETIME seconds (`upload-session-lifetime`); collection runs
in-process on its data, as `keyless gc` does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from keyless.index.maintenance import GarbageCollector
from tests.builders import build_sdist, build_wheel
from tests.conftest import SERVER_CONFIG, LiveServer, start_server, stop_server

from .sessions_api import (
    add_file,
    assert_problem,
    complete,
    delete,
    get,
    open_session,
    post,
    publish,
)
from .test_fsck import fsck_json

LIFETIME = 4


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = f'[server]\nupload-session-lifetime = "{LIFETIME}s"\n' + SERVER_CONFIG
    live = start_server(tmp_path_factory.mktemp("sessions-expire"), config_text=config)
    yield live
    stop_server(live)


def expires_at(session: dict[str, object]) -> dt.datetime:
    return dt.datetime.strptime(str(session["expires-at"]), "%Y-%m-%dT%H:%M:%S%z")


def test_expired_and_canceled_sessions_lose_their_files_live_ones_keep_them(
    short_lived: LiveServer,
) -> None:
    server = short_lived
    token = server.token("expiring-owner", "prod")
    blobs = server.blobs()
    with server.client() as http:
        expired = open_session(http, token, "expiring", "1.0")
        expired_wheel = build_wheel("expiring", "1.0")
        add_file(http, token, expired, *expired_wheel)
        time.sleep(LIFETIME + 1)
        assert get(http, expired["links"]["session"], token).json()["status"] == "canceled"
        assert_problem(publish(http, token, expired), 409, "canceled")
        # The release is free again; this session lives on (extended to the cap).
        live = open_session(http, token, "expiring", "1.0")
        extended = post(http, live["links"]["extend"], token, {"extend-for": 3600})
        assert extended.status_code == 200, extended.text
        cap = expires_at(live) + dt.timedelta(seconds=LIFETIME * 3)  # 4 lifetimes in all
        assert expires_at(live) < expires_at(extended.json()) <= cap
        live_sdist = build_sdist("expiring", "1.0")
        live_file = add_file(http, token, live, *live_sdist)
        canceled = open_session(http, token, "canceled-files", "1.0")
        canceled_wheel = build_wheel("canceled-files", "1.0")
        add_file(http, token, canceled, *canceled_wheel)
        assert delete(http, canceled["links"]["session"], token).status_code == 204

        sha = {
            name: hashlib.sha256(data).hexdigest()
            for name, data in (expired_wheel, live_sdist, canceled_wheel)
        }
        assert all(blobs.exists(s) for s in sha.values())
        GarbageCollector(server.engine(), blobs).collect_garbage()
        assert not blobs.exists(sha[expired_wheel[0]])
        assert not blobs.exists(sha[canceled_wheel[0]])
        assert blobs.exists(sha[live_sdist[0]])
        # `keyless fsck --repair` sees no orphan in a live session's file either.
        _, report = fsck_json(server, "--repair")
        assert sha[live_sdist[0]] not in json.dumps(report)
        assert blobs.exists(sha[live_sdist[0]])
        assert complete(http, token, live_file).status_code == 201
        assert publish(http, token, live).status_code == 201
        got = http.get(f"/files/{sha[live_sdist[0]]}/{live_sdist[0]}")
        assert got.status_code == 200
        assert got.content == live_sdist[1]
