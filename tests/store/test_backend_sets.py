"""`start_server` on the PostgreSQL + S3 backend set (tests/backends.py), as the second pass of
`make test` runs the live-server suites: the server keeps its rows in its own PostgreSQL
database and its files in its own bucket: no SQLite file, no blob folder in its data folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from keyless.store import db
from tests import backends
from tests.builders import build_wheel
from tests.conftest import start_server, stop_server
from tests.index.uploading import upload


def test_a_server_on_postgresql_and_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.VARIABLE, "postgresql")
    live = start_server(tmp_path / "server")
    try:
        assert live.database_url is not None
        assert live.database_url.startswith("postgresql+psycopg://")
        assert live.storage.blobs is not None
        filename, data = build_wheel("on-postgresql", "1.0")
        with live.client() as client:
            answer = upload(client, "prod", live.token("pg-owner", "prod"), filename, data)
            assert answer.status_code == 200, answer.text
            listed = client.get("/prod/simple/on-postgresql/")
            assert filename in listed.text
        with db.reading(live.engine()) as conn:
            rows = conn.execute(select(db.files.c.filename, db.files.c.sha256)).all()
        sha256 = hashlib.sha256(data).hexdigest()
        assert [tuple(row) for row in rows] == [(filename, sha256)]
        assert live.blobs().exists(sha256)
        assert not (live.data_dir / "keyless.db").exists()
        assert not (live.data_dir / "blobs").exists()
    finally:
        stop_server(live)
