"""`keyless` command line: a thin shell that parses arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Start-up time: `keyless` defines only the parser of the command it runs (see build_parser),
# and the command modules import what their commands use (the server, the release client,
# cryptography, ...) in their handlers, so `keyless publish` does not pay for `keyless serve`
# or `keyless check` (tests/test_cli_imports.py).
import keyless
from keyless.cli import check as check_cmd
from keyless.cli import db as db_cmd
from keyless.cli import devcert, emulator, publishing, transfer
from keyless.cli import doctor as doctor_cmd
from keyless.cli import fsck as fsck_cmd
from keyless.cli import init as init_cmd
from keyless.cli import publish as publish_cmd
from keyless.cli import release as release_cmd
from keyless.cli import static as static_cmd
from keyless.cli.argv import in_place as argv_in_place

if TYPE_CHECKING:
    from keyless.config import Settings
    from keyless.index.admin import Admin

Handler = Callable[[argparse.Namespace], int]

# The top-level modules of pyproject's `server` extra: the release client installs without
# them, and a server command run there says which extra to install instead of a traceback.
SERVER_LIBRARIES = frozenset(
    {"starlette", "uvicorn", "multipart", "python_multipart", "sqlalchemy", "argon2", "jinja2"}
    | {"cryptography", "jwt", "alembic", "mako", "boto3", "botocore"}
)


def _settings(args: argparse.Namespace, *, serving: bool = False) -> Settings:
    """The settings a command runs with. The admin commands (all but `serve`) read first the
    settings the server last started with on the same data folder, so they agree with it
    whatever shell or flags started it (config.load_settings).
    """
    from keyless.config import load_settings

    overrides = {
        "data": getattr(args, "data", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "tls-cert": getattr(args, "tls_cert", None),
        "tls-key": getattr(args, "tls_key", None),
        "indexes": getattr(args, "indexes", None),
        "public-url": getattr(args, "public_url", None),
        "workers": getattr(args, "workers", None),
        "blobs": getattr(args, "blobs", None),
        "static-folder": getattr(args, "static_folder", None),
        "database-url": getattr(args, "database_url", None),
    }
    return load_settings(
        args.config,
        overrides={k: v for k, v in overrides.items() if v},
        as_the_server_runs=not serving,
    )


def _admin(args: argparse.Namespace) -> Admin:
    """The admin commands' use cases on the data these arguments name (index/admin.py)."""
    from keyless.index.admin import Admin

    return Admin.open(_settings(args))


def usage_lines(settings: Settings, index: str) -> list[str]:
    """The exact client commands for one index of this server."""
    import shlex

    base = settings.base_url
    # A certificate made by `keyless dev-cert` has its CA beside it; the clients must be told
    # to trust that CA, so the commands carry it.
    beside = settings.tls_cert.parent / devcert.CA_FILE if settings.tls_cert else None
    ca = shlex.quote(str(beside.resolve())) if beside and beside.is_file() else None
    return devcert.client_lines(
        f"{base}/{index}/simple/", f"{base}/{index}/legacy/", f"keyless-{index}", ca
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from keyless.config import record_settings
    from keyless.index.app import create_app
    from keyless.index.server import serve

    settings = _settings(args, serving=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("keyless.access").disabled = not settings.access_log
    if args.listen_fd is not None:  # one of the workers `--workers N` started
        from keyless.index.supervisor import die_with_supervisor

        die_with_supervisor()
        serve(create_app(settings), settings, listen_fd=args.listen_fd)
        return 0
    # Built here even when workers will serve: whatever stops a start (settings, schema,
    # store) is said once, before any worker, and start-up's one-off work is done once.
    app = create_app(settings)
    record_settings(settings)  # for the admin commands on this data (see _settings)
    print(f"keyless index serving {settings.data_dir.resolve()} at {settings.base_url}/")
    for index in settings.indexes:
        print(f"\nindex '{index.name}' (profile {index.profile}):")
        print("\n".join(usage_lines(settings, index.name)))
    if settings.scheme == "http":
        print(
            "\nnote: plain http. Trusted Publishing clients require https: "
            "pass --tls-cert and --tls-key."
        )
    print(f"\nhealth check: {settings.base_url}/_/health", flush=True)
    if settings.workers > 1:
        from keyless.index.supervisor import supervise

        del app  # each worker builds its own
        print(f"{settings.workers} worker processes", flush=True)
        return supervise(args.argv, settings.host, settings.port, settings.workers)
    serve(app, settings)
    return 0


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
    _admin(args).add_user(args.username, _read_password(args), is_admin=args.admin)
    print(f"user {args.username!r} added")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    _admin(args).set_password(args.username, _read_password(args))
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
    token = _admin(args).create_token(
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
    rows = _admin(args).list_tokens(args.user)
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
    _admin(args).revoke_token(args.id)
    print(f"token {args.id} revoked")
    return 0


def cmd_index_create(args: argparse.Namespace) -> int:
    info = _admin(args).create_index(args.name, args.profile)
    print(f"index {info.name!r} created (profile {info.profile})")
    return 0


def cmd_index_list(args: argparse.Namespace) -> int:
    for info in _admin(args).list_indexes():
        print(
            f"{info.name:<12} profile={info.profile:<8} max-file-size={info.max_file_size} "
            f"max-project-size={info.max_project_size}"
        )
    return 0


def cmd_role_add(args: argparse.Namespace) -> int:
    _admin(args).add_role(args.index, args.project, args.username, args.role)
    print(f"{args.username!r} is now {args.role} of {args.project!r} on {args.index!r}")
    return 0


def _remote(args: argparse.Namespace, path: str, body: dict[str, Any]) -> int:
    import ssl

    import httpx

    from keyless.config import ConfigError

    token = os.environ.get("KEYLESS_TOKEN", "")
    if not token:
        raise ConfigError("set KEYLESS_TOKEN to an API token of a project owner.")
    base, index = args.url.rstrip("/"), args.index
    if args.repository_url:
        # The upload URL a release already uses names both: https://host/{index}/legacy/.
        match = re.fullmatch(
            r"(?P<base>https?://.+?)/(?P<index>[^/]+)/legacy/?", args.repository_url
        )
        if not match:
            raise ConfigError(
                f"--repository-url {args.repository_url!r} is not a keyless upload URL "
                "(https://HOST/INDEX/legacy/)."
            )
        base, index = match["base"], match["index"]
    url = f"{base}/{index}/api/projects/{path}"
    verify: Any = ssl.create_default_context(cafile=args.cert) if args.cert else True
    response = httpx.post(
        url,
        json=body,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        verify=verify,
    )
    if response.status_code != 200:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        print(f"error: {response.status_code} {message}", file=sys.stderr)
        return 1
    print(json.dumps(response.json()))
    return 0


def cmd_yank(args: argparse.Namespace) -> int:
    return _remote(
        args, f"{args.project}/releases/{args.version}/yank", {"reason": args.reason or ""}
    )


def cmd_unyank(args: argparse.Namespace) -> int:
    return _remote(args, f"{args.project}/releases/{args.version}/unyank", {})


def cmd_project_status(args: argparse.Namespace) -> int:
    return _remote(
        args, f"{args.project}/status", {"status": args.status, "reason": args.reason or ""}
    )


def cmd_gc(args: argparse.Namespace) -> int:
    removed = _admin(args).collect_garbage(args.min_age)
    print(f"removed {removed} orphaned file(s)")
    return 0


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (also KEYLESS_CONFIG)")
    parser.add_argument("--data", help="data folder (default ./keyless-data; KEYLESS_DATA)")
    parser.add_argument(
        "--database-url",
        help="postgresql+psycopg://USER:PASSWORD@HOST/DB (default: DATA/keyless.db, SQLite; "
        "KEYLESS_DATABASE_URL)",
    )


def _remote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("KEYLESS_URL", "http://127.0.0.1:8000"),
        help="server URL (KEYLESS_URL)",
    )
    parser.add_argument(
        "--index",
        default=os.environ.get("KEYLESS_INDEX", "prod"),
        help="index name (KEYLESS_INDEX)",
    )
    parser.add_argument(
        "--repository-url",
        default=os.environ.get("KEYLESS_REPOSITORY_URL"),
        help="the index's upload URL instead of --url/--index (KEYLESS_REPOSITORY_URL)",
    )
    parser.add_argument("--cert", help="CA bundle to trust (e.g. keyless dev-cert's ca.pem)")


def _define_serve(serve: argparse.ArgumentParser) -> None:
    _server_options(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--tls-cert", help="PEM certificate for https")
    serve.add_argument("--tls-key", help="PEM private key for https")
    serve.add_argument("--indexes", help="indexes to create, e.g. 'test,prod:private'")
    serve.add_argument("--public-url", help="the URL clients use, when behind a proxy")
    serve.add_argument(
        "--workers",
        help="server processes sharing the address, restarted if one dies (KEYLESS_WORKERS; "
        "default 1)",
    )
    # Internal: a worker started by `--workers N` serves the socket its supervisor bound.
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument(
        "--blobs", help="keep files in s3://BUCKET/PREFIX (default: DATA/blobs; KEYLESS_BLOBS)"
    )
    serve.add_argument(
        "--static-folder",
        help="keep a static copy of the read path there for nginx (KEYLESS_STATIC_FOLDER)",
    )
    serve.set_defaults(handler=cmd_serve)


def _define_user(parser: argparse.ArgumentParser) -> None:
    user = parser.add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="add a user")
    _server_options(add)
    add.add_argument("username")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=cmd_user_add)
    passwd = user.add_parser("passwd", help="set a user's password (e.g. one moved in from devpi)")
    _server_options(passwd)
    passwd.add_argument("username")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    passwd.set_defaults(handler=cmd_user_passwd)


def _define_token(parser: argparse.ArgumentParser) -> None:
    token = parser.add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create an API token (printed once)")
    _server_options(create)
    create.add_argument("--user", required=True)
    create.add_argument("--index", required=True)
    create.add_argument("--project", action="append", help="limit to this project (repeatable)")
    create.add_argument("--expires", help="lifetime, e.g. 30d, 12h")
    create.add_argument("--description")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=cmd_token_create)
    listing = token.add_parser("list", help="list tokens (never their secrets)")
    _server_options(listing)
    listing.add_argument("--user")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_token_list)
    revoke = token.add_parser("revoke", help="revoke a token by id")
    _server_options(revoke)
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=cmd_token_revoke)


def _define_index(parser: argparse.ArgumentParser) -> None:
    index = parser.add_subparsers(dest="action", required=True)
    icreate = index.add_parser("create", help="create an index")
    _server_options(icreate)
    icreate.add_argument("name")
    icreate.add_argument("--profile", default="pypi", choices=["pypi", "private"])
    icreate.set_defaults(handler=cmd_index_create)
    ilist = index.add_parser("list", help="list indexes")
    _server_options(ilist)
    ilist.set_defaults(handler=cmd_index_list)


def _define_role(parser: argparse.ArgumentParser) -> None:
    role = parser.add_subparsers(dest="action", required=True)
    radd = role.add_parser("add", help="give a user a role on a project")
    _server_options(radd)
    radd.add_argument("project")
    radd.add_argument("username")
    radd.add_argument("--index", required=True)
    radd.add_argument("--role", default="maintainer", choices=["owner", "maintainer"])
    radd.set_defaults(handler=cmd_role_add)


def _define_yank(sub: argparse.ArgumentParser, handler: Handler, *, reason: bool) -> None:
    _remote_options(sub)
    sub.add_argument("project")
    sub.add_argument("version")
    if reason:
        sub.add_argument("--reason", default="")
    sub.set_defaults(handler=handler)


def _define_project(parser: argparse.ArgumentParser) -> None:
    project = parser.add_subparsers(dest="action", required=True)
    status = project.add_parser(
        "status", help="set active, archived or quarantined (owners; KEYLESS_TOKEN)"
    )
    _remote_options(status)
    status.add_argument("project")
    status.add_argument("status", choices=["active", "archived", "quarantined"])
    status.add_argument("--reason", default="")
    status.set_defaults(handler=cmd_project_status)


def _define_gc(gc: argparse.ArgumentParser) -> None:
    _server_options(gc)
    gc.add_argument(
        "--min-age",
        type=float,
        default=3600,
        help="remove upload temp files untouched for this many seconds (default 3600); "
        "blobs no file refers to go at once",
    )
    gc.set_defaults(handler=cmd_gc)


# `keyless`'s commands in `keyless --help` order: name, one-line help, and what defines the
# rest of its parser (description, arguments, actions, handler).
COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("serve", "run the index server", _define_serve),
    ("user", "manage users", _define_user),
    ("token", "manage API tokens", _define_token),
    ("index", "manage indexes", _define_index),
    ("role", "project roles", _define_role),
    (
        "yank",
        "yank a release (owners; needs KEYLESS_TOKEN)",
        lambda sub: _define_yank(sub, cmd_yank, reason=True),
    ),
    (
        "unyank",
        "undo a yank (owners; needs KEYLESS_TOKEN)",
        lambda sub: _define_yank(sub, cmd_unyank, reason=False),
    ),
    ("project", "project status", _define_project),
    (
        "publisher",
        publishing.PUBLISHER_HELP,
        lambda sub: publishing.define_publisher(sub, _server_options, _admin),
    ),
    (
        "audit",
        publishing.AUDIT_HELP,
        lambda sub: publishing.define_audit(sub, _server_options, _admin),
    ),
    ("dev-cert", devcert.HELP, devcert.define),
    ("ci-emulator", emulator.HELP, emulator.define),
    ("publish", publish_cmd.HELP, publish_cmd.define),
    ("check", check_cmd.HELP, check_cmd.define),
    ("doctor", doctor_cmd.HELP, doctor_cmd.define),
    ("init", init_cmd.HELP, init_cmd.define),
    ("release", release_cmd.HELP, release_cmd.define),
    ("gc", "remove orphaned blobs and temp files", _define_gc),
    ("db", db_cmd.HELP, lambda sub: db_cmd.define(sub, _server_options, _settings)),
    ("fsck", fsck_cmd.HELP, lambda sub: fsck_cmd.define(sub, _server_options, _settings)),
    ("static", static_cmd.HELP, lambda sub: static_cmd.define(sub, _server_options, _settings)),
    (
        "export",
        transfer.EXPORT_HELP,
        lambda sub: transfer.define_export(sub, _server_options, _settings),
    ),
    (
        "import",
        transfer.IMPORT_HELP,
        lambda sub: transfer.define_import(sub, _server_options, _settings),
    ),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """`keyless`'s parser: every command in full, or with `command`, only that one.

    The other commands then have just their name and one-line help, all that `keyless --help`
    shows of them: defining every parser (~40 of them, ~280 arguments) took most of the
    start-up time of any one command.
    """
    parser = argparse.ArgumentParser(
        prog="keyless",
        description="A self-hosted Python package index with Trusted Publishing built in.",
    )
    # What a CI log shows of the client a job installed (see keyless.publish.client_source).
    parser.add_argument("--version", action="version", version=f"keyless {keyless.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text, define in COMMANDS:
        sub = commands.add_parser(name, help=text)
        if command is None or command == name:
            define(sub)
    return parser


def command_of(argv: Sequence[str]) -> str:
    """The command `argv` runs: its first word that names one (options of the command may
    come before it, e.g. `keyless --data D token list`), or "" when none does.
    """
    names = {name for name, _, _ in COMMANDS}
    return next((word for word in argv if word in names), "")


def _index_errors() -> tuple[type[Exception], ...]:
    """The server's use-case errors, if its modules are loaded: an exception of a class exists
    only once its module is imported, and importing the server (SQLAlchemy) to classify an
    error of, say, `keyless publish` would cost more than the command itself.
    """
    errors = (
        ("keyless.index.accounts", "AccountError"),
        ("keyless.index.projects", "ProjectError"),
    )
    return tuple(
        getattr(sys.modules[module], name) for module, name in errors if module in sys.modules
    )


def _loaded_class(module: str, name: str) -> Any:
    """`module.name` if that module is loaded (see _index_errors), else None."""
    return getattr(sys.modules[module], name) if module in sys.modules else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _skip_httpx_command_line()
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv_in_place(parser, argv))
    args.argv = argv  # what `serve --workers N` starts each worker with
    handler: Handler = args.handler
    try:
        return handler(args)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in SERVER_LIBRARIES:
            raise
        print(
            f"error: `keyless {command_of(argv)}` needs the index server's libraries, which this "
            f"install lacks (no module {exc.name!r}): pip install 'keyless[server]'",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # a use-case error: show its message, not a traceback
        from keyless.config import ConfigError
        from keyless.oidc.errors import PublisherConfigError

        if isinstance(exc, ConfigError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, PublisherConfigError):
            for field, problem in exc.errors.items():
                print(f"error: --{field.replace('_', '-')}: {problem}", file=sys.stderr)
            return 2
        if isinstance(exc, _index_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        schema_out_of_date = _loaded_class("keyless.store.migrations", "SchemaOutOfDate")
        if schema_out_of_date is not None and isinstance(exc, schema_out_of_date):
            # One line with the exact command for this data folder / config file.
            print(f"error: {exc.explain(db_cmd.upgrade_command(args))}", file=sys.stderr)
            return 1
        raise


def _skip_httpx_command_line() -> None:
    """Keep httpx from importing its own command line tool on start-up.

    `import httpx` also imports `httpx._main` (click, rich, pygments: ~45 ms of the ~100 ms
    httpx costs here) whenever those are installed; keyless never runs httpx's command line.
    A None entry in sys.modules makes just that import fail with ImportError, the case httpx
    handles itself (it is what happens when they are not installed).
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
