"""`keyless publish [DIST…]`: upload distributions, with Trusted Publishing when in CI.

A thin shell over `keyless.publish`: parse the options, pick a reporter for the terminal or
CI, resolve credentials, publish, print the result, burn the token. Exit status 0 only when
every file is on the index (uploaded now, or identical already there).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from keyless.publish.errors import PublishError
from keyless.publish.options import DEFAULTS, UploadOptions

if TYPE_CHECKING:
    from keyless.publish.credentials import Credentials
    from keyless.publish.upload import PublishResult

# The library (httpx, packaging, the dist readers) is imported in `cmd_publish`, not here:
# every `keyless` command imports this module (see main.py), and `keyless publish --help`
# needs none of it. keyless.publish.options is the exception: standard library only, it is
# where the flags' defaults and limits come from.

DEFAULT_REPOSITORY_URL = "https://upload.pypi.org/legacy/"
DIST_SUFFIXES = (".whl", ".tar.gz")
# = keyless.publish.credentials.MODES, spelled out so that defining the parser does not
# import httpx; tests/test_cli_imports.py keeps the two equal.
MODES: tuple[str, ...] = ("auto", "always", "never")


def define(parser: argparse.ArgumentParser) -> None:
    """Give `publish`'s parser its description and arguments."""
    parser.description = (
        "Upload wheels and sdists. In CI (GitHub Actions, GitLab, Google Cloud, Buildkite, "
        "CircleCI) the job's OIDC token is exchanged for a short-lived upload token; "
        "elsewhere an API token from KEYLESS_TOKEN (or UV_PUBLISH_TOKEN, TWINE_PASSWORD, "
        "keyring) is used. Files already on the index with the same sha256 count as done."
    )
    parser.add_argument(
        "dists", nargs="*", metavar="DIST", help="files or globs to publish (default: dist/*)"
    )
    parser.add_argument(
        "--repository-url",
        default=None,
        help=f"the index's upload URL (KEYLESS_REPOSITORY_URL; default {DEFAULT_REPOSITORY_URL})",
    )
    parser.add_argument(
        "--simple-url",
        default=None,
        help="the index's simple API URL, when it cannot be derived from the upload URL",
    )
    parser.add_argument(
        "--trusted-publishing",
        choices=MODES,
        default="auto",
        help="auto (default): an API token if one is set, else Trusted Publishing in CI; "
        "always: Trusted Publishing only; never: API token only",
    )
    parser.add_argument(
        "--parallel",
        type=_option("parallel"),
        default=DEFAULTS.parallel,
        help=f"files uploaded at once (default {DEFAULTS.parallel})",
    )
    parser.add_argument(
        "--retries",
        type=_option("retries"),
        default=DEFAULTS.retries,
        help="retries per file on 5xx/network errors",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check and look up the files; upload nothing"
    )
    parser.add_argument(
        "--no-session",
        action="store_true",
        help="upload file by file with the legacy API, even when the index offers PEP 694 "
        "upload sessions (by default a release goes up in one session, published at once)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument(
        "--cert", metavar="CA", help="PEM file of CAs to trust for the index (or SSL_CERT_FILE)"
    )
    parser.set_defaults(handler=cmd_publish)


def _option(name: str) -> Callable[[str], int]:
    """An argparse type: a whole number that UploadOptions takes for `name`, refused at parse
    time with UploadOptions' own reason (before any file is read or token minted)."""

    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if (problem := UploadOptions.problem(name, value)) is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return number


def find_dists(patterns: Sequence[str]) -> list[Path]:
    """The files to publish: each pattern as a file, a folder's wheels and sdists, or a glob
    (for shells that do not expand them); with no patterns, the dists in ./dist.

    Raises PublishError when a pattern matches nothing.
    """
    if not patterns:
        found = sorted(p for p in Path("dist").glob("*") if p.name.endswith(DIST_SUFFIXES))
        if not found:
            raise PublishError(
                "no wheels or sdists in dist/.",
                hint="build them first (`python -m build`), or name the files to publish.",
            )
        return found
    paths: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.name.endswith(DIST_SUFFIXES))
        elif path.exists():
            paths.append(path)
        elif matches := sorted(glob.glob(pattern)):
            paths += [Path(m) for m in matches if m.endswith(DIST_SUFFIXES)]
        else:
            raise PublishError(f"{pattern}: no such file.", context={"file": pattern})
    return paths


def _summary(result: PublishResult) -> str:
    counts: dict[str, int] = {}
    for item in result.files:
        counts[item.status] = counts.get(item.status, 0) + 1
    parts = [f"{n} {status}" for status, n in counts.items()]
    verdict = "published" if result.ok else "NOT published"
    if result.dry_run:
        verdict = "dry run, nothing uploaded" if result.ok else "dry run found problems"
    line = f"{verdict}: {', '.join(parts)} ({len(result.files)} file(s))"
    if result.upload_api == "session":
        sessions = ", ".join(f"{s['url']} ({s['status']})" for s in result.sessions)
        line += f"\nthrough upload session(s) (PEP 694): {sessions}"
    elif result.upload_api == "legacy":
        line += "\nthrough the legacy upload API"
    return line


def cmd_publish(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    # Imported on use: every `keyless` command imports this module (see main.py).
    from keyless.cli.reporting import make_reporter
    from keyless.publish.credentials import NoCredentials, resolve_credentials
    from keyless.publish.indexclient import check_upload_url, new_http_client, redact
    from keyless.publish.upload import publish, read_dists, result_document

    env = os.environ if environ is None else environ
    upload_url = args.repository_url or env.get("KEYLESS_REPOSITORY_URL") or DEFAULT_REPOSITORY_URL
    reporter = make_reporter(env, stdout_is_data=args.json)
    credentials: Credentials | None = None
    result: PublishResult | None = None
    failure: PublishError | None = None
    try:
        # A URL or a number that cannot be right fails before the files are read or a token
        # is minted.
        upload_url = check_upload_url(upload_url)
        options = UploadOptions(parallel=args.parallel, retries=args.retries)
        # Every file read and checked before any credentials are fetched: a broken build
        # should not cost an OIDC exchange, nor leave a minted token behind.
        dists = read_dists(find_dists(args.dists), reporter)
        with new_http_client(ca_file=args.cert, environ=env) as http:
            reporter.stage(f"Credentials for {redact(upload_url)}")
            try:
                credentials = resolve_credentials(
                    upload_url,
                    mode=args.trusted_publishing,
                    http=http,
                    reporter=reporter,
                    environ=env,
                )
            except PublishError as exc:
                if not args.dry_run:
                    raise
                # A dry run still checks and looks up; the missing credentials fail it (a
                # real run would fail).
                reporter.error(exc)
                failure = exc
                credentials = NoCredentials(source="none", reason="no credentials.")
            try:
                result = publish(
                    dists,
                    upload_url,
                    credentials=credentials,
                    reporter=reporter,
                    http=http,
                    options=options,
                    dry_run=args.dry_run,
                    simple_url=args.simple_url,
                    session=not args.no_session,
                )
            finally:
                # Burn the minted token now, not in 15 minutes: it is useless to us anyway.
                credentials.close()
    except PublishError as exc:
        reporter.error(exc)
        failure = exc
    except KeyboardInterrupt:
        reporter.close()
        reporter.write("interrupted")
        return 130
    finally:
        reporter.close()
    if result is not None:
        reporter.write(_summary(result))
    if args.json:
        print(reporter.scrub(json.dumps(result_document(result, failure), indent=2)))
    ok = result is not None and result.ok and failure is None
    return 0 if ok else 1
