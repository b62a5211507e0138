"""`keyless fsck` on a live server's data folder, with real damage done to its blob store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer, start_server, stop_server

from .uploading import upload

# Damage done to the folder's blobs by path; fsck on a bucket: tests/store/test_s3_app.py.
pytestmark = pytest.mark.local_only


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "server")
    yield server
    stop_server(server)


def fsck(server: LiveServer, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "keyless", "fsck", *args),
            *("--data", str(server.data_dir)),
            *("--config", str(server.data_dir.parent / "keyless.toml")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


def fsck_json(server: LiveServer, *args: str) -> tuple[int, dict[str, Any]]:
    status, out = fsck(server, "--json", *args)
    return status, json.loads(out)


def blob(server: LiveServer, sha256: str) -> Path:
    return server.data_dir / "blobs" / "sha256" / sha256[:2] / sha256[2:4] / sha256


def by_kind(report: dict[str, Any]) -> dict[str, list[tuple[str, bool, list[str]]]]:
    kinds: dict[str, list[tuple[str, bool, list[str]]]] = {}
    for problem in report["problems"]:
        names = [ref["filename"] for ref in problem["files"]]
        kinds.setdefault(problem["kind"], []).append(
            (problem["sha256"], problem["repaired"], names)
        )
    return kinds


def test_fsck_finds_each_kind_of_damage_and_repairs_what_is_safe(live: LiveServer) -> None:
    token = live.token("fsck-owner", "prod")
    dists = {
        "missing": build_wheel("fsck-demo", "1.0"),
        "truncated": build_wheel("fsck-demo", "1.1"),
        "flipped": build_wheel("fsck-demo", "1.2"),
        "intact": build_sdist("fsck-demo", "1.2"),
    }
    digest = {key: hashlib.sha256(data).hexdigest() for key, (_, data) in dists.items()}
    with live.client() as client:
        for filename, data in dists.values():
            assert upload(client, "prod", token, filename, data).status_code == 200

    status, report = fsck_json(live)
    assert (status, report["clean"], report["problems"]) == (0, True, [])
    assert (report["files"], report["blobs"]) == (4, 4)

    blob(live, digest["missing"]).unlink()
    truncated = blob(live, digest["truncated"])
    truncated.write_bytes(truncated.read_bytes()[:-10])
    flipped = blob(live, digest["flipped"])
    damaged = bytearray(flipped.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    flipped.write_bytes(bytes(damaged))
    orphan_bytes = os.urandom(100)
    orphan = hashlib.sha256(orphan_bytes).hexdigest()
    blob(live, orphan).parent.mkdir(parents=True, exist_ok=True)
    blob(live, orphan).write_bytes(orphan_bytes)
    # Not where the store would keep a blob of its name: listed, but not removable by name.
    stray = blob(live, orphan).parent / "stray"
    stray.write_bytes(b"left by hand")

    status, report = fsck_json(live)
    assert status == 1
    assert report["clean"] is False
    assert by_kind(report) == {
        "missing": [(digest["missing"], False, [dists["missing"][0]])],
        "size-mismatch": [(digest["truncated"], False, [dists["truncated"][0]])],
        "sha256-mismatch": [(digest["flipped"], False, [dists["flipped"][0]])],
        "orphan": [(orphan, False, []), ("stray", False, [])],
    }
    assert blob(live, orphan).exists()  # nothing is touched without --repair

    # Why --repair removes a damaged blob: a re-upload trusts a blob of the right length.
    with live.client() as client:
        assert upload(client, "prod", token, *dists["flipped"]).status_code == 200
    assert by_kind(fsck_json(live)[1])["sha256-mismatch"][0][0] == digest["flipped"]

    status, report = fsck_json(live, "--repair")
    assert status == 1  # the files whose blobs are gone must be uploaded again
    assert by_kind(report) == {
        "missing": [(digest["missing"], False, [dists["missing"][0]])],
        "size-mismatch": [(digest["truncated"], True, [dists["truncated"][0]])],
        "sha256-mismatch": [(digest["flipped"], True, [dists["flipped"][0]])],
        "orphan": [(orphan, True, []), ("stray", False, [])],
    }
    assert not blob(live, orphan).exists()
    assert stray.exists()
    assert not flipped.exists()
    assert not truncated.exists()
    actions = {p["sha256"]: p["action"] for p in report["problems"]}
    assert actions[orphan] == ""
    assert actions["stray"].startswith("not removed: it is not where the store keeps that name")
    assert actions[digest["truncated"]].startswith("the damaged blob was removed; upload")
    stray.unlink()
    assert actions[digest["missing"]].startswith("upload the identical file again")

    status, text = fsck(live)
    assert status == 1
    assert "missing: " in text
    assert "prod/fsck-demo 1.0: fsck_demo-1.0-py3-none-any.whl" in text
    assert "to do: upload the identical file again" in text
    assert text.endswith("3 problem(s)\n")

    # Uploading the identical bytes again puts every blob back.
    with live.client() as client:
        for key in ("missing", "truncated", "flipped"):
            assert upload(client, "prod", token, *dists[key]).status_code == 200
        for key, (filename, data) in dists.items():
            served = client.get(f"/files/{digest[key]}/{filename}")
            assert served.status_code == 200, key
            assert served.content == data, key
    status, report = fsck_json(live)
    assert (status, report["problems"], report["blobs"]) == (0, [], 4)
    status, text = fsck(live)
    assert (status, text) == (0, "checked 4 file(s) and 4 blob(s): no problems\n")


def test_fsck_refuses_a_folder_without_a_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "keyless", "fsck", "--data", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: no keyless database at ")
    assert not (tmp_path / "nothing" / "keyless.db").exists()
