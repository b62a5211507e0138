"""`keyless serve`: run the index server, and print how clients use each of its indexes."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from keyless.cli import devcert
from keyless.cli.server import server_options, settings_of

if TYPE_CHECKING:
    from keyless.config import Settings


def define(serve: argparse.ArgumentParser) -> None:
    server_options(serve)
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
    serve.set_defaults(handler=run)


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


def run(args: argparse.Namespace) -> int:
    import logging

    from keyless.config import record_settings
    from keyless.index.app import create_app
    from keyless.index.server import serve

    settings = settings_of(args, serving=True)
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
    record_settings(settings)  # for the admin commands on this data (see server.settings_of)
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
