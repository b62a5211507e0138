"""`keyless import --from-pypiserver DIR`: a folder a real pypiserver serves (as the benchmark
installs and runs it), flat and nested, brought into an index; pip then installs the same
packages from keyless. Files that fail the upload checks are listed and skipped."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.env import ensure_venv

from tests.builders import build_wheel, core_metadata_text
from tests.conftest import free_port, start_server, stop_server
from tests.index.test_clients import pip_install, twine_upload_to, write_dists

from .test_export_import import keyless
from .test_fsck import fsck_json

pytestmark = [
    pytest.mark.clients,  # pip and twine against the peers' real servers
    # The import fills a new data folder before any server runs there (SQLite + folder, no
    # settings); the move into PostgreSQL + a bucket is test_export_import's.
    pytest.mark.local_only,
]


@pytest.fixture
def pypiserver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """pypiserver (bench's pinned version) serving `packages/`, uploads open to anyone."""
    packages = tmp_path / "packages"
    packages.mkdir()
    port = free_port()
    log = (tmp_path / "pypiserver.log").open("wb")
    process = subprocess.Popen(
        [
            str(ensure_venv("pypiserver") / "pypi-server"),
            *("run", "-i", "127.0.0.1", "-p", str(port), "-a", ".", "-P", "."),
            *("--disable-fallback", "--server", "auto", str(packages)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/health", process, tmp_path / "pypiserver.log", seconds=30)
        yield url, packages
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_until_answering(
    url: str, process: subprocess.Popen[bytes], log: Path, *, seconds: float
) -> None:
    """Poll `url` until it answers 200; fail with the server's log if `process` exits first,
    or when `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer in {seconds} s"
        time.sleep(0.1)


def test_a_pypiserver_folder_moves_in(
    pypiserver: tuple[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    url, packages = pypiserver
    # Uploaded through pypiserver itself (flat), and laid out by hand in subfolders (nested).
    uploaded = write_dists(tmp_path / "upload", "alpha-pkg", "1.0") + write_dists(
        tmp_path / "upload", "alpha-pkg", "1.1"
    )
    done = twine_upload_to(f"{url}/", uploaded, env, "anyone", "anything")
    assert done.returncode == 0, done.stdout + done.stderr
    write_dists(packages / "beta" / "nested", "beta-pkg", "2.0")
    # What does not pass an upload's checks: not an archive, a wheel whose METADATA names
    # another project, and a file that is no distribution at all.
    (packages / "broken-1.0.tar.gz").write_bytes(b"not a tar file")
    name, data = build_wheel("gamma-pkg", "1.0", metadata_text=core_metadata_text("delta-pkg"))
    (packages / "beta" / name).write_bytes(data)
    (packages / "notes.txt").write_text("release notes")

    before = pip_install(
        f"{url}/simple/", tmp_path / "from-pypiserver", env, "alpha-pkg", "beta-pkg"
    )
    assert "alpha-pkg-1.1" in before.replace("_", "-")

    server_folder = tmp_path / "keyless"
    status, out = keyless(
        server_folder, "import", "--from-pypiserver", str(packages), "--index", "prod"
    )
    assert status == 1, out  # some files skipped
    assert "6 file(s) added, 0 already there, 3 skipped" in out
    assert "skipped broken-1.0.tar.gz: Invalid distribution file. File is not a tarfile" in out
    assert f"skipped beta/{name}:" in out
    assert "skipped notes.txt: Invalid file extension" in out
    assert "keyless role add PROJECT USER --index prod --role owner" in out

    # Run again: nothing added twice.
    status, out = keyless(
        server_folder, "import", "--from-pypiserver", str(packages), "--index", "prod"
    )
    assert "0 file(s) added, 6 already there, 3 skipped" in out

    live = start_server(server_folder)
    try:
        after = pip_install(
            live.simple_url("prod"), tmp_path / "from-keyless", env, "alpha-pkg", "beta-pkg"
        )
        assert after == before
        status, report = fsck_json(live)
        assert (status, report["files"]) == (0, 6), report
        with live.client() as client:
            page = client.get(
                "/prod/simple/alpha-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
            )
            files = {f["filename"]: f for f in page.json()["files"]}
            assert sorted(files) == sorted(p.name for p in uploaded)
            wheel = next(
                f for f in files.values() if f["filename"].endswith("1.1-py3-none-any.whl")
            )
            assert wheel["core-metadata"]  # PEP 658, as an upload's
    finally:
        stop_server(live)


def test_an_unknown_index_or_folder_is_one_line(tmp_path: Path) -> None:
    status, out = keyless(
        tmp_path / "k", "import", "--from-pypiserver", str(tmp_path / "nowhere"), "--index", "prod"
    )
    assert (status, out.strip()) == (
        2,
        f"error: {tmp_path / 'nowhere'} is not a folder: give pypiserver's packages folder.",
    )
    status, out = keyless(
        tmp_path / "k", "import", "--from-pypiserver", str(tmp_path), "--index", "nope"
    )
    assert status == 2
    assert "no index 'nope': --index one of" in out


def test_the_owner_given_owns_and_an_archived_project_takes_nothing(tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    write_dists(packages, "closed-pkg", "1.0")
    folder = tmp_path / "keyless"
    status, out = keyless(folder, "user", "add", "alice", "--password-stdin", stdin="password-1\n")
    assert status == 0, out
    status, out = keyless(
        folder, "import", "--from-pypiserver", str(packages), "--index", "prod", "--owner", "alice"
    )
    assert status == 0, out
    assert "2 file(s) added" in out
    assert "no owner" not in out
    live = start_server(folder)
    try:
        status, made = keyless(
            folder, "token", "create", "--user", "alice", "--index", "prod", "--json"
        )
        token = json.loads(made.splitlines()[-1])["token"]
        with live.client() as client:
            archived = client.post(
                "/prod/api/projects/closed-pkg/status",
                json={"status": "archived", "reason": "moved"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert archived.status_code == 200, archived.text  # alice owns it
    finally:
        stop_server(live)
    write_dists(packages, "closed-pkg", "1.1")
    status, out = keyless(folder, "import", "--from-pypiserver", str(packages), "--index", "prod")
    assert status == 1, out
    assert "0 file(s) added, 2 already there, 2 skipped" in out
    assert "no owner" not in out  # no project was made
    assert (
        "skipped closed_pkg-1.1.tar.gz: Project 'closed-pkg' is archived and accepts no new "
        "uploads." in out
    )
