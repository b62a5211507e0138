"""What the commands on a server's own data share: the options that name that data, the
settings they run with, and the admin use cases on it (index/admin.py).

`keyless serve` and the admin commands (user, token, index, role, publisher, audit, gc, db,
fsck, static, export, import) run on the machine that holds the data; nothing here talks HTTP.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyless.config import Settings
    from keyless.index.admin import Admin


def settings_of(args: argparse.Namespace, *, serving: bool = False) -> Settings:
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


def open_admin(args: argparse.Namespace) -> Admin:
    """The admin commands' use cases on the data these arguments name (index/admin.py)."""
    from keyless.index.admin import Admin

    return Admin.open(settings_of(args))


def server_options(parser: argparse.ArgumentParser) -> None:
    """The options that name the server's data: its config file, folder and database."""
    parser.add_argument("--config", type=Path, help="TOML config file (also KEYLESS_CONFIG)")
    parser.add_argument("--data", help="data folder (default ./keyless-data; KEYLESS_DATA)")
    parser.add_argument(
        "--database-url",
        help="postgresql+psycopg://USER:PASSWORD@HOST/DB (default: DATA/keyless.db, SQLite; "
        "KEYLESS_DATABASE_URL)",
    )
