"""The project being released, as its folder tells: pyproject.toml and git.

Shared by check, doctor, init and release so they read the same things the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from keyless.publish.errors import PublishError

GIT_TIMEOUT = 30


@dataclass(frozen=True)
class ProjectInfo:
    """What pyproject.toml says about the project: its [project] table and [tool.keyless]."""

    folder: Path
    name: str | None  # None: not in [project] (e.g. only setup.py); known after the build
    version: str | None  # None: dynamic (set by the build backend); known after the build
    requires_python: str | None
    version_scheme: str  # [tool.keyless] version-scheme
    notify: Mapping[str, Any]  # [tool.keyless.notify]
    problems: tuple[str, ...] = ()  # malformed settings, each a message naming the file


def read_project(project_dir: str | Path) -> ProjectInfo | None:
    """What ``project_dir/pyproject.toml`` says; None when there is no such file.

    Raises PublishError when the file cannot be read or is not valid TOML. A malformed
    [project] or `[tool.keyless]` does not raise: it is in `problems` (and the defaults are
    used), because only the release depends on it; doctor and init read what they can.
    """
    from keyless.publish.versioning import SCHEMES  # it imports this module

    folder = Path(project_dir)
    path = folder / "pyproject.toml"
    document = load_pyproject(folder)
    if document is None:
        return None
    problems: list[str] = []
    project = document.get("project", {})
    if not isinstance(project, dict):
        problems.append(f"{path}: [project] must be a table.")
        project = {}
    tools = document.get("tool", {})
    tool = tools.get("keyless", {}) if isinstance(tools, dict) else None
    if not isinstance(tool, dict):
        problems.append(f"{path}: [tool.keyless] must be a table.")
        tool = {}
    scheme = tool.get("version-scheme", "pep440")
    if scheme not in SCHEMES:
        problems.append(
            f"{path}: [tool.keyless] version-scheme must be one of "
            f"{', '.join(SCHEMES)}, not {scheme!r}."
        )
        scheme = "pep440"
    notify_table = tool.get("notify", {})
    if not isinstance(notify_table, dict):
        problems.append(f"{path}: [tool.keyless.notify] must be a table.")
        notify_table = {}
    name = project.get("name")
    dynamic = project.get("dynamic") or []
    version = project.get("version")
    requires = project.get("requires-python")
    return ProjectInfo(
        folder=folder,
        name=name if isinstance(name, str) and name else None,
        version=version if isinstance(version, str) and "version" not in dynamic else None,
        requires_python=requires if isinstance(requires, str) else None,
        version_scheme=str(scheme),
        notify=notify_table,
        problems=tuple(problems),
    )


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
