"""Stage 5, staging: publish the built files to the staging index."""

from __future__ import annotations

from keyless.publish.indexclient import redact
from keyless.publish.release.state import Run


def publish(run: Run) -> None:
    """Upload the built files to staging, with the staging credentials."""
    with run.stage("staging", f"Publishing to staging {redact(run.staging_url)}") as out:
        published = run.publish(run.staging_url, "STAGING")
        run.result.staging = published.files
        out.detail = ", ".join(f"{f.filename}: {f.status}" for f in published.files)
