"""`keyless publisher add|list|remove` and `keyless audit`: admin commands on the local data."""

from __future__ import annotations

import argparse
import json
from typing import Any

from keyless.cli.server import open_admin, server_options


def cmd_add(args: argparse.Namespace) -> int:
    from keyless.oidc.providers import PROVIDERS

    admin = open_admin(args)
    provider = PROVIDERS[args.kind]
    config = {
        field.name: value
        for field in provider.fields
        if (value := getattr(args, f"field_{field.name}", None)) not in (None, "")
    }
    if args.pending:
        result = admin.add_pending_publisher(
            args.index, args.pending, args.kind, config, owner=args.owner_user or None
        )
    else:
        result = admin.add_publisher(args.index, args.project or [], args.kind, config)
    if args.json:
        print(json.dumps(result))
    else:
        state = "pending publisher" if result["pending"] else "publisher"
        print(
            f"{state} {result['id']} added on {args.index!r} for "
            f"{', '.join(result['projects'])}: {result['summary']}"
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = open_admin(args).list_publishers(args.index, args.project)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        pending = " (pending)" if row["pending"] else ""
        print(f"{row['id']:>4}  {', '.join(row['projects']):<24} {row['summary']}{pending}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    open_admin(args).remove_publisher(args.index, args.id)
    print(f"publisher {args.id} removed; tokens minted from it no longer work")
    return 0


# What each kind of event shows on one line; everything is in `--json`.
AUDIT_FIELDS = {
    "file_upload": ("filename", "version"),
    "upload_session_create": ("version",),
    "upload_session_publish": ("version", "files"),
    "upload_session_cancel": ("version",),
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


def cmd_audit(args: argparse.Namespace) -> int:
    rows = open_admin(args).audit_trail(args.index, args.project, args.limit)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in reversed(rows):
        print(audit_line(row))
    return 0


def define_publisher(parser: argparse.ArgumentParser) -> None:
    """Give `publisher`'s parser its actions (add, list, remove) and their arguments."""
    # The providers' fields are the `add` options; imported here, when `keyless publisher`
    # runs, rather than at every start.
    from keyless.oidc.providers import PROVIDERS

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
        sub.set_defaults(handler=cmd_add)

    listing = publisher.add_parser("list", help="list publishers of an index or project")
    server_options(listing)
    listing.add_argument("--index", required=True)
    listing.add_argument("--project")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)

    remove = publisher.add_parser("remove", help="remove a publisher (its tokens stop working)")
    server_options(remove)
    remove.add_argument("--index", required=True)
    remove.add_argument("id", type=int)
    remove.set_defaults(handler=cmd_remove)


def define_audit(parser: argparse.ArgumentParser) -> None:
    """Give `audit`'s parser its arguments."""
    server_options(parser)
    parser.add_argument("--index", required=True)
    parser.add_argument("project", nargs="?")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=cmd_audit)
