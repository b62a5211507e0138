"""What the harness needs, installed by the harness itself.

- Debian's `wrk` (the load generator), `nginx` (the ceiling: static files) and `hyperfine`,
  through apt-get when missing and we are root (as scripts/ensure-chromium.sh does);
- pypiserver and devpi-server, each in its own virtual environment under bench/.venvs/, pinned
  so that two runs of the harness compare the same peers;
- py-spy and pyinstrument (profiling) in bench/.venvs/tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"
KEYLESS_PYTHON = ROOT / ".venv" / "bin" / "python"

# Pinned: the peers' versions appear in the results table.
PEERS = {
    "pypiserver": ["pypiserver==2.4.2", "waitress==3.0.2"],
    "devpi": ["devpi-server==6.20.3"],
    "tools": ["py-spy==0.4.3", "pyinstrument"],
    # Scenario 13: S3 clients compared for keyless' streamed uploads (bench/s3_clients.py).
    "s3-clients": ["boto3==1.40.61", "obstore==0.12.1", "aioboto3==15.5.0"],
}
DEBIAN = {"wrk": "wrk", "nginx": "nginx", "hyperfine": "hyperfine"}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def venv_bin(name: str) -> Path:
    return VENVS / name / "bin"


def ensure_debian_tools() -> None:
    missing = [pkg for command, pkg in DEBIAN.items() if not _which(command)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(
            f"bench needs {', '.join(missing)}: install them (e.g. 'sudo apt-get install "
            f"{' '.join(missing)}') and run again"
        )
    log(f"installing Debian's {', '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    # Debian starts nginx as a system service on install; the harness runs its own instance.
    if "nginx" in missing:
        subprocess.run(["service", "nginx", "stop"], check=False, capture_output=True)


def _which(command: str) -> str | None:
    found = shutil.which(command)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin"):
        candidate = Path(folder) / command
        if candidate.exists():
            return str(candidate)
    return None


def nginx_binary() -> str:
    found = _which("nginx")
    if not found:
        raise SystemExit("nginx is missing: run `python -m bench setup`")
    return found


def ensure_venv(name: str) -> Path:
    """bench/.venvs/<name> with PEERS[name] installed; returns its bin folder."""
    folder = VENVS / name
    stamp = folder / ".installed"
    wanted = "\n".join(PEERS[name])
    if stamp.exists() and stamp.read_text() == wanted:
        return folder / "bin"
    log(f"installing {' '.join(PEERS[name])} into {folder}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    subprocess.run(
        [
            str(folder / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *PEERS[name],
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return folder / "bin"


def ensure_keyless() -> Path:
    if not KEYLESS_PYTHON.exists():
        log("creating keyless' own .venv (make's recipe)")
        subprocess.run(["make", "-C", str(ROOT), ".venv/.installed"], check=True)
    return KEYLESS_PYTHON


def setup() -> None:
    ensure_keyless()
    ensure_debian_tools()
    for name in PEERS:
        ensure_venv(name)


def versions() -> dict[str, str]:
    """What was measured, for the report."""

    def run(*command: str) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (
            (out.stdout or out.stderr).strip().splitlines()[0]
            if (out.stdout or out.stderr)
            else "?"
        )

    def pip_version(venv: str, package: str) -> str:
        python = venv_bin(venv) / "python" if venv else KEYLESS_PYTHON
        return run(
            str(python), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"
        )

    return {
        "keyless": pip_version("", "keyless"),
        "uvicorn": pip_version("", "uvicorn"),
        "starlette": pip_version("", "starlette"),
        "pypiserver": pip_version("pypiserver", "pypiserver"),
        "devpi-server": pip_version("devpi", "devpi-server"),
        "nginx": run(_which("nginx") or "nginx", "-v"),  # "?" when a partial run needs none
        "wrk": run("wrk", "-v"),
        "python": run(str(KEYLESS_PYTHON), "--version"),
        "pip": pip_version("", "pip"),
        "uv": run(str(KEYLESS_PYTHON.parent / "uv"), "--version"),
        "twine": pip_version("", "twine"),
    }
