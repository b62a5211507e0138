"""`release()`: the staged release pipeline in one call.

    result = release(Path("."), staging_url="https://idx/test/legacy/",
                     production_url="https://idx/prod/legacy/", reporter=reporter)

Stages, in order (`_pipeline` below runs them; one module of this package each); the first that
fails ends the release, and production is touched only after staging passed:

1. project    read pyproject.toml: name, version, `[tool.keyless]` (version-scheme, notify);
2. version    PEP 440 (SemVer-shaped with `version-scheme = "semver"`); on a git tag, the tag
              is the version; not on production yet and newer than its newest live release
              (a dynamic version is checked right after the build, before any upload);
3. build      `python -m build` (sdist, then the wheel from the sdist) into a fresh folder;
4. check      `keyless check` rules on the built files, with the production index's policy;
5. staging    when the production index offers PEP 694 upload sessions: upload the files
              into a session there, unpublished (staging is the real destination, not a copy
              on another index); else publish the files to the staging index;
6. install-test  a fresh virtual environment installs `name==version` from the session's stage
              preview, or the staging index,
              ONLY (`--index-url`, no extra index: what the release needs must be installable
              from staging, so its dependencies must be there too — that is what the test
              proves), imports every top-level module of the wheel, checks the installed
              version, and runs the optional smoke command;
7. production with a session: publish it (every file visible at once); a release that fails
              at any stage before cancels the session instead, so nothing of it is visible.
              Else `promote`: the staging index's keyless server puts the very same files (same
              sha256, no bytes copied) on the production index; when the two are not indexes
              of one keyless server, the same files are published there instead (said so);
              `publish`: the same files are published to production;
8. notes      the release's section of the changelog (see `keyless.publish.changelog`);
9. notify     webhook / Slack / email, on success and on failure (see `keyless.publish.notify`).

Credentials come from `keyless.publish.credentials` for each index separately, so Trusted
Publishing mints a token per index; for API tokens, KEYLESS_STAGING_TOKEN and
KEYLESS_PRODUCTION_TOKEN (a user's token is scoped to one index) take precedence over
KEYLESS_TOKEN for their stage. Promotion uses the production credentials.

The build, the install and the smoke command run without the release's credentials in their
environment (tokens, the CI's OIDC request variables, SMTP password): the code being released
never sees them.

Where each piece lives: `state.py` holds one release's state (`Run`, shared by the stages) and
its result (`ReleaseResult`); `commands.py` runs the build's, install's and smoke test's
commands; then one module per stage, named after it: `project`, `version`, `build`, `check`,
`staging`, `install` (install-test), `production`, `notes`, `notify`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from keyless.publish.errors import PublishError
from keyless.publish.indexclient import check_upload_url, new_http_client, simple_url_for
from keyless.publish.notify import NotifyConfig
from keyless.publish.release import (
    build,
    check,
    install,
    notes,
    notify,
    production,
    project,
    staging,
    version,
)
from keyless.publish.release.build import build_dists
from keyless.publish.release.commands import clean_environment
from keyless.publish.release.install import install_test, top_level_modules
from keyless.publish.release.state import (
    MODES,
    STAGES,
    ReleaseResult,
    Run,
    StageFailed,
    StageOutcome,
)
from keyless.publish.reporter import Reporter

__all__ = [
    "MODES",
    "STAGES",
    "ReleaseResult",
    "StageOutcome",
    "build_dists",
    "clean_environment",
    "install_test",
    "release",
    "top_level_modules",
]


def release(
    project_dir: Path,
    *,
    staging_url: str,
    production_url: str,
    mode: str = "promote",
    reporter: Reporter,
    http: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
    smoke: str | None = None,
    notify_config: NotifyConfig | None = None,
    trusted_publishing: str = "auto",
    dry_run: bool = False,
    no_isolation: bool = False,
    dist_dir: Path | None = None,
    python: str = sys.executable,
    session: bool = True,
) -> ReleaseResult:
    """Run the staged release of the project in `project_dir` (see the module docstring).

    `staging_url`/`production_url` are upload URLs (…/legacy/). `mode`: "promote" or
    "publish" (for a production index without upload sessions). `session`: False never uses
    PEP 694 sessions (staging index, then `mode`). `notify_config`: None reads
    `[tool.keyless.notify]` and the environment.
    `environ` (default os.environ) is where credentials, CA settings and notification
    settings come from. Stage failures do not raise: they are in the result (`ok`,
    `failed_stage`, `error`) and were reported through `reporter.error`.

    Raises PublishError only for arguments that cannot start a release: an unknown mode, an
    upload URL that is not one, or the same URL for staging and production.
    """
    if mode not in MODES:
        raise PublishError(f"unknown release mode {mode!r}.", hint="use promote or publish.")
    env = os.environ if environ is None else environ
    staging_url = check_upload_url(staging_url)
    production_url = check_upload_url(production_url)
    if staging_url.rstrip("/") == production_url.rstrip("/"):
        raise PublishError(
            "the staging and production URLs are the same index.",
            hint="stage on a separate index (e.g. …/test/legacy/ and …/prod/legacy/).",
        )
    for variable in ("KEYLESS_STAGING_TOKEN", "KEYLESS_PRODUCTION_TOKEN"):
        if env.get(variable):
            reporter.mask(env[variable])
    owned = http is None
    client = new_http_client(environ=env) if http is None else http
    result = ReleaseResult(dry_run=dry_run)
    run = Run(
        project_dir=Path(project_dir).resolve(),
        staging_url=staging_url,
        production_url=production_url,
        staging_simple=simple_url_for(staging_url),
        production_simple=simple_url_for(production_url),
        mode=mode,
        trusted_publishing=trusted_publishing,
        reporter=reporter,
        http=client,
        environ=env,
        smoke=smoke,
        dry_run=dry_run,
        no_isolation=no_isolation,
        dist_dir=dist_dir,
        python=python,
        result=result,
        use_session=session,
    )
    try:
        _pipeline(run, notify_config)
    finally:
        if owned:
            client.close()
    return result


def _pipeline(run: Run, notify_config: NotifyConfig | None) -> None:
    """The stages, in order: the first that fails ends the release; notify runs anyway."""
    try:
        project.read(run, notify_config)  # 1
        version.check(run)  # 2, when pyproject.toml names the version; else within 3
        build.build(run)  # 3
        check.check(run)  # 4
        if run.already_released:  # a re-run of a release that went out
            production.confirm_released(run)  # 7, and 5 and 6 are skipped
        else:
            try:
                staging.publish(run)  # 5
                install.test(run)  # 6
                production.release(run)  # 7
            finally:
                run.settle_session()  # not published (a stage failed, an interrupt): canceled
        notes.extract(run)  # 8
        run.result.ok = True
    except StageFailed as failed:
        run.result.failed_stage = failed.stage
        run.result.error = failed.error
        run.reporter.error(failed.error.with_context(stage=failed.stage))
    notify.send(run, run.notify_config)  # 9
