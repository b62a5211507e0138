"""`keyless import --from-devpi-export DIR`: the dump a real devpi-server's `devpi-export` writes
(devpi installed as the benchmark installs it), with two users, an index whose uploads are open
to both, and files uploaded with twine, brought in: pip installs the same from keyless, the
users are there without a password until `keyless user passwd`, the index's owner owns the
projects and the other uploader maintains them."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from bench.env import ensure_venv

from tests.conftest import free_port, start_server, stop_server
from tests.index.test_clients import pip_install, twine_upload_to, write_dists

from .test_export_import import keyless, signs_in
from .test_fsck import fsck_json
from .test_import_pypiserver import wait_until_answering
from .uploading import upload

pytestmark = [
    pytest.mark.clients,  # pip and twine against the peers' real servers
    # The import fills a new data folder before any server runs there (SQLite + folder, no
    # settings); the move into PostgreSQL + a bucket is test_export_import's.
    pytest.mark.local_only,
]

JSON_TYPE = {"Accept": "application/json", "Content-Type": "application/json"}
SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def devpi_auth(client: httpx.Client, user: str, password: str) -> dict[str, str]:
    login = client.post("/+login", json={"user": user, "password": password}, headers=JSON_TYPE)
    login.raise_for_status()
    token = login.json()["result"]["password"]
    return {"X-Devpi-Auth": base64.b64encode(f"{user}:{token}".encode()).decode()}


@pytest.fixture(scope="module")
def devpi_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the dump, what pip installed from devpi)."""
    folder = tmp_path_factory.mktemp("devpi")
    bin_dir = ensure_venv("devpi")
    serverdir = folder / "server"
    subprocess.run(
        [
            str(bin_dir / "devpi-init"),
            *("--serverdir", str(serverdir), "--no-root-pypi", "--root-passwd", "root-pw"),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = (folder / "devpi.log").open("wb")
    process = subprocess.Popen(
        [
            str(bin_dir / "devpi-server"),
            *("--serverdir", str(serverdir), "--host", "127.0.0.1", "--port", str(port)),
            "--offline-mode",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    try:
        wait_until_answering(f"{base}/+api", process, folder / "devpi.log", seconds=90)
        with httpx.Client(base_url=base, timeout=60) as client:
            for user in ("alice", "bob"):
                made = client.put(
                    f"/{user}", json={"password": f"{user}-devpi-pw"}, headers=JSON_TYPE
                )
                assert made.status_code == 201, made.text
            made = client.put(
                "/alice/dev",
                json={"type": "stage", "bases": [], "acl_upload": ["alice", "bob"]},
                headers={**JSON_TYPE, **devpi_auth(client, "alice", "alice-devpi-pw")},
            )
            assert made.status_code in (200, 201), made.text
        files = write_dists(folder / "dists", "devpi-demo", "1.0")
        files += write_dists(folder / "dists", "devpi-demo", "1.1")
        uploaded = twine_upload_to(f"{base}/alice/dev/", files, env, "alice", "alice-devpi-pw")
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
        installed = pip_install(f"{base}/alice/dev/+simple/", folder / "pip", env, "devpi-demo")
    finally:
        process.terminate()
        process.wait(timeout=30)
    dump = folder / "dump"
    exported = subprocess.run(
        [str(bin_dir / "devpi-export"), "--serverdir", str(serverdir), str(dump)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    return dump, installed


def test_a_devpi_export_moves_in(
    devpi_dump: tuple[Path, str], tmp_path: Path, env: dict[str, str]
) -> None:
    dump, installed_from_devpi = devpi_dump
    folder = tmp_path / "keyless"
    status, out = keyless(folder, "import", "--from-devpi-export", str(dump))
    assert status == 0, out
    assert "4 file(s) added, 0 already there, 0 skipped" in out
    assert "devpi alice/dev -> keyless index 'alice-dev' (profile private)" in out
    assert "users alice, bob created without a password" in out
    assert "keyless user passwd NAME" in out
    assert "root" not in out.split("users ")[1].split(" created")[0]

    status, again = keyless(folder, "import", "--from-devpi-export", str(dump))
    assert status == 0, again
    assert "0 file(s) added, 4 already there, 0 skipped" in again

    live = start_server(folder)
    try:
        assert pip_install(live.simple_url("alice-dev"), tmp_path / "pip", env, "devpi-demo") == (
            installed_from_devpi
        )
        assert fsck_json(live)[0] == 0
        with live.client() as client:
            # No password yet: devpi's is not carried over.
            assert not signs_in(client, "alice", "alice-devpi-pw")
        status, out = keyless(
            folder, "user", "passwd", "alice", "--password-stdin", stdin="a new password\n"
        )
        assert status == 0, out
        with live.client() as client:
            assert signs_in(client, "alice", "a new password")
            page = client.get("/alice-dev/simple/devpi-demo/", headers=SIMPLE_JSON)
            assert page.status_code == 200
            assert len(page.json()["files"]) == 4
        status, trail = keyless(folder, "audit", "--index", "alice-dev", "--json")
        rows = json.loads(trail)
        uploads = [r for r in rows if r["action"] == "file_upload"]
        assert len(uploads) == 4
        assert all(
            r["actor"] == "alice" and r["details"]["imported_from"] == "devpi" for r in uploads
        )
        roles = [r["details"] for r in rows if r["action"] == "add_role"]
        assert roles == [{"user": "bob", "role": "maintainer"}]
        # alice owns the project: a token of hers uploads a new release.
        status, made = keyless(
            folder, "token", "create", "--user", "alice", "--index", "alice-dev", "--json"
        )
        token = json.loads(made.splitlines()[-1])["token"]
        new = write_dists(tmp_path / "new", "devpi-demo", "2.0")
        with live.client() as client:
            answer = upload(client, "alice-dev", token, new[0].name, new[0].read_bytes())
            assert answer.status_code == 200, answer.text
    finally:
        stop_server(live)


def test_yanked_releases_and_damaged_files_of_a_dump(
    devpi_dump: tuple[Path, str], tmp_path: Path
) -> None:
    """devpi keeps a yanked state only for mirrored releases (its private indexes cannot yank,
    devpi-server 6.20), so the real dump is edited as a mirror's would read: version 1.0
    yanked. One file's bytes are changed after the export, as a damaged copy would be."""
    dump = tmp_path / "dump"
    shutil.copytree(devpi_dump[0], dump)
    dataindex = json.loads((dump / "dataindex.json").read_text())
    stage = dataindex["indexes"]["alice/dev"]
    stage["projects"]["devpi-demo"]["1.0"]["yanked"] = "broken build"
    (dump / "dataindex.json").write_text(json.dumps(dataindex))
    damaged = next(f for f in stage["files"] if f["relpath"].endswith("1.1.tar.gz"))
    path = dump / damaged["relpath"]
    path.write_bytes(path.read_bytes() + b"\0")

    folder = tmp_path / "keyless"
    status, out = keyless(folder, "import", "--from-devpi-export", str(dump))
    assert status == 1, out
    assert "3 file(s) added, 0 already there, 1 skipped" in out
    assert f"skipped {damaged['relpath']}: its bytes have sha256" in out
    assert "not the " + damaged["entrymapping"]["hashes"]["sha256"] in out
    live = start_server(folder)
    try:
        with live.client() as client:
            files = client.get("/alice-dev/simple/devpi-demo/", headers=SIMPLE_JSON).json()["files"]
        yanked = {f["filename"]: f.get("yanked", False) for f in files}
        assert yanked == {
            "devpi_demo-1.0-py3-none-any.whl": "broken build",
            "devpi_demo-1.0.tar.gz": "broken build",
            "devpi_demo-1.1-py3-none-any.whl": False,
        }
    finally:
        stop_server(live)


def test_not_a_dump_is_one_line(tmp_path: Path) -> None:
    status, out = keyless(tmp_path / "k", "import", "--from-devpi-export", str(tmp_path))
    assert (status, out.strip()) == (
        2,
        f"error: {tmp_path} has no dataindex.json: give the folder `devpi-export` wrote.",
    )
    (tmp_path / "dataindex.json").write_text('{"dumpversion": "9"}')
    status, out = keyless(tmp_path / "k", "import", "--from-devpi-export", str(tmp_path))
    assert status == 2
    assert "devpi dump version '9' is not one this keyless reads (1, 2)" in out
