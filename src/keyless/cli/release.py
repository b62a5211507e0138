"""`keyless release`: the staged release pipeline in one command (thin shell).

    keyless release --staging-url https://idx/test/legacy/ --production-url https://idx/prod/legacy/

Version policy, build, check, publish to staging, install-test from staging in a fresh
environment, then promote the very same files to production (or publish them there), release
notes from the changelog, and notifications. Exit 0 when released, 1 when a stage failed, 2 for
bad arguments. See `keyless.publish.release` for the stages.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keyless.cli.publish import MODES
from keyless.publish.errors import PublishError


def define(parser: argparse.ArgumentParser) -> None:
    """Give `release`'s parser its description and arguments."""
    parser.description = (
        "Release the project in one command: version policy (PEP 440/SemVer, git tag, newer "
        "than production), build (sdist + wheel), check, publish to the staging index, "
        "install it from staging in a fresh virtual environment (import + optional smoke "
        "command), then promote the same files to production (server-side on keyless: same "
        "bytes, same hashes) or publish them there; release notes from the changelog; "
        "notifications from [tool.keyless.notify] or KEYLESS_NOTIFY_*. Stops at the first "
        "failing stage; nothing reaches production unless staging passed."
    )
    parser.add_argument(
        "--project-dir", default=".", type=Path, help="the project's folder (default: .)"
    )
    parser.add_argument(
        "--staging-url",
        default=None,
        help="the staging index's upload URL, e.g. https://idx/test/legacy/ (KEYLESS_STAGING_URL)",
    )
    parser.add_argument(
        "--production-url",
        default=None,
        help="the production index's upload URL (KEYLESS_PRODUCTION_URL)",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--promote",
        dest="mode",
        action="store_const",
        const="promote",
        help="promote the staged files on the server (default; falls back to publishing when "
        "staging and production are not indexes of one keyless server)",
    )
    target.add_argument(
        "--publish-to-production",
        dest="mode",
        action="store_const",
        const="publish",
        help="upload the same files to production",
    )
    parser.set_defaults(mode="promote")
    parser.add_argument(
        "--no-session",
        action="store_true",
        help="never use PEP 694 upload sessions: stage on the staging index, then promote or "
        "publish (by default, a production index with sessions stages the release in one, "
        "install-tests it from its stage preview, then publishes it)",
    )
    parser.add_argument(
        "--smoke",
        metavar="CMD",
        help="a command run in the fresh environment after the install test (e.g. 'demo --help')",
    )
    parser.add_argument(
        "--trusted-publishing",
        choices=MODES,
        default="auto",
        help="auto (default): an API token if one is set, else Trusted Publishing in CI; "
        "always; never. API tokens: KEYLESS_STAGING_TOKEN / KEYLESS_PRODUCTION_TOKEN "
        "(else KEYLESS_TOKEN)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the version, build and check; upload, install and notify nothing",
    )
    parser.add_argument(
        "--no-isolation",
        action="store_true",
        help="build without an isolated environment (the build backend must be installed)",
    )
    parser.add_argument(
        "--dist-dir", type=Path, help="build into this (new or empty) folder (default: a temp one)"
    )
    parser.add_argument(
        "--cert", metavar="CA", help="PEM file of CAs to trust for the indexes (or SSL_CERT_FILE)"
    )
    parser.set_defaults(handler=cmd_release)


def _summary(result: Any) -> list[str]:
    name = f"{result.project or '?'} {result.version or '?'}"
    if result.ok:
        how = {
            "promote": "promoted",
            "publish": "published",
            "session": "published (upload session)",
        }.get(result.production_method or "", "released")
        verdict = f"{name}: {how} to production"
        if result.dry_run:
            verdict = f"{name}: dry run passed, nothing uploaded"
    else:
        verdict = f"{name}: release FAILED at stage '{result.failed_stage}'"
    lines = [verdict]
    for stage in result.stages:
        lines.append(f"  {stage.name:<13} {stage.status:<8} {stage.detail}")
    for item in result.production:
        lines.append(f"  {item.filename}  sha256={item.sha256}")
    if result.session:
        lines.append(
            f"  upload session (PEP 694): {result.session['url']} ({result.session['status']})"
        )
    return lines


def cmd_release(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    # Imported on use: every `keyless` command imports this module (see main.py).
    from keyless.cli.reporting import make_reporter
    from keyless.publish.indexclient import new_http_client
    from keyless.publish.release import release

    env = dict(os.environ if environ is None else environ)
    if args.cert:
        env["SSL_CERT_FILE"] = str(args.cert)  # also what pip and SMTP use
    staging = args.staging_url or env.get("KEYLESS_STAGING_URL")
    production = args.production_url or env.get("KEYLESS_PRODUCTION_URL")
    reporter = make_reporter(env, stdout_is_data=args.json)
    if not staging or not production:
        reporter.error(
            PublishError(
                "keyless release needs a staging and a production index.",
                hint="pass --staging-url and --production-url (their upload URLs, …/legacy/), "
                "or set KEYLESS_STAGING_URL and KEYLESS_PRODUCTION_URL.",
            )
        )
        reporter.close()
        return 2
    try:
        with new_http_client(environ=env) as http:
            result = release(
                args.project_dir,
                staging_url=staging,
                production_url=production,
                mode=args.mode,
                reporter=reporter,
                http=http,
                environ=env,
                smoke=args.smoke,
                trusted_publishing=args.trusted_publishing,
                dry_run=args.dry_run,
                no_isolation=args.no_isolation,
                dist_dir=args.dist_dir,
                session=not args.no_session,
            )
    except PublishError as exc:
        reporter.error(exc)
        reporter.close()
        return 2
    except KeyboardInterrupt:
        reporter.close()
        reporter.write("interrupted")
        return 130
    reporter.close()
    for line in _summary(result):
        reporter.write(line)
    if result.notes:
        reporter.write("release notes:\n" + result.notes)
    if args.json:
        print(reporter.scrub(json.dumps(result.to_json(), indent=2)))
    return 0 if result.ok else 1
