"""`keyless mirror warm|prune`: an index's cache of its upstream (index/mirror/).

`warm` talks to a running server over HTTP, as pip does (any machine that reaches it);
`prune` works on the server's own data, as `keyless gc` does.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from keyless.cli.server import open_admin, server_options


def define(parser: argparse.ArgumentParser) -> None:
    action = parser.add_subparsers(dest="action", required=True)
    warm = action.add_parser(
        "warm",
        help="fetch projects' pages and files through a mirror index ahead of use",
        description="For each requirement, fetch its page and the files (and PEP 658 metadata "
        "files) of the newest version it allows, through the mirror index's own URLs: the "
        "server fetches, checks and stores them as it does for pip.",
    )
    warm.add_argument("requirements", nargs="*", metavar="NAME", help="e.g. requests or 'six>=1'")
    warm.add_argument(
        "-r",
        "--requirement",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a requirements file (as pip reads; may repeat)",
    )
    warm.add_argument(
        "--index-url",
        required=True,
        help="the mirror index's simple URL, e.g. http://127.0.0.1:8000/main/simple/",
    )
    warm.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    warm.set_defaults(handler=cmd_warm)
    prune = action.add_parser(
        "prune",
        help="remove cached upstream files not downloaded for N days",
        description="Forget the upstream files no client downloaded for --days days; their "
        "blobs go unless a file of an index's own (or another index's cache) shares them. A "
        "forgotten file is fetched from the upstream again on its next download.",
    )
    server_options(prune)
    prune.add_argument("--days", type=float, required=True, help="unused for this many days")
    prune.add_argument("--index", help="only this index (default: every index)")
    prune.set_defaults(handler=cmd_prune)


def cmd_warm(args: argparse.Namespace) -> int:
    from keyless.index.mirror.warm import parse_requirement, requirements_from_files, warm_all

    wanted = [parse_requirement(text) for text in args.requirements]
    wanted += requirements_from_files(args.requirement)
    if not wanted:
        print("error: name at least one project, or a requirements file (-r).", file=sys.stderr)
        return 2
    failures = 0
    for done in warm_all(args.index_url, wanted, args.timeout):
        if done.error is None:
            print(f"warmed {done.requirement}: {done.version} ({done.files} files)")
        else:
            failures += 1
            print(f"not warmed {done.requirement}: {done.error}", file=sys.stderr)
    return 1 if failures else 0


def cmd_prune(args: argparse.Namespace) -> int:
    # `float` also takes "nan" and "inf", which no cut-off date can be made of.
    if not math.isfinite(args.days) or args.days < 0:
        print("error: --days must be a number of days, 0 or more.", file=sys.stderr)
        return 2
    report = open_admin(args).prune_mirror(args.days, args.index)
    for index, filename in report.files:
        print(f"pruned {index}: {filename}")
    print(f"{len(report.files)} files forgotten, {report.blobs_removed} blobs removed")
    return 0
