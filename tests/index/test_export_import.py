"""`keyless export` / `keyless import`: a whole server into one archive and back, onto another
data folder (SQLite + folder) or a bucket (SQLite + S3, moto's server), and damaged archives
refused with the target left as it was."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyless.config import StorageSettings
from keyless.store import db
from keyless.store.archive import exported_tables
from tests.builders import build_sdist, build_wheel
from tests.conftest import SERVER_CONFIG, LiveServer, start_server, stop_server
from tests.index.test_clients import pip_install, write_dists
from tests.pg import PostgreSQL
from tests.store.s3_server import S3Server, s3_server, s3_storage
from tests.store.test_s3_app import storage_env

from .test_fsck import fsck_json
from .uploading import upload

pytestmark = pytest.mark.clients  # pip installs from the imported server

__all__ = ["s3_server", "s3_storage"]  # the fixtures

PASSWORD = "correct horse battery"


def keyless(
    folder: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> tuple[int, str]:
    """Run `keyless ARGS` on the server whose config and data are in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "keyless.toml"
    if not config.exists():
        config.write_text(SERVER_CONFIG, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keyless",
            *args,
            "--config",
            str(config),
            "--data",
            str(folder / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
        input=stdin,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def source(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "source")
    yield server
    stop_server(server)


def populate(server: LiveServer, dists: Path) -> dict[str, object]:
    """Users, tokens, uploads, a yank, a role and a publisher: what a server holds."""
    token = server.token("alice", "prod")
    paths = write_dists(dists, "moving-demo", "1.0")
    write_dists(dists, "moving-demo", "1.1")
    with server.client() as client:
        for path in sorted(dists.iterdir()):
            answer = upload(client, "prod", token, path.name, path.read_bytes())
            assert answer.status_code == 200, answer.text
        other = server.token("bob", "test")
        assert upload(client, "test", other, *build_wheel("other-demo", "0.1")).status_code == 200
        yanked = client.post(
            "/prod/api/projects/moving-demo/releases/1.1/yank",
            json={"reason": "broken"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert yanked.status_code == 200, yanked.text
    status, out = keyless(
        server.data_dir.parent, "role", "add", "moving-demo", "bob", "--index", "prod"
    )
    assert status == 0, out
    status, out = keyless(
        server.data_dir.parent,
        *("publisher", "add", "--index", "prod", "--project", "moving-demo", "github"),
        *("--owner", "example", "--repository", "moving-demo", "--workflow", "release.yml"),
    )
    assert status == 0, out
    return {"token": token, "wheel": paths[0]}


def signs_in(client: httpx.Client, username: str, password: str) -> bool:
    """Whether the web sign-in form accepts these (a failed attempt is counted)."""
    form = client.get("/account/login", headers={"Accept": "text/html"})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf
    answer = client.post(
        "/account/login",
        data={"csrf_token": csrf[1], "username": username, "password": password, "next": "/"},
    )
    return answer.status_code == 303


def history_page(server: LiveServer, project: str) -> str:
    """The project's security history as its owner sees it, without per-session tokens."""
    with server.client() as client:
        form = client.get("/account/login", headers={"Accept": "text/html"})
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf
        signed_in = client.post(
            "/account/login",
            data={"csrf_token": csrf[1], "username": "alice", "password": PASSWORD, "next": "/"},
        )
        assert signed_in.status_code == 303, signed_in.text
        page = client.get(f"/prod/project/{project}/history", headers={"Accept": "text/html"})
        assert page.status_code == 200, page.text
    body = re.sub(r'name="csrf_token" value="[^"]+"', "", page.text)
    assert "file_upload" in body or "moving-demo-1.0" in body  # entries are listed
    return body


def audit(folder: Path, index: str, env: dict[str, str] | None = None) -> str:
    status, out = keyless(folder, "audit", "--index", index, "--json", env=env)
    assert status == 0, out
    return out


def rows_of(database: Path | str) -> dict[str, int]:
    engine = db.open_database(database)
    with db.reading(engine) as conn:
        return {
            t.name: len(conn.execute(t.select()).all())
            for t in exported_tables()
            if t is not db.indexes
        }


def check_moved(
    source: LiveServer,
    target: LiveServer,
    moved: dict[str, object],
    tmp_path: Path,
    env: dict[str, str],
    target_env: dict[str, str] | None = None,
) -> None:
    """What a user checks after moving: everything answers as it did on the source."""
    status, report = fsck_json(target)
    assert (status, report["clean"], report["files"]) == (0, True, 5), report

    out = pip_install(target.simple_url("prod"), tmp_path, env, "moving-demo")
    assert "moving-demo-1.0" in out or "moving_demo-1.0" in out  # 1.1 is yanked
    for index in ("prod", "test"):
        assert audit(target.data_dir.parent, index, target_env) == audit(
            source.data_dir.parent, index
        )
    assert history_page(target, "moving-demo") == history_page(source, "moving-demo")
    with source.client() as before, target.client() as after:
        for path in ("/prod/simple/moving-demo/", "/prod/pypi/moving-demo/json"):
            old = before.get(path, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            new = after.get(path, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            assert (new.status_code, new.text.replace(target.url, "")) == (
                old.status_code,
                old.text.replace(source.url, ""),
            )
        # A re-upload of a stored file: the same answer on both.
        wheel = moved["wheel"]
        assert isinstance(wheel, Path)
        token = str(moved["token"])
        again_old = upload(before, "prod", token, wheel.name, wheel.read_bytes())
        again_new = upload(after, "prod", token, wheel.name, wheel.read_bytes())
        assert (again_new.status_code, again_new.text.replace(target.url, "")) == (
            again_old.status_code,
            again_old.text.replace(source.url, ""),
        )
        changed = build_wheel("moving-demo", "1.0", extra_files={"x.txt": b"other bytes"})
        refused_old = upload(before, "prod", token, wheel.name, changed[1])
        refused_new = upload(after, "prod", token, wheel.name, changed[1])
        assert refused_new.status_code == refused_old.status_code == 400
        assert refused_new.text.replace(target.url, "") == refused_old.text.replace(source.url, "")
        # The old API token still works on the new server: a new release.
        fresh = upload(after, "prod", token, *build_sdist("moving-demo", "2.0"))
        assert fresh.status_code == 200, fresh.text


def test_export_then_import_into_a_new_folder(
    source: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    moved = populate(source, tmp_path / "dists")
    archive = tmp_path / "keyless.tar"
    status, out = keyless(source.data_dir.parent, "export", str(archive))  # while it runs
    assert status == 0, out
    assert "5 file(s)" in out

    # The new server was started once, and someone tried to sign in: still empty.
    target_folder = tmp_path / "target"
    empty = start_server(target_folder)
    with empty.client() as client:
        assert not signs_in(client, "alice", "wrong password")
    stop_server(empty)
    status, out = keyless(target_folder, "import", str(archive))
    assert status == 0, out
    target = start_server(target_folder)
    try:
        check_moved(source, target, moved, tmp_path / "check", env)
        # Into a server that holds data: refused, with nothing changed.
        before = rows_of(target.database)
        status, out = keyless(target_folder, "import", str(archive))
        assert status == 1
        assert "already holds data" in out
        assert rows_of(target.database) == before
    finally:
        stop_server(target)


@pytest.mark.local_only  # from the folder into a bucket, by its own settings
def test_import_into_a_bucket(
    source: LiveServer,
    s3_server: S3Server,
    s3_storage: StorageSettings,
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    moved = populate(source, tmp_path / "dists")
    archive = tmp_path / "keyless.tar"
    assert keyless(source.data_dir.parent, "export", str(archive))[0] == 0

    bucket_env = storage_env(s3_storage)
    target_folder = tmp_path / "target"
    status, out = keyless(target_folder, "import", str(archive), env=bucket_env)
    assert status == 0, out
    bucket, prefix = s3_storage.bucket_and_prefix or ("", "")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len([k for k in keys if k.startswith(f"{prefix}sha256/")]) == 5
    assert not (target_folder / "data" / "blobs" / "sha256").exists() or not any(
        (target_folder / "data" / "blobs" / "sha256").iterdir()
    )
    target = start_server(target_folder, env=bucket_env)
    try:
        check_moved(source, target, moved, tmp_path / "check", env, bucket_env)
    finally:
        stop_server(target)

    # And back out of the bucket, into a folder: the blobs are read from S3 this time.
    again = tmp_path / "again.tar"
    status, out = keyless(target_folder, "export", str(again), env=bucket_env)
    assert status == 0, out
    assert "6 file(s)" in out  # check_moved uploaded one more
    third = tmp_path / "third"
    status, out = keyless(third, "import", str(again))
    assert status == 0, out
    assert audit(third, "prod") == audit(target_folder, "prod", bucket_env)
    assert (third / "data" / "blobs" / "sha256").is_dir()
    status, report = fsck_json(start_like(third))
    assert (status, report["clean"], report["files"]) == (0, True, 6), report


@pytest.mark.local_only  # from SQLite and a folder, whatever the pass
def test_move_from_sqlite_and_a_folder_to_postgresql_and_a_bucket(
    source: LiveServer,
    postgresql: PostgreSQL,
    s3_storage: StorageSettings,
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    """The move docs/deploy.md describes: export the one-machine server, import the archive
    with the production settings, start the servers on them."""
    moved = populate(source, tmp_path / "dists")
    archive = tmp_path / "keyless.tar"
    assert keyless(source.data_dir.parent, "export", str(archive))[0] == 0
    production = {
        **storage_env(s3_storage),
        "KEYLESS_DATABASE_URL": postgresql.new_database("moved"),
    }
    target_folder = tmp_path / "target"
    status, out = keyless(target_folder, "import", str(archive), env=production)
    assert status == 0, out
    assert not (target_folder / "data" / "keyless.db").exists()
    target = start_server(target_folder, env=production)
    try:
        check_moved(source, target, moved, tmp_path / "check", env, production)
    finally:
        stop_server(target)


def start_like(folder: Path) -> LiveServer:
    """The handle `fsck_json` takes, for a data folder no server runs on."""
    return LiveServer("", folder / "data", folder / "server.log", None)  # type: ignore[arg-type]


def rewritten(archive: Path, out: Path, change: dict[str, bytes]) -> Path:
    """A copy of `archive` with the members named in `change` holding other bytes."""
    with tarfile.open(archive) as tar, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as copy:
        for member in tar:
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            data = change.get(member.name, data)
            member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    return out


def test_damaged_archives_are_refused_and_change_nothing(
    source: LiveServer, tmp_path: Path
) -> None:
    populate(source, tmp_path / "dists")
    archive = tmp_path / "keyless.tar"
    assert keyless(source.data_dir.parent, "export", str(archive))[0] == 0
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    blob_name = next(n for n in names if n.startswith("blobs/"))
    data = archive.read_bytes()
    blob_sha = blob_name.split("/")[1]

    flipped = bytearray(data)
    with tarfile.open(archive) as tar:
        offset = tar.getmember(blob_name).offset_data
    flipped[offset + 100] ^= 0x01
    (tmp_path / "flipped.tar").write_bytes(bytes(flipped))
    (tmp_path / "truncated.tar").write_bytes(data[: len(data) * 2 // 3])
    future = rewritten(
        archive,
        tmp_path / "future.tar",
        {"manifest.json": json.dumps({**manifest, "version": 99}).encode()},
    )
    older = rewritten(
        archive,
        tmp_path / "older.tar",
        {"manifest.json": json.dumps({**manifest, "schema": ["r0000"]}).encode()},
    )
    table = rewritten(
        archive,
        tmp_path / "table.tar",
        {"tables/api_tokens.jsonl": b'{"id": 1, "token_hash": "forged"}\n'},
    )
    # Rows whose checksum was made to match (by hand): refused by the schema, in one line.
    forged_rows = b'{"id": 1, "token_hash": "forged"}\n'
    forged_tables = {
        **manifest["tables"],
        "api_tokens": {"rows": 1, "sha256": hashlib.sha256(forged_rows).hexdigest()},
    }
    forged = rewritten(
        archive,
        tmp_path / "forged.tar",
        {
            "manifest.json": json.dumps({**manifest, "tables": forged_tables}).encode(),
            "tables/api_tokens.jsonl": forged_rows,
        },
    )
    cases = {
        forged: "the rows of api_tokens cannot be loaded (NOT NULL constraint failed",
        tmp_path / "flipped.tar": f"the bytes of blobs/{blob_sha} have sha256",
        tmp_path / "truncated.tar": "truncated",
        future: "format version 99; this keyless reads version 1",
        table: "tables/api_tokens.jsonl does not match its sha256",
        older: f"exported by keyless {manifest['keyless']} at schema revision r0000; this "
        f"keyless is at {manifest['schema'][0]}",
        tmp_path / "dists": "cannot be read as a keyless export archive",
    }
    target_folder = tmp_path / "target"
    blobs = target_folder / "data" / "blobs" / "sha256"
    for damaged, message in cases.items():
        status, out = keyless(target_folder, "import", str(damaged))
        assert status in (1, 2), out
        assert message in out, (damaged.name, out)
        assert "Nothing was imported" in out
        assert set(rows_of(target_folder / "data" / "keyless.db").values()) == {0}
        assert not blobs.exists() or not list(blobs.rglob("*/*/*")), damaged.name
    status, out = keyless(target_folder, "import", str(archive))
    assert status == 0, out
    assert len(list(blobs.rglob("*/*/*"))) == 5
    counts = rows_of(target_folder / "data" / "keyless.db")
    assert (counts["files"], counts["users"], counts["publishers"]) == (5, 2, 1)
    digest = hashlib.sha256((blobs / blob_sha[:2] / blob_sha[2:4] / blob_sha).read_bytes())
    assert digest.hexdigest() == blob_sha


@pytest.mark.local_only  # damages a blob file in the folder
def test_an_export_refuses_a_damaged_blob_and_leaves_no_archive(
    source: LiveServer, tmp_path: Path
) -> None:
    token = source.token("alice", "prod")
    filename, data = build_wheel("damaged-demo", "1.0")
    with source.client() as client:
        assert upload(client, "prod", token, filename, data).status_code == 200
    sha256 = hashlib.sha256(data).hexdigest()
    blob = source.data_dir / "blobs" / "sha256" / sha256[:2] / sha256[2:4] / sha256
    damaged = bytearray(blob.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    blob.write_bytes(bytes(damaged))

    archive = tmp_path / "keyless.tar"
    status, out = keyless(source.data_dir.parent, "export", str(archive))
    assert status == 1
    assert f"the blob {sha256} in the blob store does not hold the bytes" in out
    assert "keyless fsck --repair" in out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("keyless.tar")) == []
