"""`keyless export ARCHIVE` and `keyless import ARCHIVE`: a whole server to one archive and back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from keyless.cli.server import server_options, settings_of

if TYPE_CHECKING:
    from keyless.config import Settings
    from keyless.index.admin import ArchiveSummary, ImportReport


# Exit statuses of `keyless import`, in its --help.
DONE, PARTLY, USAGE = 0, 1, 2


def define_export(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write every account, token hash, index, project, release, file, publisher, journal "
        "entry and web session, and the bytes of every file, to one tar archive that `keyless "
        "import` loads into an empty server on any backend. Safe while the server runs: the "
        "rows are read in one transaction."
    )
    server_options(parser)
    parser.add_argument("archive", type=Path, help="the archive to write (e.g. keyless.tar)")
    parser.set_defaults(handler=lambda args: run_export(args, settings_of(args)))


def define_import(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Load an archive written by `keyless export` into a server that holds no data yet "
        "(its configured indexes are replaced by the archive's). All or nothing: a damaged "
        "archive is refused and the server left as it was. Or bring in another index's "
        "packages: --from-pypiserver DIR adds every distribution of a pypiserver packages "
        "folder to --index, checked as uploads are; files that fail a check are listed and "
        "skipped. --from-devpi-export DIR does the same for every index of a devpi-export "
        "dump, and adds its users (without passwords). Stop the server while importing (or "
        "restart it after)."
    )
    parser.epilog = (
        f"exit status: {DONE} imported, {PARTLY} some files skipped (listed; the rest was "
        f"imported) or the archive refused, {USAGE} usage error"
    )
    server_options(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("archive", nargs="?", type=Path, help="an archive of `keyless export`")
    source.add_argument(
        "--from-pypiserver", type=Path, metavar="DIR", help="a pypiserver packages folder"
    )
    source.add_argument(
        "--from-devpi-export",
        type=Path,
        metavar="DIR",
        help="the folder `devpi-export` wrote: users, indexes (devpi's user/index becomes "
        "index user-index), projects and files",
    )
    parser.add_argument("--index", help="the index to import into (with --from-pypiserver)")
    parser.add_argument(
        "--owner", help="the user who owns the projects the import creates (default: none)"
    )
    parser.set_defaults(handler=lambda args: run_import(args, settings_of(args)))


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from keyless.index.admin import Admin, ArchiveError

    try:
        summary = Admin.open_existing(settings).export_archive(args.archive)
    except ArchiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported to {args.archive}: {_describe(summary)}")
    return 0


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    from keyless.index.admin import Admin, ArchiveError, ImportRefused

    try:
        admin = Admin.open(settings)
        if args.from_pypiserver is not None:
            report = admin.import_pypiserver(args.from_pypiserver, args.index, args.owner)
            return _print_report(report, str(args.from_pypiserver))
        if args.from_devpi_export is not None:
            report = admin.import_devpi_export(args.from_devpi_export)
            return _print_report(report, str(args.from_devpi_export))
        summary = admin.import_archive(args.archive)
    except ArchiveError as exc:
        print(f"error: {exc} Nothing was imported.", file=sys.stderr)
        return PARTLY
    except ImportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    print(f"imported {args.archive}: {_describe(summary)}")
    return DONE


def _print_report(report: ImportReport, source: str) -> int:
    for skipped in report.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    print(
        f"imported from {source}: {len(report.added)} file(s) added, "
        f"{len(report.present)} already there, {len(report.skipped)} skipped"
    )
    for note in report.notes:
        print(f"note: {note}")
    return PARTLY if report.skipped else DONE


def _describe(summary: ArchiveSummary) -> str:
    rows = summary.rows
    counts = ", ".join(
        f"{rows.get(table, 0)} {label}"
        for table, label in (
            ("users", "user(s)"),
            ("api_tokens", "token(s)"),
            ("indexes", "index(es)"),
            ("projects", "project(s)"),
            ("releases", "release(s)"),
            ("files", "file(s)"),
            ("journal", "journal entries"),
        )
    )
    return f"{counts}; {summary.blobs} blob(s), {summary.blob_bytes} bytes"
