"""A full disk: uploads answered 507 with the cause, nothing left behind, reads go on.

The server's data folder is a small tmpfs that the test fills. Mounting needs root (CI runs
as root); otherwise the server runs in a user and mount namespace of its own (`unshare -rm`),
where it may mount, and the test reaches its files through /proc/<pid>/root.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from tests.builders import build_wheel, write_dist
from tests.conftest import LiveServer, client_env, start_server, stop_server

from .uploading import upload

# A full disk under the SQLite file and the blob folder.
pytestmark = pytest.mark.local_only

MIB = 1024 * 1024
DISK_SIZE = 8 * MIB
PAGE = 4096  # tmpfs allocates whole pages
STORAGE_FULL = "The server's storage is full"


def mount_tmpfs(point: Path, size: int = DISK_SIZE) -> str | None:
    """Mount a tmpfs of `size` bytes at `point`; None when done, else why not."""
    if shutil.which("mount") is None:
        return "no mount command"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else done.stderr.strip() or "mount failed"


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare command"
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else done.stderr.strip() or "unshare failed"


@dataclass
class SmallDisk:
    """A server whose data folder is an 8 MiB tmpfs.

    `server.data_dir` is the folder as this process reaches it; `enter` runs a command where
    the server runs (its mount namespace, if it has its own), and `database` is the database's
    path there (SQLite resolves /proc/<pid>/root, so it must be opened from inside).
    """

    server: LiveServer
    enter: tuple[str, ...]
    database: Path | str  # as LiveServer.database: the SQLite file here (local_only)


@pytest.fixture(scope="module")
def disk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallDisk]:
    folder = tmp_path_factory.mktemp("full-disk")
    data = folder / "data"
    data.mkdir()
    why_not = mount_tmpfs(data)
    if why_not is None:
        try:
            live = start_server(folder)
            try:
                yield SmallDisk(live, (), live.database)
            finally:
                stop_server(live)
        finally:
            subprocess.run(["umount", str(data)], check=True)
        return
    why_not_unshared = _unshare_works()
    if why_not_unshared is not None:
        pytest.skip(f"cannot mount a small disk: {why_not}; nor in a namespace: {why_not_unshared}")
    mount_then_exec = f'mount -t tmpfs -o size={DISK_SIZE} tmpfs "$0" && exec "$@"'
    live = start_server(folder, prefix=("unshare", "-rm", "sh", "-c", mount_then_exec, str(data)))
    pid = live.process.pid  # unshare and sh exec the server: the same process
    try:
        yield SmallDisk(
            replace(live, data_dir=Path(f"/proc/{pid}/root") / data.relative_to("/")),
            ("nsenter", "-t", str(pid), "-U", "-m", "--preserve-credentials"),
            live.database,
        )
    finally:
        stop_server(live)  # the mount goes with the namespace


@pytest.fixture(scope="module")
def small(disk_server: SmallDisk) -> LiveServer:
    return disk_server.server


class Filler:
    """Takes up a tmpfs' space, all of it but a chosen amount."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "filler"

    def free(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def leave(self, free: int) -> int:
        """Fill the disk, then give back about `free` bytes; returns the free bytes."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        written = 0
        try:
            for size in (MIB, PAGE):
                block = b"\xff" * size
                while True:
                    try:
                        count = os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    written += count
                    if count < size:
                        break
            os.ftruncate(fd, max(0, written - free))
        finally:
            os.close(fd)
        return self.free()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def disk(small: LiveServer) -> Iterator[Filler]:
    filler = Filler(small.data_dir)
    yield filler
    filler.remove()


TOKEN_FOR_NEW_USER = """
import sys
from keyless.index.accounts import Accounts
from keyless.store.db import open_database
engine = open_database(sys.argv[1])
Accounts(engine).create_user(sys.argv[2], "correct horse battery")
print(Accounts(engine).create_token(sys.argv[2], "prod").token)
"""


def owner_token(disk: SmallDisk, name: str) -> str:
    """A new user's token for `prod`, made by a process that sees the server's files."""
    made = subprocess.run(
        [*disk.enter, sys.executable, "-c", TOKEN_FOR_NEW_USER, str(disk.database), name],
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


def wheel_of_size(name: str, version: str, size: int) -> tuple[str, bytes]:
    """A wheel of about `size` bytes (random, incompressible contents)."""
    pad = size - 1500
    for _ in range(5):
        filename, data = build_wheel(
            name, version, extra_files={f"{name.replace('-', '_')}/pad.bin": os.urandom(pad)}
        )
        if abs(len(data) - size) < 1000:
            return filename, data
        pad += size - len(data)
    raise AssertionError(f"could not build a wheel of {size} bytes")


def blob_files(server: LiveServer) -> list[Path]:
    return [p for p in (server.data_dir / "blobs" / "sha256").rglob("*") if p.is_file()]


def temp_files(server: LiveServer) -> list[Path]:
    return list((server.data_dir / "blobs" / "tmp").iterdir())


@pytest.fixture(scope="module")
def readable(disk_server: SmallDisk) -> tuple[str, str]:
    """A project already there before the disk fills: (its simple page, its file's URL)."""
    token = owner_token(disk_server, "reader-owner")
    with disk_server.server.client() as http:
        assert upload(http, "prod", token, *build_wheel("still-here", "1.0")).status_code == 200
        page = http.get(
            "/prod/simple/still-here/", headers={"accept": "application/vnd.pypi.simple.v1+json"}
        ).json()
    return "/prod/simple/still-here/", page["files"][0]["url"]


def assert_reads_work(http: httpx.Client, readable: tuple[str, str]) -> None:
    page, file_url = readable
    assert http.get("/_/health").status_code == 200
    assert http.get(page).status_code == 200
    assert http.get(file_url).status_code == 200


def assert_not_stored(http: httpx.Client, server: LiveServer, project: str) -> None:
    assert http.get(f"/prod/simple/{project}/").status_code == 404
    assert temp_files(server) == []


def test_a_file_bigger_than_the_free_space_is_a_507(
    disk_server: SmallDisk, small: LiveServer, disk: Filler, readable: tuple[str, str]
) -> None:
    token = owner_token(disk_server, "big-owner")
    filename, data = wheel_of_size("too-big", "1.0", 3 * MIB)
    blobs_before = blob_files(small)
    disk.leave(MIB)
    with small.client() as http:
        answer = upload(http, "prod", token, filename, data)
        assert answer.status_code == 507, answer.text
        assert STORAGE_FULL in answer.text
        assert STORAGE_FULL in answer.reason_phrase  # what twine shows without --verbose
        assert_not_stored(http, small, "too-big")
        assert blob_files(small) == blobs_before
        assert_reads_work(http, readable)
        disk.remove()  # space again: the same upload goes through
        assert upload(http, "prod", token, filename, data).status_code == 200
        assert_reads_work(http, readable)
    assert "Traceback" not in small.log()


def test_a_database_that_cannot_grow_is_a_507_and_the_blob_goes(
    disk_server: SmallDisk, small: LiveServer, disk: Filler, readable: tuple[str, str]
) -> None:
    token = owner_token(disk_server, "db-owner")
    blobs_before = blob_files(small)
    free = disk.leave(2 * MIB)
    # The blob takes all the free pages but one: the database's log cannot grow by the
    # several pages the upload's transaction writes.
    filename, data = wheel_of_size("no-row", "1.0", free - PAGE - PAGE // 2)
    with small.client() as http:
        answer = upload(http, "prod", token, filename, data)
        assert answer.status_code == 507, answer.text
        assert STORAGE_FULL in answer.text
        assert_not_stored(http, small, "no-row")
        assert blob_files(small) == blobs_before  # the blob placed for it was removed
        assert_reads_work(http, readable)
        disk.remove()
        assert upload(http, "prod", token, filename, data).status_code == 200
    log = small.log()
    assert "Traceback" not in log
    assert re.search(r"POST /prod/legacy/ refused, the disk is full: .*full", log), log[-2000:]


def test_uv_publish_shows_the_message_and_sends_the_file_once(
    disk_server: SmallDisk, small: LiveServer, disk: Filler, tmp_path: Path
) -> None:
    token = owner_token(disk_server, "uv-owner")
    filename, data = wheel_of_size("uv-full", "1.0", 3 * MIB)
    path = write_dist(tmp_path, filename, data)
    disk.leave(MIB)
    log_start = len(small.log())
    published = subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "publish",
            "--publish-url",
            small.upload_url("prod"),
            "--token",
            token,
            str(path),
        ],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert published.returncode != 0
    assert "507 Insufficient Storage" in published.stderr, published.stderr
    assert STORAGE_FULL in published.stderr
    assert small.log()[log_start:].count('"POST /prod/legacy/') == 1


def test_any_other_write_on_a_full_disk_is_a_507_too(
    disk_server: SmallDisk, small: LiveServer, disk: Filler, readable: tuple[str, str]
) -> None:
    token = owner_token(disk_server, "yank-owner")
    headers = {"authorization": f"Bearer {token}", "accept": "application/json"}
    yank = "/prod/api/projects/yank-full/releases/1.0/yank"
    with small.client() as http:
        assert upload(http, "prod", token, *build_wheel("yank-full", "1.0")).status_code == 200
        disk.leave(0)
        answer = http.post(yank, json={"reason": "broken"}, headers=headers)
        assert answer.status_code == 507, answer.text
        assert STORAGE_FULL in answer.json()["message"]
        assert_reads_work(http, readable)
        # Healthy (reads are served), and saying that uploads are not.
        checks = http.get("/_/health").json()["checks"]
        assert checks["blob store"].startswith("full: uploads are refused (507)"), checks
        disk.remove()
        assert http.post(yank, json={"reason": "broken"}, headers=headers).status_code == 200
    assert "Traceback" not in small.log()
