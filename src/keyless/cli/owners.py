"""`keyless yank|unyank|project status`: what a project's owners change on a running index.

Unlike the admin commands (cli/admin.py), these work from anywhere: they call the index's
owners' API over HTTP with an API token of an owner (KEYLESS_TOKEN).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keyless.publish.errors import PublishError

if TYPE_CHECKING:
    from keyless.publish.indexclient import OwnersClient


def _remote(args: argparse.Namespace, call: Callable[[OwnersClient], Any]) -> int:
    """Run `call` on the owners' API of the index the arguments name, print its answer."""
    from keyless.config import ConfigError
    from keyless.publish.indexclient import OwnersClient, keyless_index_of, new_http_client

    token = os.environ.get("KEYLESS_TOKEN", "")
    if not token:
        raise ConfigError("set KEYLESS_TOKEN to an API token of a project owner.")
    base, index = args.url, args.index
    if args.repository_url:
        # The upload URL a release already uses names both: https://host/{index}/legacy/.
        named = keyless_index_of(args.repository_url)
        if named is None:
            raise ConfigError(
                f"--repository-url {args.repository_url!r} is not a keyless upload URL "
                "(https://HOST/INDEX/legacy/)."
            )
        base, index = named
    try:
        with new_http_client(ca_file=args.cert) as http:
            answer = call(OwnersClient(base, index, token=token, http=http))
    except PublishError as exc:  # a refusal, an unreachable index, a CA file that is not one
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


def cmd_yank(args: argparse.Namespace) -> int:
    return _remote(args, lambda owners: owners.yank(args.project, args.version, args.reason or ""))


def cmd_unyank(args: argparse.Namespace) -> int:
    return _remote(args, lambda owners: owners.unyank(args.project, args.version))


def cmd_project_status(args: argparse.Namespace) -> int:
    return _remote(
        args, lambda owners: owners.set_status(args.project, args.status, args.reason or "")
    )


def remote_options(parser: argparse.ArgumentParser) -> None:
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


def define_yank(sub: argparse.ArgumentParser) -> None:
    _define_release(sub, cmd_yank, reason=True)


def define_unyank(sub: argparse.ArgumentParser) -> None:
    _define_release(sub, cmd_unyank, reason=False)


def _define_release(
    sub: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int],
    *,
    reason: bool,
) -> None:
    remote_options(sub)
    sub.add_argument("project")
    sub.add_argument("version")
    if reason:
        sub.add_argument("--reason", default="")
    sub.set_defaults(handler=handler)


def define_project(parser: argparse.ArgumentParser) -> None:
    project = parser.add_subparsers(dest="action", required=True)
    status = project.add_parser(
        "status", help="set active, archived or quarantined (owners; KEYLESS_TOKEN)"
    )
    remote_options(status)
    status.add_argument("project")
    status.add_argument("status", choices=["active", "archived", "quarantined"])
    status.add_argument("--reason", default="")
    status.set_defaults(handler=cmd_project_status)
