"""`keyless user|token|index|role|gc`: admin commands on the server's own data.

Each calls one use case of `index.admin.Admin` with the names the person typed (see
cli/server.py for the options and settings they share) and prints what it did.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import timedelta

from keyless.cli.server import open_admin, server_options

ROLE_HELP = "project roles"


def _read_password(args: argparse.Namespace) -> str:
    import getpass

    from keyless.config import ConfigError

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("KEYLESS_PASSWORD"):
        return os.environ["KEYLESS_PASSWORD"]
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ConfigError("the two passwords differ.")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    open_admin(args).add_user(args.username, _read_password(args), is_admin=args.admin)
    print(f"user {args.username!r} added")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    open_admin(args).set_password(args.username, _read_password(args))
    print(f"password of {args.username!r} set")
    return 0


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `15m`, `3600s` -> timedelta."""
    from keyless.config import ConfigError

    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise ConfigError(f"expiry {text!r} is not a duration; write e.g. 30d, 12h or 15m.")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def cmd_token_create(args: argparse.Namespace) -> int:
    token = open_admin(args).create_token(
        args.user,
        args.index,
        projects=args.project or None,
        expires_in=parse_duration(args.expires) if args.expires else None,
        description=args.description or "",
    )
    if args.json:
        expires = token.expires.isoformat() if token.expires else None  # JSON null: never
        print(json.dumps({"id": token.id, "token": token.token, "expires": expires}))
        return 0
    print(f"token {token.id} for {args.user!r} on index {args.index!r}", file=sys.stderr)
    if args.project:
        print(f"limited to projects: {', '.join(args.project)}", file=sys.stderr)
    print(f"expires: {token.expires or 'never'}", file=sys.stderr)
    print("this is the only time it is shown; store it now:", file=sys.stderr)
    print(token.token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    rows = open_admin(args).list_tokens(args.user)
    if args.json:
        print(json.dumps(rows, default=_json_time, indent=2))
        return 0
    for row in rows:
        state = row["state"]
        scope = ",".join(row["projects"]) if row["projects"] else "*"  # type: ignore[arg-type]
        print(
            f"{row['id']:>4}  {row['username']:<16} {row['index']:<8} {scope:<24} "
            f"{state:<8} expires={row['expires'] or 'never'}  {row['description']}"
        )
    return 0


def _json_time(value: object) -> str:
    """A datetime in `--json` output: ISO 8601 in UTC, as scripts parse it."""
    from datetime import datetime

    from keyless.index.accounts import as_utc

    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def cmd_token_revoke(args: argparse.Namespace) -> int:
    open_admin(args).revoke_token(args.id)
    print(f"token {args.id} revoked")
    return 0


def cmd_index_create(args: argparse.Namespace) -> int:
    info = open_admin(args).create_index(args.name, args.profile)
    print(f"index {info.name!r} created (profile {info.profile})")
    return 0


def cmd_index_list(args: argparse.Namespace) -> int:
    for info in open_admin(args).list_indexes():
        closing = info.close_releases_after
        print(
            f"{info.name:<12} profile={info.profile:<8} max-file-size={info.max_file_size} "
            f"max-project-size={info.max_project_size} "
            f"close-releases-after={'never' if closing is None else f'{closing}s'} "
            f"close-session-releases={'yes' if info.close_session_releases else 'no'}"
        )
    return 0


def cmd_role_add(args: argparse.Namespace) -> int:
    open_admin(args).add_role(args.index, args.project, args.username, args.role)
    print(f"{args.username!r} is now {args.role} of {args.project!r} on {args.index!r}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    removed = open_admin(args).collect_garbage(args.min_age)
    print(f"removed {removed} orphaned file(s)")
    return 0


def define_user(parser: argparse.ArgumentParser) -> None:
    user = parser.add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="add a user")
    server_options(add)
    add.add_argument("username")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=cmd_user_add)
    passwd = user.add_parser("passwd", help="set a user's password (e.g. one moved in from devpi)")
    server_options(passwd)
    passwd.add_argument("username")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    passwd.set_defaults(handler=cmd_user_passwd)


def define_token(parser: argparse.ArgumentParser) -> None:
    token = parser.add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create an API token (printed once)")
    server_options(create)
    create.add_argument("--user", required=True)
    create.add_argument("--index", required=True)
    create.add_argument("--project", action="append", help="limit to this project (repeatable)")
    create.add_argument("--expires", help="lifetime, e.g. 30d, 12h")
    create.add_argument("--description")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=cmd_token_create)
    listing = token.add_parser("list", help="list tokens (never their secrets)")
    server_options(listing)
    listing.add_argument("--user")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_token_list)
    revoke = token.add_parser("revoke", help="revoke a token by id")
    server_options(revoke)
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=cmd_token_revoke)


def define_index(parser: argparse.ArgumentParser) -> None:
    index = parser.add_subparsers(dest="action", required=True)
    icreate = index.add_parser("create", help="create an index")
    server_options(icreate)
    icreate.add_argument("name")
    icreate.add_argument("--profile", default="pypi", choices=["pypi", "private"])
    icreate.set_defaults(handler=cmd_index_create)
    ilist = index.add_parser("list", help="list indexes")
    server_options(ilist)
    ilist.set_defaults(handler=cmd_index_list)


def define_role(parser: argparse.ArgumentParser) -> None:
    role = parser.add_subparsers(dest="action", required=True)
    radd = role.add_parser("add", help="give a user a role on a project")
    server_options(radd)
    radd.add_argument("project")
    radd.add_argument("username")
    radd.add_argument("--index", required=True)
    radd.add_argument("--role", default="maintainer", choices=["owner", "maintainer"])
    radd.set_defaults(handler=cmd_role_add)


def define_gc(gc: argparse.ArgumentParser) -> None:
    server_options(gc)
    gc.add_argument(
        "--min-age",
        type=float,
        default=3600,
        help="remove upload temp files untouched for this many seconds (default 3600); "
        "blobs no file refers to go at once",
    )
    gc.set_defaults(handler=cmd_gc)
