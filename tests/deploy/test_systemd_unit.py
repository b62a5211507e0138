"""deploy/systemd/keyless.service, as docs/deploy.md tells an operator to install it.

systemd itself checks the file (`systemd-analyze verify`: every directive known and its value
valid, the program there), and its ExecStart command line, run as written but for the paths
and port, starts a keyless server with two workers that answers.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "keyless.service"
INSTALLED = "/opt/keyless/venv/bin/keyless"


def keyless_program() -> str:
    program = Path(sys.executable).parent / "keyless"
    assert program.exists(), f"{program}: the venv's keyless command"
    return str(program)


def exec_start() -> list[str]:
    lines = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1
    return shlex.split(lines[0].removeprefix("ExecStart="))


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (make test installs Debian's systemd)"
    unit = tmp_path / "keyless.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, keyless_program()))
    checked = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    # Unknown directives and bad values are only warned about, with exit status 0.
    assert checked.stderr == ""
    assert checked.stdout == ""


def test_its_command_line_starts_a_server_with_two_workers(tmp_path: Path) -> None:
    command = exec_start()
    assert command[0] == INSTALLED
    config = tmp_path / "keyless.toml"
    config.write_text('[indexes.prod]\nprofile = "pypi"\n')
    port = free_port()
    replaced = {
        INSTALLED: keyless_program(),
        "/etc/keyless/keyless.toml": str(config),
        "/var/lib/keyless": str(tmp_path / "data"),
        "8001": str(port),
    }
    command = [replaced.get(part, part) for part in command]
    assert command[command.index("--workers") + 1] == "2"
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not answer in 60 s"
                time.sleep(0.2)
        assert health.status_code == 200
        assert health.json()["indexes"] == ["prod"]
    finally:
        process.terminate()
        process.wait(timeout=30)
