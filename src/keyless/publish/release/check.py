"""Stage 4, check: the `keyless check` rules on the built files, with the production index's
policy.
"""

from __future__ import annotations

from keyless.publish.errors import PublishError
from keyless.publish.project import current_git_tag
from keyless.publish.release.state import Run


def check(run: Run) -> None:
    """The built files against the production index's policy (PyPI's when it has none)."""
    from keyless.publish.check import check_dists

    pair = run.locate()
    profile = pair.target_profile if pair and pair.target_profile else "pypi"
    with run.stage("check", f"Checking the files (policy {profile!r})") as out:
        report = check_dists(
            run.result.built, git_tag=current_git_tag(run.project_dir), policy=profile
        )
        for finding in report.warnings:
            run.reporter.warning(f"{finding.file or 'release'}: {finding.message}")
        if not report.ok:
            lines = [
                f"  - {f.file or 'release'}: {f.message}" + (f" ({f.fix})" if f.fix else "")
                for f in report.errors
            ]
            raise PublishError(
                f"{len(report.errors)} problem(s) in the built files:\n" + "\n".join(lines),
                hint="`keyless check` on the files explains each one.",
            )
        out.detail = f"{len(run.result.built)} file(s), {len(report.warnings)} warning(s)"
