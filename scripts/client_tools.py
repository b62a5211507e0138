"""Install the publishing clients the tests drive (hatch, poetry, pdm, flit), each in a venv
of its own, so that none of them can change or be changed by the dev venv's packages.

    python scripts/client_tools.py [FOLDER]     # default: <this venv>/client-tools

A venv whose stamp file names exactly the pinned requirements is left alone, so a second run
installs nothing. Needs only the PyPI registry (uv, from the dev extra, does the installs).
Prints nothing on success unless it installed something.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Pinned to versions tested with keyless. pdm 2.29 breaks with hishel 2 (it imports
# hishel's 1.x API), and its own metadata does not bound it.
TOOLS: dict[str, tuple[str, ...]] = {
    "hatch": ("hatch==1.18.2",),
    "poetry": ("poetry==2.5.1",),
    "pdm": ("pdm==2.29.4", "hishel<2"),
    "flit": ("flit==4.2.0",),
}

STAMP = "keyless-client-tool.txt"


def default_folder() -> Path:
    """Where the tool venvs live unless told otherwise: beside the dev venv's own files."""
    return Path(os.environ.get("KEYLESS_CLIENT_TOOLS") or Path(sys.prefix) / "client-tools")


def executable(folder: Path, tool: str) -> Path:
    """The command `tool` in its venv under `folder`."""
    return folder / tool / "bin" / tool


def ensure(folder: Path) -> dict[str, Path]:
    """Each tool's command, installing the venvs that are missing or pinned differently."""
    commands = {}
    for tool, requirements in TOOLS.items():
        venv = folder / tool
        stamp = venv / STAMP
        wanted = "\n".join(requirements) + "\n"
        command = executable(folder, tool)
        if not (command.exists() and stamp.exists() and stamp.read_text() == wanted):
            _install(venv, requirements)
            stamp.write_text(wanted)
        commands[tool] = command
    return commands


def _install(venv: Path, requirements: tuple[str, ...]) -> None:
    print(f"installing {' '.join(requirements)} into {venv}", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    # uv ignores user and machine config here, so a developer's own index settings cannot
    # change what the tests drive.
    env = {**os.environ, "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never"}
    uv = [sys.executable, "-m", "uv"]
    subprocess.run(
        [*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env
    )
    subprocess.run(
        [*uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *requirements],
        check=True,
        env=env,
    )


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else default_folder()
    ensure(folder.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
