"""Stage 1, project: read pyproject.toml (name, version, `[tool.keyless]`), and where to
notify, even when the reading fails.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

from keyless.publish import notify
from keyless.publish.errors import PublishError
from keyless.publish.project import ProjectInfo, read_project
from keyless.publish.release.state import Run


def _read_project(project_dir: Path) -> ProjectInfo:
    project = read_project(project_dir)
    path = project_dir / "pyproject.toml"
    if project is None:
        raise PublishError(
            f"{path} does not exist.",
            hint="run keyless release in the project's folder (or pass --project-dir).",
            context={"file": str(path)},
        )
    if project.problems:  # the release depends on every setting: refuse a malformed one
        raise PublishError(project.problems[0], context={"file": str(path)})
    return project


def read(run: Run, notify_config: notify.NotifyConfig | None) -> notify.NotifyConfig:
    """The project stage; returns the notification settings (given, or configured)."""
    with run.stage("project", f"Reading {run.project_dir / 'pyproject.toml'}") as out:
        run.notify_config = notify_config
        try:
            run.config = _read_project(run.project_dir)
            if run.notify_config is None:
                run.notify_config = notify.load_notify_config(run.config.notify, run.environ)
        except PublishError:
            # The failure is still worth notifying wherever the environment says.
            if run.notify_config is None:
                with suppress(PublishError):
                    run.notify_config = notify.load_notify_config(None, run.environ)
            raise
        run.result.project = run.config.name
        run.result.version = run.config.version
        out.detail = f"{run.config.name or '?'} {run.config.version or '(dynamic)'}"
    return run.notify_config or notify.NotifyConfig()
