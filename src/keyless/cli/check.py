"""`keyless check [DIST…]`: check distributions before uploading them (thin shell)."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from keyless.publish.check import CheckReport, Finding

DEFAULT_DIST_DIR = "dist"
# = keyless.publish.check.DEFAULT_MAX_FILE_SIZE (PyPI's 100 MiB), spelled out so that defining
# the parser does not import the checks (readme_renderer, docutils); tests/test_cli_imports.py
# keeps the two equal.
DEFAULT_MAX_FILE_SIZE = 100 * 1024 * 1024


def define(parser: argparse.ArgumentParser) -> None:
    """Give `check`'s parser its description and arguments."""
    parser.description = (
        "Check wheels and sdists: core metadata (every error), README rendering, "
        "classifiers, normalized file names, name and version agreement, the index's size "
        "limit, the git tag against the version, one sdist per release, and wheels and "
        "sdist agreeing. Exit 1 when anything would be refused."
    )
    parser.add_argument(
        "dists",
        nargs="*",
        metavar="DIST",
        help=f"files or folders (default: the wheels and sdists in {DEFAULT_DIST_DIR}/)",
    )
    parser.add_argument(
        "--max-file-size",
        default=str(DEFAULT_MAX_FILE_SIZE),
        help="the index's per-file limit, e.g. 100MiB (default 100MiB, PyPI's)",
    )
    tag = parser.add_mutually_exclusive_group()
    tag.add_argument(
        "--tag",
        help="the release tag the version must equal (default: the tag HEAD is on, if any)",
    )
    tag.add_argument(
        "--no-tag", action="store_true", help="do not compare the version with a git tag"
    )
    parser.add_argument(
        "--policy",
        choices=["pypi", "private"],
        default="pypi",
        help="the index's rules: pypi (as PyPI; default) or private",
    )
    parser.add_argument("--strict", action="store_true", help="fail on warnings too")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def expand(patterns: list[str]) -> list[str]:
    """Shell-style patterns the shell left alone (quoted, or on Windows) expanded; others kept."""
    paths: list[str] = []
    for pattern in patterns or [DEFAULT_DIST_DIR]:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else []
        paths.extend(matches or [pattern])
    return paths


def run(args: argparse.Namespace) -> int:
    """Check and report; 0 when clean, 1 on errors (or warnings with --strict), 2 on bad flags."""
    # Imported on use: every `keyless` command imports this module (see main.py).
    from keyless.config import ConfigError, parse_size
    from keyless.publish.check import check_dists, current_git_tag

    try:
        limit = parse_size(args.max_file_size, "--max-file-size")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tag = None if args.no_tag else (args.tag or current_git_tag(Path.cwd()))
    report = check_dists(expand(args.dists), index_limits=limit, git_tag=tag, policy=args.policy)
    failed = not report.ok or (args.strict and bool(report.warnings))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render(report, sys.stdout)
    return 1 if failed else 0


def _finding_lines(finding: Finding, indent: str) -> list[str]:
    label = "ERROR" if finding.level == "error" else "warning"
    lines = [f"{indent}{label} [{finding.rule}] {finding.message}"]
    if finding.fix:
        lines.append(f"{indent}    fix: {finding.fix}")
    return lines


def render(report: CheckReport, out: TextIO) -> None:
    """The report as readable text: one block per file, then what concerns the whole set."""
    lines: list[str] = []
    for file in report.files:
        errors = sum(f.level == "error" for f in file.findings)
        warnings = len(file.findings) - errors
        verdict = "FAILED" if errors else ("PASSED with warnings" if warnings else "PASSED")
        lines.append(f"Checking {file.path}: {verdict}")
        for finding in file.findings:
            lines.extend(_finding_lines(finding, "  "))
    if report.findings:
        lines.append("All files together:")
        for finding in report.findings:
            lines.extend(_finding_lines(finding, "  "))
    if report.git_tag:
        lines.append(f"Git tag: {report.git_tag}")
    errors, warnings = len(report.errors), len(report.warnings)
    summary = f"{len(report.files)} file(s): {errors} error(s), {warnings} warning(s)"
    lines.append(summary if errors else f"{summary} — ready to publish")
    out.write("\n".join(lines) + "\n")
