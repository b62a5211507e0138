"""`keyless publisher add|list|remove` and `keyless audit`: admin commands on the local data."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyless.config import Settings

Opener = Callable[[argparse.Namespace], Any]


def _index_id(engine: Any, name: str) -> int:
    from keyless.index.accounts import index_id
    from keyless.store import db

    with db.reading(engine) as conn:
        return index_id(conn, name)


def _user_id(engine: Any, name: str | None) -> int | None:
    if not name:
        return None
    from keyless.index.accounts import user_id
    from keyless.store import db

    with db.reading(engine) as conn:
        return user_id(conn, name)


def cmd_add(
    args: argparse.Namespace,
    open_engine: Opener,
    settings_of: Callable[[argparse.Namespace], Settings],
) -> int:
    from keyless.index import publishers
    from keyless.oidc.providers import PROVIDERS

    engine = open_engine(args)
    settings = settings_of(args)
    provider = PROVIDERS[args.kind]
    config = {
        field.name: value
        for field in provider.fields
        if (value := getattr(args, f"field_{field.name}", None)) not in (None, "")
    }
    index_id = _index_id(engine, args.index)
    if args.pending:
        owner = _user_id(engine, args.owner_user)
        actor = publishers.Actor(username=args.owner_user or "admin", user_id=owner)
        result = publishers.add_pending_publisher(
            engine, settings.trusted_publishing, index_id, args.pending, args.kind, config, actor
        )
    else:
        actor = publishers.Actor(username="admin", user_id=None)
        result = publishers.add_publisher(
            engine,
            settings.trusted_publishing,
            index_id,
            args.project or [],
            args.kind,
            config,
            actor,
        )
    if args.json:
        print(json.dumps(result))
    else:
        state = "pending publisher" if result["pending"] else "publisher"
        print(
            f"{state} {result['id']} added on {args.index!r} for "
            f"{', '.join(result['projects'])}: {result['summary']}"
        )
    return 0


def cmd_list(args: argparse.Namespace, open_engine: Opener) -> int:
    from keyless.index.publishers import list_publishers

    engine = open_engine(args)
    rows = list_publishers(engine, _index_id(engine, args.index), args.project)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        pending = " (pending)" if row["pending"] else ""
        print(f"{row['id']:>4}  {', '.join(row['projects']):<24} {row['summary']}{pending}")
    return 0


def cmd_remove(args: argparse.Namespace, open_engine: Opener) -> int:
    from keyless.index import publishers

    engine = open_engine(args)
    publishers.remove_publisher(
        engine,
        _index_id(engine, args.index),
        args.id,
        publishers.Actor(username="admin", user_id=None),
    )
    print(f"publisher {args.id} removed; tokens minted from it no longer work")
    return 0


# What each kind of event shows on one line; everything is in `--json`.
AUDIT_FIELDS = {
    "file_upload": ("filename", "version"),
    "mint_token": ("repository", "ref", "environment", "commit_url", "run_url", "client_ip"),
    "add_publisher": ("publisher",),
    "add_pending_publisher": ("publisher",),
    "remove_publisher": ("publisher",),
    "yank_release": ("version", "reason"),
    "unyank_release": ("version",),
    "set_status": ("status", "reason"),
}


def audit_line(row: dict[str, Any]) -> str:
    """One event as a line: time, project, action, who, and the details that matter for it."""
    details = row["details"] or {}
    keys = AUDIT_FIELDS.get(row["action"], tuple(details))
    shown = " ".join(f"{key}={details[key]}" for key in keys if details.get(key))
    actor = row["actor"]
    if details.get("trusted_publishers"):
        ids = ",".join(str(p["id"]) for p in details["trusted_publishers"])
        actor = f"trusted publisher #{ids}"
    elif row["action"] == "mint_token":
        actor = f"trusted publisher #{','.join(map(str, details.get('publisher_ids', [])))}"
    return (
        f"{row['time'][:19]}  {row['project'] or '-':<18} {row['action']:<16} {actor:<22} {shown}"
    )


def cmd_audit(args: argparse.Namespace, open_engine: Opener) -> int:
    from keyless.index.publishers import audit_trail

    engine = open_engine(args)
    rows = audit_trail(engine, _index_id(engine, args.index), args.project, args.limit)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in reversed(rows):
        print(audit_line(row))
    return 0


# Their lines in `keyless --help`; their arguments are defined only when they run (main.py).
PUBLISHER_HELP = "trusted publishers (who may publish without a token)"
AUDIT_HELP = "the audit trail: uploads, mints, changes"


def register(
    commands: Any,
    server_options: Callable[[argparse.ArgumentParser], None],
    open_engine: Opener,
) -> None:
    """Add `publisher` and `audit` to the main parser's subcommands."""
    define_publisher(
        commands.add_parser("publisher", help=PUBLISHER_HELP), server_options, open_engine
    )
    define_audit(commands.add_parser("audit", help=AUDIT_HELP), server_options, open_engine)


def define_publisher(
    parser: argparse.ArgumentParser,
    server_options: Callable[[argparse.ArgumentParser], None],
    open_engine: Opener,
) -> None:
    """Give `publisher`'s parser its actions (add, list, remove) and their arguments."""
    # The providers' fields are the `add` options; imported here, when `keyless publisher`
    # runs, rather than at every start.
    from keyless.oidc.providers import PROVIDERS

    def settings_of(args: argparse.Namespace) -> Settings:
        from keyless.config import load_settings

        # As the server runs (config.load_settings): it is the server that will trust or
        # refuse the publisher's tokens.
        return load_settings(
            args.config,
            overrides={"data": args.data} if args.data else None,
            as_the_server_runs=True,
        )

    publisher = parser.add_subparsers(dest="action", required=True)

    add = publisher.add_parser("add", help="register a trusted publisher")
    add.add_argument("--index", required=True)
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--project", action="append", help="link to this project (repeatable)")
    target.add_argument(
        "--pending", metavar="PROJECT", help="for a project that does not exist yet"
    )
    add.add_argument("--owner-user", help="with --pending: the user who will own the project")
    add.add_argument("--json", action="store_true")
    kinds = add.add_subparsers(dest="kind", required=True)
    for kind, provider in PROVIDERS.items():
        sub = kinds.add_parser(kind, help=provider.title)
        server_options(sub)
        for field in provider.fields:
            sub.add_argument(
                f"--{field.name.replace('_', '-')}",
                dest=f"field_{field.name}",
                required=bool(field.required),
                help=field.help,
            )
        sub.set_defaults(handler=lambda a: cmd_add(a, open_engine, settings_of))

    listing = publisher.add_parser("list", help="list publishers of an index or project")
    server_options(listing)
    listing.add_argument("--index", required=True)
    listing.add_argument("--project")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=lambda a: cmd_list(a, open_engine))

    remove = publisher.add_parser("remove", help="remove a publisher (its tokens stop working)")
    server_options(remove)
    remove.add_argument("--index", required=True)
    remove.add_argument("id", type=int)
    remove.set_defaults(handler=lambda a: cmd_remove(a, open_engine))


def define_audit(
    parser: argparse.ArgumentParser,
    server_options: Callable[[argparse.ArgumentParser], None],
    open_engine: Opener,
) -> None:
    """Give `audit`'s parser its arguments."""
    server_options(parser)
    parser.add_argument("--index", required=True)
    parser.add_argument("project", nargs="?")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=lambda a: cmd_audit(a, open_engine))
