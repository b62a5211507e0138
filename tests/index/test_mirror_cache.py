"""`keyless mirror warm`, `keyless mirror prune` and offline mode on a live mirror whose upstream
is another keyless server started here."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from keyless.index.accounts import as_utc
from keyless.store import db
from tests.builders import build_wheel
from tests.conftest import LiveServer, run_keyless, start_server, stop_server
from tests.index.test_mirror import JSON, publish, stored_soon
from tests.index.uploading import upload


def mirror_config(upstream: LiveServer) -> str:
    return f"""
[indexes.main]
upstream = "{upstream.simple_url("test")}"

[indexes.local]
"""


def wheel_of(made: dict[str, bytes]) -> str:
    return next(name for name in made if name.endswith(".whl"))


def upload_to(server: LiveServer, index: str, filename: str, data: bytes) -> None:
    with server.client() as client:
        answer = upload(client, index, server.token(f"{index}-owner", index), filename, data)
    assert answer.status_code == 200, answer.text


def test_warm_fetches_the_allowed_version_so_installs_work_with_the_upstream_gone(
    tmp_path: Path, env: dict[str, str]
) -> None:
    upstream = start_server(tmp_path / "upstream")
    mirror = start_server(tmp_path / "mirror", config_text=mirror_config(upstream))
    try:
        warm_a1 = publish(upstream, "test", "warm-a", "1.0")
        warm_a2 = publish(upstream, "test", "warm-a", "2.0")
        warm_b = publish(upstream, "test", "warm-b", "1.0")
        requirements = tmp_path / "requirements.txt"
        requirements.write_text(
            "# pinned\nwarm-b==1.0 --hash=sha256:0000  # a comment\n\n--index-url x\n",
            encoding="utf-8",
        )
        done = run_keyless(
            "mirror", "warm", "--index-url", mirror.simple_url("main"), "warm-a<2",
            "-r", str(requirements),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "warmed warm-a<2: 1.0 (2 files)" in done.stdout
        assert "warmed warm-b==1.0: 1.0 (2 files)" in done.stdout
        stored = mirror.blobs()
        with upstream.client() as client:
            pages = {
                name: client.get(f"/test/simple/{name}/", headers={"Accept": JSON}).json()
                for name in ("warm-a", "warm-b")
            }
        digests = {f["filename"]: f["hashes"]["sha256"] for p in pages.values() for f in p["files"]}
        assert stored_soon(mirror, *(digests[name] for name in [*warm_a1, *warm_b]))
        assert not any(stored.exists(digests[name]) for name in warm_a2)
        # A name the upstream lacks: said, and the exit status says so too.
        missing = run_keyless(
            "mirror", "warm", "--index-url", mirror.simple_url("main"), "no-such-project"
        )
        assert missing.returncode == 1
        assert "not warmed no-such-project: 404" in missing.stderr
        assert "Traceback" not in missing.stderr
        stop_server(upstream)
        target = tmp_path / "target"
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target),
             "--index-url", mirror.simple_url("main"), "warm-a<2", "warm-b"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert sorted(p.name for p in target.glob("*.dist-info")) == [
            "warm_a-1.0.dist-info",
            "warm_b-1.0.dist-info",
        ]
    finally:
        stop_server(mirror)
        stop_server(upstream)


@pytest.mark.local_only  # the prune command is pointed at the test server's SQLite data
def test_prune_forgets_files_unused_for_n_days_and_keeps_shared_blobs(tmp_path: Path) -> None:
    upstream = start_server(tmp_path / "upstream")
    config = mirror_config(upstream)
    mirror = start_server(tmp_path / "mirror", config_text=config)
    try:
        old = publish(upstream, "test", "old-lib", "1.0")
        used = publish(upstream, "test", "used-lib", "1.0")
        shared_name, shared_bytes = build_wheel("shared-blob", "1.0")
        upload_to(upstream, "test", shared_name, shared_bytes)
        urls = {}
        with mirror.client() as client:
            for name, made in (("old-lib", old), ("used-lib", used), ("shared-blob", None)):
                page = client.get(f"/main/simple/{name}/", headers={"Accept": JSON}).json()
                wheel = wheel_of(made) if made else shared_name
                entry = next(f for f in page["files"] if f["filename"] == wheel)
                urls[name] = (entry["url"], entry["hashes"]["sha256"])
                assert client.get(entry["url"]).status_code == 200
                assert client.get(entry["url"] + ".metadata").status_code == 200
        # Then the same wheel on the mirror server's own `local` index: one blob, which
        # pruning the upstream's copy must leave to the local file.
        upload_to(mirror, "local", shared_name, shared_bytes)
        # Ten days pass (written into the database), then a restarted server sees used-lib
        # downloaded again: its last download is now.
        ten_days_ago = datetime.now(UTC) - timedelta(days=10)
        with db.writing(mirror.engine()) as conn:
            conn.execute(
                update(db.mirrored_files).values(stored=ten_days_ago, last_download=ten_days_ago)
            )
        stop_server(mirror)
        mirror = start_server(tmp_path / "mirror", config_text=config)
        with mirror.client() as client:
            assert client.get(urls["used-lib"][0]).status_code == 200
        data = ("--data", str(mirror.data_dir), "--config", str(tmp_path / "mirror/keyless.toml"))
        done = run_keyless("mirror", "prune", "--days", "7", *data)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"pruned main: {wheel_of(old)}" in done.stdout
        assert f"pruned main: {shared_name}" in done.stdout
        assert wheel_of(used) not in done.stdout
        # old-lib's wheel and metadata file, and shared-blob's metadata file (the local index
        # keeps its own metadata in the database); not shared-blob's wheel.
        assert "2 files forgotten, 3 blobs removed" in done.stdout
        blobs = mirror.blobs()
        assert not blobs.exists(urls["old-lib"][1])
        assert blobs.exists(urls["used-lib"][1])
        assert blobs.exists(urls["shared-blob"][1])  # the local index's file keeps it
        fsck = run_keyless("fsck", *data)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        # A pruned file is fetched again on its next download.
        with mirror.client() as client:
            again = client.get(urls["old-lib"][0])
        assert again.status_code == 200
        assert again.content == old[wheel_of(old)]
        unknown = run_keyless("mirror", "prune", "--days", "7", "--index", "nope", *data)
        assert unknown.returncode != 0
        assert "nope" in unknown.stderr
        assert "Traceback" not in unknown.stderr
        for days in ("-1", "nan", "inf"):  # no cut-off date can be made of these
            bad = run_keyless("mirror", "prune", "--days", days, *data)
            assert bad.returncode == 2, (days, bad.stderr)
            assert "--days must be a number of days" in bad.stderr
            assert "Traceback" not in bad.stderr
    finally:
        stop_server(mirror)
        stop_server(upstream)


@pytest.mark.local_only  # the prune command is pointed at the test server's SQLite data
def test_a_file_stored_again_keeps_its_last_download_for_prune(tmp_path: Path) -> None:
    """A stored file whose blob went is fetched and recorded again on its next download: its
    row keeps the download time `mirror prune` counts from, and that new storing counts as
    well, so neither makes it look unused."""
    upstream = start_server(tmp_path / "upstream")
    config = mirror_config(upstream)
    mirror = start_server(tmp_path / "mirror", config_text=config)
    data = ("--data", str(mirror.data_dir), "--config", str(tmp_path / "mirror/keyless.toml"))
    try:
        made = publish(upstream, "test", "again-lib", "1.0")
        filename = wheel_of(made)
        with mirror.client() as client:
            page = client.get("/main/simple/again-lib/", headers={"Accept": JSON}).json()
            entry = next(f for f in page["files"] if f["filename"] == filename)
            assert client.get(entry["url"]).status_code == 200
        assert stored_soon(mirror, entry["hashes"]["sha256"])
        # Stored twenty days ago, last downloaded two days ago (written into the database).
        row = db.mirrored_files.c.filename == filename
        stored, downloaded = (datetime.now(UTC) - timedelta(days=d) for d in (20, 2))
        with db.writing(mirror.engine()) as conn:
            conn.execute(
                update(db.mirrored_files).where(row).values(stored=stored, last_download=downloaded)
            )
        # Its blob goes behind the server's back: the next download fetches it again.
        assert mirror.blobs().remove(entry["hashes"]["sha256"])
        with mirror.client() as client:
            again = client.get(entry["url"])
        assert again.status_code == 200, again.text
        assert again.content == made[filename]
        assert stored_soon(mirror, entry["hashes"]["sha256"])
        # The row is recorded just after the blob is placed (bounded wait).
        for _ in range(100):
            with db.reading(mirror.engine()) as conn:
                kept = conn.execute(
                    select(db.mirrored_files.c.stored, db.mirrored_files.c.last_download).where(row)
                ).one()
            if as_utc(kept.stored) > downloaded:
                break
            time.sleep(0.05)
        assert kept.last_download is not None, "the re-record forgot the last download"
        assert abs(as_utc(kept.last_download) - downloaded) < timedelta(seconds=1)
        assert as_utc(kept.stored) > downloaded  # stored anew, now
        # Neither the old download nor the new storing is older than a day: kept.
        done = run_keyless("mirror", "prune", "--days", "1", *data)
        assert done.returncode == 0, done.stdout + done.stderr
        assert filename not in done.stdout
        # Once both are older than the cut-off, the same command forgets it.
        ten_days_ago = datetime.now(UTC) - timedelta(days=10)
        with db.writing(mirror.engine()) as conn:
            conn.execute(update(db.mirrored_files).where(row).values(stored=ten_days_ago))
        done = run_keyless("mirror", "prune", "--days", "1", *data)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"pruned main: {filename}" in done.stdout
    finally:
        stop_server(mirror)
        stop_server(upstream)


class ConnectionCounter:
    """A TCP listener counting the connections made to it: an offline mirror's "upstream"."""

    def __init__(self) -> None:
        self.count = 0
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.count += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()


def test_an_offline_index_serves_what_it_stored_and_never_asks_the_upstream(
    tmp_path: Path, env: dict[str, str]
) -> None:
    upstream = start_server(tmp_path / "upstream")
    mirror = start_server(tmp_path / "mirror", config_text=mirror_config(upstream))
    counter = ConnectionCounter()
    try:
        publish(upstream, "test", "off-dep", "1.0")
        made = publish(
            upstream, "test", "off-lib", "2.0", requires_dist="off-dep", requires_python=">=3.8"
        )
        publish(upstream, "test", "off-never", "1.0")
        old = publish(upstream, "test", "off-old", "1.0")
        with upstream.client() as client:
            yanked = client.post(
                "/test/api/projects/off-old/releases/1.0/yank",
                json={"reason": "broken"},
                headers={"Authorization": f"Bearer {upstream.token('test-owner', 'test')}"},
            )
            assert yanked.status_code == 200, yanked.text
        with mirror.client() as client:
            page = client.get("/main/simple/off-old/", headers={"Accept": JSON}).json()
            entry = next(f for f in page["files"] if f["filename"] == wheel_of(old))
            assert client.get(entry["url"]).status_code == 200
        online = tmp_path / "online"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--only-binary", ":all:",
             "--target", str(online), "--index-url", mirror.simple_url("main"), "off-lib"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        # The same data, offline, its upstream now a listener that counts connections.
        stop_server(mirror)
        offline = f"""
[indexes.main]
upstream = "http://127.0.0.1:{counter.port}/simple/"
upstream-offline = true

[indexes.local]
"""
        mirror = start_server(tmp_path / "mirror", config_text=offline)
        with mirror.client() as client:
            page = client.get("/main/simple/off-lib/", headers={"Accept": JSON})
            never = client.get("/main/simple/off-never/")
            root = client.get("/main/simple/", headers={"Accept": JSON})
            html = client.get("/main/simple/off-lib/")
            api = client.get("/main/pypi/off-lib/json")
            never_api = client.get("/main/pypi/off-never/json")
        assert page.status_code == 200, page.text
        # The JSON API lists what the page lists, and refuses what it refuses, word for word.
        assert api.status_code == 200, api.text
        assert api.headers["x-keyless-stale"].startswith("index offline")
        assert [f["filename"] for f in api.json()["urls"]] == [wheel_of(made)]
        assert api.json()["urls"][0]["requires_python"] == ">=3.8"
        assert (never_api.status_code, never_api.text) == (404, never.text)
        assert [f["filename"] for f in page.json()["files"]] == [wheel_of(made)]
        # What the upstream's page said of the file when it was stored.
        assert page.json()["files"][0]["requires-python"] == ">=3.8"
        with mirror.client() as client:
            kept_old = client.get("/main/simple/off-old/", headers={"Accept": JSON}).json()
        assert [f["yanked"] for f in kept_old["files"]] == ["broken"]
        assert page.json()["versions"] == ["2.0"]
        assert page.headers["x-keyless-stale"].startswith("index offline")
        assert f"#sha256={page.json()['files'][0]['hashes']['sha256']}" in html.text
        assert never.status_code == 404
        assert "Index 'main' is offline (upstream-offline)" in never.text
        assert "never stored 'off-never'" in never.text
        assert root.status_code == 200
        target = tmp_path / "offline"
        again = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target),
             "--index-url", mirror.simple_url("main"), "off-lib"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr
        assert sorted(p.name for p in target.glob("*.dist-info")) == [
            "off_dep-1.0.dist-info",
            "off_lib-2.0.dist-info",
        ]
        assert counter.count == 0
        # Not a bad setting to find out about at the first request.
        config = tmp_path / "bad.toml"
        config.write_text("[indexes.x]\nupstream-offline = true\n", encoding="utf-8")
        bad = run_keyless("serve", "--config", str(config), "--data", str(tmp_path / "bad"))
        assert bad.returncode != 0
        assert "upstream-offline only matters for an index with an upstream" in bad.stderr
    finally:
        counter.close()
        stop_server(mirror)
        stop_server(upstream)


def test_a_merged_project_keeps_its_own_files_while_the_upstream_is_down(tmp_path: Path) -> None:
    upstream = start_server(tmp_path / "upstream")
    config = (
        mirror_config(upstream).replace("[indexes.local]", "") + 'upstream-merge = ["both-lib"]\n'
    )
    mirror = start_server(tmp_path / "mirror", config_text=config)
    try:
        ours = publish(mirror, "main", "both-lib", "1.0")
        publish(upstream, "test", "both-lib", "2.0")
        stop_server(upstream)
        with mirror.client() as client:
            page = client.get("/main/simple/both-lib/", headers={"Accept": JSON})
        assert page.status_code == 200, page.text
        assert sorted(f["filename"] for f in page.json()["files"]) == sorted(ours)
        assert page.headers["x-keyless-stale"].startswith("only local files: The upstream")
    finally:
        stop_server(mirror)
        stop_server(upstream)
