"""`keyless db upgrade|current`: the database schema's revision, and upgrading it."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from keyless.cli.server import server_options, settings_of

if TYPE_CHECKING:
    from keyless.config import Settings
    from keyless.index.admin import SchemaState


def define(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    upgrade = actions.add_parser(
        "upgrade", help="create or upgrade the schema to this keyless' revision (back up first)"
    )
    server_options(upgrade)
    upgrade.set_defaults(handler=lambda args: run_upgrade(args, settings_of(args)))
    current = actions.add_parser("current", help="show the schema's revision; changes nothing")
    server_options(current)
    current.set_defaults(handler=lambda args: run_current(args, settings_of(args)))


def upgrade_command(args: argparse.Namespace) -> str:
    """`keyless db upgrade` with the options that name the same database as `args` did."""
    words = ["keyless", "db", "upgrade"]
    for option, value in (
        ("--config", getattr(args, "config", None)),
        ("--data", getattr(args, "data", None)),
    ):
        if value:
            words += [option, str(value)]
    return shlex.join(words)


def run_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from keyless.index import admin

    before, after = admin.upgrade_schema(settings)
    now = ", ".join(after.current)
    if before.kind == "current":
        print(f"the schema is already at {now}, the revision this keyless needs")
    elif before.kind == "empty":
        print(f"a new database: created at schema revision {now}")
    else:
        was = ", ".join(before.current) or f"before migrations (baseline {admin.BASELINE})"
        print(f"schema upgraded: {was} -> {now}")
    return 0


def run_current(args: argparse.Namespace, settings: Settings) -> int:
    from keyless.index import admin

    if not settings.database_url and not Path(settings.database).exists():
        print(f"no database at {settings.database}: `{upgrade_command(args)}` creates one")
        return 1
    state = admin.schema_of(settings)
    print(describe(state, upgrade_command(args)))
    return 0 if state.kind == "current" else 1


def describe(state: SchemaState, upgrade: str) -> str:
    heads = ", ".join(state.heads)
    at = ", ".join(state.current)
    return {
        "current": f"{at} (the revision this keyless needs)",
        "behind": f"{at} (older than this keyless' {heads}: run `{upgrade}`)",
        "unknown": f"{at} (unknown to this keyless, whose schema is {heads}: a newer keyless "
        "upgraded it)",
        "before-migrations": f"none: made before keyless had migrations; `{upgrade}` (or "
        "starting the server) stamps it at the baseline",
        "empty": f"none: no keyless tables yet; `{upgrade}` (or starting the server) creates "
        f"them at {heads}",
    }[state.kind]
