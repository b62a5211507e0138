"""Stage 8, notes: the release's section of the changelog."""

from __future__ import annotations

from keyless.publish import changelog
from keyless.publish.release.state import Run


def extract(run: Run) -> None:
    """The release's section of the changelog, for the notifications and the result."""
    version = run.result.version or ""
    with run.stage("notes", "Extracting the release notes") as out:
        found = changelog.release_notes(run.project_dir, version)
        if found is None:
            where = changelog.find_changelog(run.project_dir)
            out.detail = f"no section for {version} in {where.name}" if where else "no changelog"
            run.reporter.warning(f"release notes: {out.detail}")
            return
        run.result.notes = found.text
        run.result.notes_file = found.path
        out.detail = f"{found.path.name}: {found.heading}"
