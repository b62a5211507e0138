"""`keyless fsck`: check the database against the blob store, and repair what is safe."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from keyless.cli.server import server_options, settings_of

if TYPE_CHECKING:
    from keyless.config import Settings
    from keyless.index.fsck import FsckReport


# Exit statuses, in --help and README.
CLEAN, PROBLEMS, USAGE = 0, 1, 2


def define(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compare every file the database lists with its blob (missing, wrong size, wrong "
        "sha256) and every blob with the files (orphans). --repair removes orphans and "
        "damaged blobs, each decided under the database's write lock, so it is safe while the "
        "server runs; a missing or removed blob comes back when the identical file is "
        "uploaded again."
    )
    parser.epilog = (
        f"exit status: {CLEAN} nothing (left) to do, {PROBLEMS} problems found (after "
        f"--repair: problems left, e.g. files to upload again), {USAGE} usage error"
    )
    server_options(parser)
    parser.add_argument("--repair", action="store_true", help="remove orphaned and damaged blobs")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=lambda args: run(args, settings_of(args)))


def run(args: argparse.Namespace, settings: Settings) -> int:

    from keyless.index.admin import Admin

    report = Admin.open_existing(settings).fsck(repair=args.repair)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report, args.repair)
    return CLEAN if report.clean else PROBLEMS


def _print(report: FsckReport, repair: bool) -> None:
    out = sys.stdout
    for problem in report.problems:
        state = " (removed)" if problem.repaired else ""
        print(f"{problem.kind}{state}: {problem.sha256}: {problem.message}", file=out)
        for ref in problem.files:
            print(
                f"  {ref.index}/{ref.project} {ref.version}: {ref.filename}",
                file=out,
            )
        if problem.action:
            print(f"  to do: {problem.action}", file=out)
    found = len(report.problems)
    summary = f"checked {report.files} file(s) and {report.blobs} blob(s): "
    summary += f"{found} problem(s)" if found else "no problems"
    if repair and found:
        summary += f", {sum(p.repaired for p in report.problems)} blob(s) removed"
    if found and report.clean:
        summary += "; nothing left to do"
    print(summary, file=out)
