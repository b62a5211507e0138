"""Stage 2, version: the version's scheme, its git tag, and where it stands against production
(new and newer, or a re-run of a release that went out) and staging.
"""

from __future__ import annotations

from packaging.version import Version

from keyless.publish import versioning
from keyless.publish.indexclient import redact
from keyless.publish.project import current_git_tag
from keyless.publish.release.state import Run


def check(run: Run) -> None:
    """Before the build, when pyproject.toml names the version; else `build` checks the built
    one."""
    name, version = run.project.name, run.project.version
    with run.stage("version", "Checking the version policy") as out:
        if name is None or version is None:
            out.detail = "the version is known after the build; checked then"
            run.reporter.info(out.detail)
            return
        policy(run, name, version)
        out.detail = f"{name} {version}"


def policy(run: Run, name: str, version: str) -> None:
    """Raises PublishError when `version` breaks the scheme, the tag or the progression;
    notes a re-run (already on production) in `run.already_released`."""
    versioning.parse_version(version, run.project.version_scheme)
    tag = current_git_tag(run.project_dir)
    versioning.check_tag(tag, version)
    if tag:
        run.reporter.info(f"on tag {tag}: matches {version}")
    production = versioning.fetch_versions(run.http, run.production_simple, name)
    if Version(version) in production:
        run.already_released = True
        run.reporter.info(
            f"{version} is already on production: a re-run succeeds only if the build "
            "makes exactly the files production holds (compared by sha256)"
        )
        run.version_checked = True
        return
    versioning.check_progression(version, production, redact(run.production_simple))
    newest = production.newest
    run.reporter.info(
        f"production has {len(production.all)} version(s) of {name}"
        + (f", newest {newest}" if newest else "")
        + f"; {version} is new"
    )
    staging = versioning.fetch_versions(run.http, run.staging_simple, name)
    if Version(version) in staging:
        run.reporter.info(
            f"{version} is already on staging: identical files count as uploaded, "
            "different bytes under the same names are refused"
        )
    run.version_checked = True
