"""Stage 7, production: promote the staged release (the very same files, by the staging index's
keyless server) or publish the same files; or, on a re-run of a release that went out, confirm
that production holds exactly the built files.
"""

from __future__ import annotations

from packaging.version import Version

from keyless.publish import promote
from keyless.publish.errors import PublishError
from keyless.publish.indexclient import IndexClient, file_version, redact
from keyless.publish.release.state import Run
from keyless.publish.reporter import FileResult


def release(run: Run) -> None:
    """Promote the staged release, or publish the same files when promotion is not possible
    (or not asked for)."""
    target = redact(run.production_url)
    if run.staged is not None:
        with run.stage("production", f"Publishing the upload session on {target}") as out:
            published = run.staged.publish()
            run.result.production = published.files
            run.result.production_method = "session"
            if not published.ok:
                failed = [f for f in published.files if not f.ok]
                raise PublishError(
                    f"the upload session on {target} was not published: "
                    + "; ".join(f"{f.filename}: {f.error}" for f in failed),
                    context={"url": target},
                )
            out.detail = "published the tested session: every file at once"
        return
    with run.stage("production", f"Releasing to production {target}") as out:
        pair = run.locate() if run.mode == "promote" else None
        if run.mode == "promote" and pair is None:
            run.reporter.warning(
                f"cannot promote: {redact(run.staging_url)} and {target} are not two "
                "indexes of one keyless server; publishing the same files to production "
                "instead"
            )
        if pair is not None:
            try:
                _promote(run, pair)
                out.detail = f"promoted from {pair.source!r} to {pair.target!r}"
                return
            except promote.PromoteUnsupported as exc:
                run.reporter.warning(
                    f"{exc.message} Publishing the same files to production instead."
                )
        published = run.publish(run.production_url, "PRODUCTION")
        run.result.production = published.files
        run.result.production_method = "publish"
        out.detail = "published the same files"


def _promote(run: Run, pair: promote.IndexPair) -> None:
    name, version = run.result.project or "", run.result.version or ""
    run.result.production_method = "promote"
    if run.dry_run:
        run.reporter.info(
            f"dry run: would promote {name} {version} from {pair.source!r} to "
            f"{pair.target!r} on {pair.base}"
        )
        return
    built = {d.filename: d.sha256 for d in run.result.built}
    # Promotion moves the staged RELEASE, every file of it: it must be exactly what was
    # built and tested (a leftover file of an earlier attempt would be promoted too).
    staged = {
        filename: sha256
        for filename, sha256 in IndexClient(run.staging_url, http=run.http)
        .existing_files(name)
        .items()
        if file_version(filename) == Version(version)
    }
    if staged != built:
        extra = sorted(set(staged) - set(built))
        raise PublishError(
            f"staging holds other files for {name} {version} than this build: "
            + (f"{', '.join(extra)} too; " if extra else "")
            + "promoting would release files that were not tested together.",
            hint="release a new version (or remove the extra files from staging).",
        )
    credentials = run.credentials(run.production_url, "PRODUCTION")
    try:
        files = promote.promote(pair, name, version, token=credentials.token(), http=run.http)
    finally:
        credentials.close()
    promoted = {f.filename: f.sha256 for f in files}
    if promoted != built:
        raise PublishError(
            "the promoted release is not the files that were built and tested: "
            f"production has {sorted(promoted.items())}, the build made "
            f"{sorted(built.items())}.",
            hint="another build of this version was staged earlier; release a new version.",
        )
    for result in files:
        what = "promoted" if result.status == "uploaded" else "already on production"
        run.reporter.info(f"{what}: {result.filename} (sha256 {result.sha256})")
    run.result.production = files


def confirm_released(run: Run) -> None:
    """Instead of stages 5 to 7 on a re-run: production must hold exactly the built files;
    then nothing is uploaded."""
    with run.stage("production", "Comparing the build with what production holds") as out:
        client = IndexClient(run.production_url, http=run.http, simple_url=run.production_simple)
        held = client.existing_entries(run.result.project or "")
        different = [
            f"{d.filename}: built sha256 {d.sha256}, production has "
            + (f"sha256 {held[d.filename].sha256}" if d.filename in held else "no such file")
            for d in run.result.built
            if d.filename not in held or held[d.filename].sha256 != d.sha256
        ]
        if different:
            raise PublishError(
                f"version {run.result.version} is already on production with other "
                "files:\n  " + "\n  ".join(different),
                hint="a released version never changes: bump the version for a new release.",
            )
        run.result.production = [
            FileResult(d.filename, "exists", held[d.filename].url, d.sha256, d.size)
            for d in run.result.built
        ]
        out.detail = "already released with these exact files: nothing to do"
    for name in ("staging", "install-test"):
        run.skip(name, "already released")
