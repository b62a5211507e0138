"""scripts/ensure-s3rver.sh, which `make test` runs: Debian's Node.js and npm are installed when
missing (as root, through apt-get), then s3rver as the lock file pins it, from npm's registry,
unless what is installed is newer than the lock file.

apt-get, node and npm are stand-ins on a PATH that holds nothing else (but the few commands
the script and the stand-ins run), recording their arguments: the test neither needs the
network nor changes the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-s3rver.sh"

RECORD = """#!/bin/sh
echo "{name} $@" >> "{log}"
"""
# Debian's packages put node and npm on the PATH: the stand-in lays out recording ones.
FAKE_APT_GET = """#!/bin/sh
echo "apt-get $@" >> "{log}"
if [ "$1" = "install" ]; then
  for tool in node npm; do
    printf '#!/bin/sh\\necho "%s $@" >> "{log}"\\n' "$tool" > "{bin}/$tool"
    chmod 755 "{bin}/$tool"
  done
fi
"""


def tool(bin_dir: Path, name: str, text: str) -> None:
    (bin_dir / name).write_text(text, encoding="utf-8")
    (bin_dir / name).chmod(0o755)


def run_script(
    tmp_path: Path, folder: Path, tools: tuple[str, ...]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the script with `tools` (of node, npm) already there; what it ran, in order."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    tool(bin_dir, "apt-get", FAKE_APT_GET.format(log=log, bin=bin_dir))
    for name in tools:
        tool(bin_dir, name, RECORD.format(name=name, log=log))
    for needed in ("dirname", "id", "chmod"):  # what runs besides the shells' builtins
        found = shutil.which(needed)
        assert found is not None
        (bin_dir / needed).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir), "KEYLESS_S3RVER_DIR": str(folder)}
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return done, calls


def lock_folder(tmp_path: Path, installed: bool) -> Path:
    """A folder with a lock file, and an install newer than it when `installed`."""
    folder = tmp_path / "s3rver"
    folder.mkdir()
    (folder / "package-lock.json").write_text("{}", encoding="utf-8")
    os.utime(folder / "package-lock.json", (1_000_000_000, 1_000_000_000))
    if installed:
        (folder / "node_modules").mkdir()
        (folder / "node_modules" / ".package-lock.json").write_text("{}", encoding="utf-8")
    return folder


NPM_CI = "npm ci --prefix {folder} --registry=https://registry.npmjs.org/ --no-audit --no-fund"


@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs only as root (as CI runs)")
def test_missing_node_and_npm_come_from_debian_then_s3rver_from_npm(tmp_path: Path) -> None:
    folder = lock_folder(tmp_path, installed=False)
    done, calls = run_script(tmp_path, folder, tools=())
    assert done.returncode == 0, done.stderr
    installs = [call.split() for call in calls if call.startswith("apt-get install")]
    assert len(installs) == 1
    assert {"-y", "nodejs", "npm"} <= set(installs[0])
    assert calls[-1].startswith(NPM_CI.format(folder=folder)), calls


def test_an_install_older_than_the_lock_file_is_redone_from_npm(tmp_path: Path) -> None:
    folder = lock_folder(tmp_path, installed=False)
    done, calls = run_script(tmp_path, folder, tools=("node", "npm"))
    assert done.returncode == 0, done.stderr
    assert [call for call in calls if not call.startswith("npm ci")] == []
    (call,) = calls
    assert call.startswith(NPM_CI.format(folder=folder)), call


def test_an_install_newer_than_the_lock_file_is_left_alone(tmp_path: Path) -> None:
    folder = lock_folder(tmp_path, installed=True)
    done, calls = run_script(tmp_path, folder, tools=("node", "npm"))
    assert done.returncode == 0, done.stderr
    assert calls == []
