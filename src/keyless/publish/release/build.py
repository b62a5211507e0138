"""Stage 3, build: `python -m build` the sdist, then the wheel from it, into a fresh folder; the
files are read and hashed once, here. A dynamic version is checked (stage 2) right after.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from keyless.publish.errors import PublishError
from keyless.publish.localdist import LocalDist, load_dist
from keyless.publish.project import git_output
from keyless.publish.release import version
from keyless.publish.release.commands import clean_environment, run_command
from keyless.publish.release.state import Run


def _source_date_epoch(project_dir: Path, env: dict[str, str]) -> None:
    # Reproducible archives: the same commit builds the same bytes, so a re-run of a
    # release finds its files already on staging instead of clashing with them.
    if env.get("SOURCE_DATE_EPOCH"):
        return
    committed = git_output(["log", "-1", "--format=%ct"], project_dir)
    if committed and committed.isdigit():
        env["SOURCE_DATE_EPOCH"] = committed


def build_dists(
    project_dir: Path,
    out_dir: Path,
    *,
    environ: Mapping[str, str],
    no_isolation: bool = False,
    python: str = sys.executable,
    timeout: float = 900,
) -> list[Path]:
    """`python -m build` the sdist, then the wheel from it, into `out_dir`; the files.

    Raises PublishError when the build fails or makes no sdist or no wheel.
    """
    env = clean_environment(environ)
    _source_date_epoch(project_dir, env)
    command = [python, "-m", "build", "--outdir", str(out_dir)]
    if no_isolation:
        command.append("--no-isolation")
    command.append(str(project_dir))
    run_command(
        command,
        what="the build (python -m build)",
        cwd=project_dir,
        env=env,
        timeout=timeout,
        hint="run `python -m build` in the project to see the whole output"
        + ("; --no-isolation needs the build backend installed" if no_isolation else ""),
    )
    files = sorted(p for p in out_dir.iterdir() if p.name.endswith((".whl", ".tar.gz")))
    if not any(p.name.endswith(".whl") for p in files) or not any(
        p.name.endswith(".tar.gz") for p in files
    ):
        raise PublishError(
            f"the build made {', '.join(p.name for p in files) or 'no files'}; a release needs "
            "an sdist and a wheel.",
            context={"dir": str(out_dir)},
        )
    return files


def build(run: Run) -> None:
    """Build into a fresh folder, read and hash the files once; then the version stage for a
    version pyproject.toml did not name."""
    with run.stage("build", "Building the sdist and the wheel") as out:
        if run.dist_dir is not None:
            out_dir = run.dist_dir
            if out_dir.exists() and any(out_dir.iterdir()):
                raise PublishError(
                    f"{out_dir} is not empty; a release builds into a fresh folder.",
                    hint="remove it, or pass another folder.",
                )
            out_dir.mkdir(parents=True, exist_ok=True)
        else:
            out_dir = Path(tempfile.mkdtemp(prefix="keyless-release-"))
        run.result.dist_dir = out_dir
        run.reporter.info(f"building into {out_dir}")
        paths = build_dists(
            run.project_dir,
            out_dir,
            environ=run.environ,
            no_isolation=run.no_isolation,
            python=run.python,
        )
        # Read and hashed once, here: the check and both uploads reuse these.
        run.result.built = [load_dist(path) for path in paths]
        releases = {dist.release for dist in run.result.built}
        if len(releases) != 1:
            raise PublishError(
                "the build made files of several releases: "
                + ", ".join(d.filename for d in run.result.built)
            )
        first = run.result.built[0]
        _agree(run, first)
        run.result.project, run.result.version = first.name, first.version
        out.detail = ", ".join(d.filename for d in run.result.built)
        for dist in run.result.built:
            run.reporter.info(f"built {dist.filename} (sha256 {dist.sha256})")
    if not run.version_checked:
        with run.stage("version", "Checking the version policy (built version)") as out:
            version.policy(run, first.name, first.version)
            out.detail = f"{first.name} {first.version}"


def _agree(run: Run, dist: LocalDist) -> None:
    config = run.project
    if config.name and canonicalize_name(config.name) != dist.normalized:
        raise PublishError(f"pyproject.toml names {config.name}, but the build made {dist.name}.")
    if config.version and Version(config.version) != Version(dist.version):
        raise PublishError(
            f"pyproject.toml says version {config.version}, but the build made {dist.version}."
        )
