"""Stage 9, notify: webhook / Slack / email, on success and on failure alike; a failed delivery
is a warning, never a failed release.
"""

from __future__ import annotations

import time

import httpx
from packaging.utils import canonicalize_name

from keyless.publish import notify
from keyless.publish.indexclient import redact
from keyless.publish.release.state import STAGES, Run, StageOutcome


def send(run: Run, config: notify.NotifyConfig | None) -> None:
    """Tell the configured channels how the release went; failed deliveries are recorded."""
    if config is None or config.empty:
        run.result.stages.append(StageOutcome("notify", "skipped", "no notification configured"))
        return
    channels = ", ".join(config.describe())
    if run.dry_run:
        run.skip("notify", f"dry run: would notify {channels}")
        return
    started = time.monotonic()
    run.reporter.stage(f"[{len(STAGES)}/{len(STAGES)}] Notifying {channels}")
    deliveries = notify.notify(
        _event(run), config, http=run.http, reporter=run.reporter, environ=run.environ
    )
    run.result.notifications = deliveries
    failed = [d for d in deliveries if not d.ok]
    run.result.stages.append(
        StageOutcome(
            "notify",
            "passed" if not failed else "failed",
            f"{len(deliveries) - len(failed)} of {len(deliveries)} delivered",
            time.monotonic() - started,
        )
    )


def _event(run: Run) -> notify.ReleaseEvent:
    result = run.result
    name, version = result.project or "?", result.version or "?"
    if result.ok:
        files = notify.files_of(result.production)
    elif result.staging:
        files = notify.files_of(result.staging)
    else:
        files = tuple(
            {"filename": d.filename, "sha256": d.sha256, "size": d.size, "url": None}
            for d in result.built
        )
    error = None
    if result.error is not None:
        error = result.error.message + (f"\nhint: {result.error.hint}" if result.error.hint else "")
    return notify.ReleaseEvent(
        session=None if result.session is None else str(result.session.get("status")),
        succeeded=result.ok,
        project=name,
        version=version,
        index=redact(run.production_simple),
        files=files,
        stage=result.failed_stage,
        error=error,
        notes=result.notes,
        url=_release_url(run.production_simple, run.production_url, name, version)
        if result.ok
        else None,
    )


def _release_url(production_simple: str, production_upload: str, name: str, version: str) -> str:
    host = (httpx.URL(production_upload).host or "").lower()
    if host == "upload.pypi.org":
        return f"https://pypi.org/project/{name}/{version}/"
    if host == "test.pypi.org":
        return f"https://test.pypi.org/project/{name}/{version}/"
    return f"{production_simple.rstrip('/')}/{canonicalize_name(name)}/"
