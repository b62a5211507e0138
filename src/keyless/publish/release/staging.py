"""Stage 5, staging: upload the built files into a PEP 694 upload session on the production
index, unpublished (when it offers sessions); else publish them to the staging index."""

from __future__ import annotations

from keyless.publish.indexclient import redact
from keyless.publish.release.state import Run


def publish(run: Run) -> None:
    """Stage the built files in a session on production (production's credentials), else
    publish them to the staging index (the staging credentials)."""
    if run.use_session and not run.dry_run:
        title = f"Staging in an upload session on production {redact(run.production_url)}"
        with run.stage("staging", title) as out:
            staged = run.stage_in_session()
            if staged is not None:
                where = ", ".join(redact(s.url) for s in staged.sessions) or "nothing to send"
                out.detail = f"upload session {where}"
                return
            run.reporter.info(
                "production offers no upload sessions (PEP 694): staging on "
                f"{redact(run.staging_url)} instead"
            )
            published = run.publish(run.staging_url, "STAGING")
            run.result.staging = published.files
            out.detail = ", ".join(f"{f.filename}: {f.status}" for f in published.files)
        return
    with run.stage("staging", f"Publishing to staging {redact(run.staging_url)}") as out:
        published = run.publish(run.staging_url, "STAGING")
        run.result.staging = published.files
        out.detail = ", ".join(f"{f.filename}: {f.status}" for f in published.files)
