"""`keyless doctor`: can this CI job publish, and what to register so it can (thin shell)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from keyless.publish.doctor import Diagnosis

# = keyless.publish.doctor.PYPI_UPLOAD_URL, spelled out so that defining the parser does not
# import the diagnosis (and httpx); tests/test_cli_imports.py keeps the two equal.
PYPI_UPLOAD_URL = "https://upload.pypi.org/legacy/"

# The claims that decide whether a publisher matches, in the order worth reading them.
SHOWN_CLAIMS = (
    "iss",
    "aud",
    "sub",
    "repository",
    "repository_owner",
    "repository_owner_id",
    "project_path",
    "namespace_path",
    "workflow_ref",
    "job_workflow_ref",
    "ci_config_ref_uri",
    "ref",
    "ref_path",
    "ref_protected",
    "event_name",
    "pipeline_source",
    "environment",
)
_MARKS = {"ok": "ok  ", "info": "info", "warning": "WARN", "unknown": "????", "error": "FAIL"}
# The exit status of each verdict (2: bad flags). "unknown" is neither a yes nor a no: a CI
# step can tell "the index said no" (1) from "the index could not be asked" (3).
EXIT_CODES = {"ready": 0, "not-ready": 1, "unknown": 3}


def define(parser: argparse.ArgumentParser) -> None:
    """Give `doctor`'s parser its description and arguments."""
    parser.description = (
        "Run in the publishing CI job (before building): asks the index for its audience "
        "and whether the version in pyproject.toml exists, gets the job's OIDC token, and "
        "explains what the index will see (missing id-token permission, fork pull "
        "request, pull_request_target, reusable workflow, environment) and the exact "
        "trusted publisher to register. The token is never printed. Ready only when the "
        "index itself says yes: a keyless index answers a dry run of its Trusted Publishing "
        "match for this token and project."
    )
    parser.epilog = (
        "exit status: 0 ready (the index accepts this job's token for the project), "
        "1 not ready (the index or a check says no), 2 bad options, 3 unknown (the index "
        "could not be asked: not a keyless index or an older one, unreachable, or no OIDC "
        'token here). --json prints "status": "ready" | "not-ready" | "unknown".'
    )
    parser.add_argument(
        "--repository-url",
        help=f"the index's upload URL (KEYLESS_REPOSITORY_URL; default {PYPI_UPLOAD_URL})",
    )
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a field of the publisher already registered, e.g. environment=pypi "
        "(repeatable): checked against this job's token",
    )
    parser.add_argument(
        "--index-name", help="the index's name for `keyless publisher add` (default: from URL)"
    )
    parser.add_argument("--cert", metavar="CA", help="PEM file of CAs to trust for the index")
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Diagnose and report; the exit status is `EXIT_CODES[status]` (2 on bad flags)."""
    # Imported on use: every `keyless` command imports this module (see main.py).
    from keyless.publish.doctor import diagnose
    from keyless.publish.errors import PublishError
    from keyless.publish.indexclient import new_http_client

    expected: dict[str, str] = {}
    for item in args.expect:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --expect {item!r}: write FIELD=VALUE", file=sys.stderr)
            return 2
        expected[key.strip().replace("-", "_")] = value.strip()
    url = args.repository_url or os.environ.get("KEYLESS_REPOSITORY_URL") or PYPI_UPLOAD_URL
    try:
        http = new_http_client(ca_file=args.cert)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with http:
        diagnosis = diagnose(
            url,
            environ=os.environ,
            http=http,
            expected=expected or None,
            index_name=args.index_name,
        )
    if args.json:
        print(json.dumps(diagnosis.to_dict(), indent=2, default=str))
    else:
        render(diagnosis, sys.stdout)
    return EXIT_CODES[diagnosis.status]


def _indented(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in text.splitlines()]


def render(diagnosis: Diagnosis, out: TextIO) -> None:
    """The diagnosis as readable text: findings, the claims, the publisher to register."""
    ci = {"github": "GitHub Actions", "gitlab": "GitLab CI/CD", "other": "a CI"}.get(
        diagnosis.ci or "", "not in CI"
    )
    lines = [f"keyless doctor: {diagnosis.upload_url} ({ci})"]
    if diagnosis.project:
        lines.append(f"project: {diagnosis.project} {diagnosis.version or '(dynamic version)'}")
    lines.append("")
    for note in diagnosis.findings:
        lines.extend(_indented(note.message, f"[{_MARKS[note.level]}] "))
        if note.fix:
            lines.append("       fix:")
            lines.extend(_indented(note.fix, "         "))
    if diagnosis.claims:
        lines += ["", "What the index will see in the token (claims, unverified):"]
        for key in SHOWN_CLAIMS:
            if key in diagnosis.claims:
                lines.append(f"  {key:<20} {diagnosis.claims[key]}")
    registration = diagnosis.registration
    accepted = diagnosis.index_answer is not None and diagnosis.index_answer.allowed
    # Once the index accepts the job, its publisher is registered: nothing more to register.
    if registration is not None and not accepted:
        verdict = (
            "accepts this job"
            if not registration.mismatches
            else "would still be refused (see above)"
        )
        lines += [
            "",
            f"The trusted publisher to register for {registration.project!r} ({verdict}):",
        ]
        lines += [f"  {label:<24} {value}" for label, value in registration.form]
        if registration.command:
            lines += ["", "On the keyless index's server:", f"  {registration.command}"]
            lines.append(
                "  (for a project not on the index yet: --pending PROJECT --owner-user USER "
                "instead of --project PROJECT)"
            )
        if registration.settings_url:
            lines += ["", f"On PyPI: {registration.settings_url}"]
    verdicts = {
        "ready": "ready to publish: the index accepts this job",
        "not-ready": "NOT ready to publish",
        "unknown": "UNKNOWN whether this job can publish: the index could not be asked (see ????)",
    }
    lines += ["", verdicts[diagnosis.status]]
    out.write("\n".join(lines) + "\n")
