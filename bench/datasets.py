"""The data every server gets, and how each is seeded with it.

- core (31 files): `bench-small` (10 wheels), `bench-app` and its 20 dependencies
  `bench-dep-01`..`20` — uploaded through each server's upload API;
- filler: `filler-NNNNN` projects with 2 wheels each, written through each server's storage
  (keyless: blobs + rows via its schema; pypiserver: its packages folder; devpi: its documented
  export/import format), because devpi takes ~6 uploads/s through its API on this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from packaging.utils import canonicalize_name

from .dists import Wheel, build_wheel, metadata_text
from .env import log, venv_bin
from .servers import INDEX, USER, Devpi, Keyless, PypiServer

SMALL = "bench-small"
APP = "bench-app"
DEPS = tuple(f"bench-dep-{i:02d}" for i in range(1, 21))


@cache
def core() -> tuple[Wheel, ...]:
    small = [build_wheel(SMALL, f"1.0.{i}") for i in range(10)]
    deps = [build_wheel(name, "1.0") for name in DEPS]
    app = build_wheel(APP, "1.0", requires=DEPS)
    return (*small, *deps, app)


@cache
def filler(files: int) -> tuple[Wheel, ...]:
    """`files` wheels, two versions per project (so 20,000 files = 10,000 projects)."""
    return tuple(build_wheel(f"filler-{i // 2:05d}", f"1.{i % 2}") for i in range(files))


def seed_keyless(server: Keyless, files: int) -> None:
    server.prepare(bulk=filler(files))
    server.start()
    server.upload(core())


def seed_pypiserver(server: PypiServer, files: int) -> None:
    server.prepare(bulk=filler(files))
    server.start()
    server.upload(core())


def seed_devpi(server: Devpi, files: int) -> None:
    server.prepare()
    server.start()
    server.upload(core(), parallel=8)
    if not files:
        return
    # Through devpi's own export/import: export what the API made, add the filler files to the
    # export in devpi's format, import into a fresh server folder.
    server.stop()
    export = server.folder / "export"
    shutil.rmtree(export, ignore_errors=True)
    subprocess.run(
        [
            str(venv_bin("devpi") / "devpi-export"),
            "--serverdir",
            str(server.serverdir),
            str(export),
        ],
        check=True,
        capture_output=True,
    )
    _add_to_export(export, filler(files))
    shutil.rmtree(server.serverdir)
    log(f"devpi-import of {files} files")
    subprocess.run(
        [
            str(venv_bin("devpi") / "devpi-import"),
            "--serverdir",
            str(server.serverdir),
            "--no-root-pypi",
            "--no-events",
            str(export),
        ],
        check=True,
        capture_output=True,
        timeout=3600,
    )
    server.start()


def _add_to_export(export: Path, wheels: tuple[Wheel, ...]) -> None:
    index_path = export / "dataindex.json"
    document = json.loads(index_path.read_text())
    stage = document["indexes"][f"{USER}/{INDEX}"]
    template = next(iter(next(iter(stage["projects"].values())).values()))
    now = datetime.now(UTC)
    stamp = now.strftime("%a, %d %b %Y %H:%M:%S GMT")
    when = [now.year, now.month, now.day, now.hour, now.minute, now.second]
    for wheel in wheels:
        name = canonicalize_name(wheel.name)
        meta = {
            **template,
            "name": wheel.name,
            "version": wheel.version,
            "summary": f"benchmark package {wheel.name}",
            "requires_dist": list(wheel.requires),
        }
        stage["projects"].setdefault(name, {})[wheel.version] = meta
        relpath = f"{USER}/{INDEX}/{name}/{wheel.version}/{wheel.filename}"
        target = export / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(wheel.data)
        stage["files"].append(
            {
                "version": wheel.version,
                "entrymapping": {
                    "last_modified": stamp,
                    "hash_spec": f"sha256={wheel.sha256}",
                    "hashes": {"sha256": wheel.sha256},
                    "project": name,
                    "version": wheel.version,
                },
                "log": [{"what": "upload", "who": USER, "when": when, "dst": f"{USER}/{INDEX}"}],
                "type": "releasefile",
                "projectname": name,
                "relpath": relpath,
            }
        )
    index_path.write_text(json.dumps(document))


_ = metadata_text  # the same metadata keyless' bulk seeding records
