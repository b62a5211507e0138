"""`keyless static rebuild`: write the static copy of the read path whole (index/static.py)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from keyless.cli.server import server_options, settings_of

if TYPE_CHECKING:
    from keyless.config import Settings


def define(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The server keeps the static tree current by itself; `rebuild` writes it whole from "
        "the database (after restoring a backup, or to start serving it from nginx) and "
        "removes what should not be there. Safe while the server runs."
    )
    actions = parser.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser("rebuild", help="write the whole tree, remove stale files")
    server_options(rebuild)
    rebuild.add_argument(
        "--static-folder",
        help="the tree's folder (default: [static] folder, KEYLESS_STATIC_FOLDER)",
    )
    rebuild.set_defaults(handler=lambda args: run(settings_of(args)))


def run(settings: Settings) -> int:

    from keyless.index.admin import Admin

    report = Admin.open_existing(settings).rebuild_static()
    print(
        f"static tree {settings.static_folder or settings.static_bucket}: "
        f"{report.pages} page file(s), "
        f"{report.files} distribution(s), {report.metadata} .metadata file(s); "
        f"{report.written} written, {report.removed} removed",
        file=sys.stdout,
    )
    if report.unlinked:
        print(
            f"{len(report.unlinked)} distribution(s) are not in the tree: their blobs are in "
            "a bucket (serve /files/ from keyless, deploy/nginx/static.conf says how) or "
            "missing (see keyless fsck)",
            file=sys.stdout,
        )
    return 0
