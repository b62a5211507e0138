"""scripts/ensure-postgresql.sh, which `make test` runs: Debian's PostgreSQL is installed when its
server binaries are missing (as root, through apt-get), and left alone when they are there.

apt-get is replaced by a stand-in on PATH that records its arguments and lays out the binaries
the way Debian's package does, so the test neither needs the network nor changes the machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-postgresql.sh"

FAKE_APT_GET = """#!/bin/sh
echo "$@" >> "{log}"
if [ "$1" = "install" ]; then
  mkdir -p "{root}/15/bin" && touch "{root}/15/bin/postgres" "{root}/15/bin/initdb"
fi
"""


def run_script(tmp_path: Path, root: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt-get.log"
    apt_get = bin_dir / "apt-get"
    apt_get.write_text(FAKE_APT_GET.format(log=log, root=root), encoding="utf-8")
    apt_get.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KEYLESS_PG_ROOT": str(root),
        "KEYLESS_PG_USER": "nobody",  # exists everywhere: no user is created by the test
    }
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return done, calls


@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs only as root (as CI runs)")
def test_missing_server_binaries_are_installed_from_debian(tmp_path: Path) -> None:
    root = tmp_path / "postgresql"
    done, calls = run_script(tmp_path, root)
    assert done.returncode == 0, done.stderr
    assert any(call.split()[:1] == ["install"] and "postgresql" in call.split() for call in calls)
    assert any("-y" in call.split() for call in calls if call.startswith("install"))
    assert (root / "15" / "bin" / "postgres").exists()


def test_present_binaries_are_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "postgresql"
    (root / "15" / "bin").mkdir(parents=True)
    for name in ("postgres", "initdb"):
        (root / "15" / "bin" / name).touch()
    done, calls = run_script(tmp_path, root)
    assert done.returncode == 0, done.stderr
    assert calls == []


def test_the_psycopg_driver_is_installed() -> None:
    # `postgresql+psycopg://` URLs need it; it comes with the server extra (pyproject.toml).
    import psycopg

    assert int(psycopg.__version__.split(".")[0]) == 3
