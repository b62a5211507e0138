"""The project being released, as its folder tells: pyproject.toml and git.

Shared by check, doctor, init and release so they read the same things the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from keyless.publish.errors import PublishError

GIT_TIMEOUT = 30


def load_pyproject(project_dir: str | Path) -> dict[str, Any] | None:
    """The parsed pyproject.toml of `project_dir`, or None when there is none.

    Raises PublishError when the file exists but cannot be read or is not valid TOML.
    """
    path = Path(project_dir) / "pyproject.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"cannot read {path}: {exc}", context={"file": str(path)}) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PublishError(
            f"{path} is not valid TOML: {exc}",
            hint="fix the file; `python -m build` would fail on it too.",
            context={"file": str(path)},
        ) from exc


def git_output(args: list[str], cwd: str | Path | None = None) -> str | None:
    """`git ARGS` in `cwd`: its stripped output, or None when git, the checkout or the answer
    is missing. Never raises: releasing from a folder without git is allowed."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    output = done.stdout.strip()
    return output if done.returncode == 0 and output else None


def current_git_tag(cwd: str | Path | None = None) -> str | None:
    """The tag HEAD sits exactly on, or None (no tag, no checkout, no git). Never raises."""
    return git_output(["describe", "--exact-match", "--tags", "HEAD"], cwd)


def version_of_tag(tag: str) -> Version | None:
    """The version a release tag names: ``v1.2.0``, ``V1.2.0`` and ``1.2.0`` all name 1.2.0.

    None when the tag is not a version. Never raises.
    """
    text = tag.strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    try:
        return Version(text)
    except InvalidVersion:
        return None
