"""`keyless` command line: a thin shell that parses arguments and calls the library."""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

# Start-up time: `keyless` imports and defines only the parser of the command it runs (see
# build_parser), and the command modules import what their commands use (the server, the
# release client, cryptography, ...) in their handlers, so `keyless publish` does not pay for
# `keyless serve` or `keyless check` (tests/test_cli_imports.py).
import keyless
from keyless.cli.argv import in_place as argv_in_place

Handler = Callable[[argparse.Namespace], int]

# The top-level modules of pyproject's `server` extra: the release client installs without
# them, and a server command run there says which extra to install instead of a traceback.
SERVER_LIBRARIES = frozenset(
    {"starlette", "uvicorn", "multipart", "python_multipart", "sqlalchemy", "argon2", "jinja2"}
    | {"cryptography", "jwt", "alembic", "mako", "boto3", "botocore"}
)


# `keyless`'s commands in `keyless --help` order: name, its line in `keyless --help`, and where
# the function that defines the rest of its parser (description, arguments, actions, handler)
# lives. The lines are here, not in the command modules, so that `keyless --help` and any one
# command import only the module of the command they run (the other 16 modules cost ~10
# million instructions of `keyless publish`'s start-up, callgrind).
_TABLE: tuple[tuple[str, str, str], ...] = (
    ("serve", "run the index server", "serve:define"),
    ("user", "manage users", "admin:define_user"),
    ("token", "manage API tokens", "admin:define_token"),
    ("index", "manage indexes", "admin:define_index"),
    ("role", "project roles", "admin:define_role"),
    ("yank", "yank a release (owners; needs KEYLESS_TOKEN)", "owners:define_yank"),
    ("unyank", "undo a yank (owners; needs KEYLESS_TOKEN)", "owners:define_unyank"),
    ("project", "project status", "owners:define_project"),
    (
        "publisher",
        "trusted publishers (who may publish without a token)",
        "publishing:define_publisher",
    ),
    ("audit", "the audit trail: uploads, mints, changes", "publishing:define_audit"),
    (
        "dev-cert",
        "make a local CA and an https certificate for 127.0.0.1/localhost",
        "devcert:define",
    ),
    (
        "ci-emulator",
        "a LOCAL OIDC issuer: run commands as GitHub/GitLab CI jobs to rehearse releases",
        "emulator:define",
    ),
    (
        "publish",
        "upload distributions (Trusted Publishing in CI, else an API token)",
        "publish:define",
    ),
    (
        "check",
        "check distributions as an index would, before uploading (stricter than twine)",
        "check:define",
    ),
    (
        "doctor",
        "preflight: can this CI job publish? what publisher must the index know?",
        "doctor:define",
    ),
    (
        "init",
        "write a release workflow (GitHub Actions or GitLab CI) with Trusted Publishing",
        "init:define",
    ),
    (
        "release",
        "staged release: build, check, publish to staging, install-test, promote to prod",
        "release:define",
    ),
    ("gc", "remove orphaned blobs and temp files", "admin:define_gc"),
    ("db", "the database schema: upgrade it, or show its revision", "db:define"),
    (
        "fsck",
        "check that the blob store holds the bytes the database lists (--repair: fix)",
        "fsck:define",
    ),
    (
        "mirror",
        "an index's cache of its upstream: warm (fetch ahead), prune (forget unused files)",
        "mirror:define",
    ),
    (
        "static",
        "the static copy of the read path that nginx or a bucket serves ([static])",
        "static:define",
    ),
    (
        "export",
        "write the whole server (rows and files) to one archive: backup, or moving",
        "transfer:define_export",
    ),
    ("import", "load an export archive into an empty server", "transfer:define_import"),
)


def _definer(where: str) -> Callable[[argparse.ArgumentParser], None]:
    """The function at `where` ("module:function" under keyless.cli), its module imported only
    when it is called."""
    module, _, function = where.partition(":")

    def define(parser: argparse.ArgumentParser) -> None:
        define_it: Callable[[argparse.ArgumentParser], None] = getattr(
            importlib.import_module(f"keyless.cli.{module}"), function
        )
        define_it(parser)

    return define


COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = tuple(
    (name, text, _definer(where)) for name, text, where in _TABLE
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
    """Run the command `argv` names (by default this process' own command line: `keyless`'s
    entry point and `python -m keyless`, which exit as soon as it returns)."""
    program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    _skip_httpx_command_line()
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv_in_place(parser, argv))
    args.argv = argv  # what `serve --workers N` starts each worker with
    handler: Handler = args.handler
    try:
        status = handler(args)
        if program:
            _exit_without_collecting()
        return status
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
            from keyless.cli.db import upgrade_command

            print(f"error: {exc.explain(upgrade_command(args))}", file=sys.stderr)
            return 1
        raise


def _exit_without_collecting() -> None:
    """Spare the interpreter's last garbage collection: the process is about to exit.

    At exit the interpreter clears every module and collects what that leaves in reference
    cycles: every function, class and module dictionary of the libraries a command imported.
    For `keyless publish` that took 50-80 ms after its work was done (its whole start-up is
    ~0.2 s). Frozen objects are left out of every collection, so the memory goes back to the
    system with the process instead. Only for the program itself, never a caller's process
    (tests call `main(argv)`): objects created from here on are collected as usual, but the
    frozen ones never are.
    """
    gc.freeze()


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
