"""`keyless dev-cert`: a local CA and a server certificate, and how to make clients trust it."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from keyless.devcert import DevCert

DEFAULT_DIR = Path("keyless-data") / "tls"
# = keyless.devcert.DEFAULT_HOSTS, spelled out so that defining the parser does not import
# cryptography; tests/test_cli_imports.py keeps the two equal.
DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")

# Its line in `keyless --help`; its arguments are defined only when it runs (see main.py).
HELP = "make a local CA and an https certificate for 127.0.0.1/localhost"


def register(subparsers: Any) -> None:
    """Add the `dev-cert` command to the `keyless` command's subparsers."""
    define(subparsers.add_parser("dev-cert", help=HELP))


def define(parser: argparse.ArgumentParser) -> None:
    """Give `dev-cert`'s parser its description and arguments."""
    parser.description = (
        "Create a local certificate authority (reused if the folder already has one) and a "
        "fresh server certificate signed by it, for `keyless serve --tls-cert/--tls-key`. "
        "For local use only."
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"folder for ca.pem, ca-key.pem, cert.pem, key.pem (default {DEFAULT_DIR})",
    )
    parser.add_argument(
        "--host",
        action="append",
        metavar="HOST",
        help=f"IP address or DNS name to certify (repeatable; default {' '.join(DEFAULT_HOSTS)})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Create the files and print how to use them; 0 on success, 2 on a bad folder or host."""
    # Imported on use: every `keyless` command imports this module (see main.py).
    from keyless.devcert import DevCertError, create_dev_cert

    try:
        result = create_dev_cert(args.dir, args.host or DEFAULT_HOSTS)
    except DevCertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_instructions(result, sys.stdout)
    return 0


def print_instructions(result: DevCert, out: TextIO) -> None:
    """Tell the user what was written, how to serve with it and how to trust the CA."""
    ca = shlex.quote(str(result.ca.resolve()))
    cert = shlex.quote(str(result.cert))
    key = shlex.quote(str(result.key))
    ca_state = (
        "new: clients must be told to trust it"
        if result.new_ca
        else "reused: clients that trust it keep working"
    )
    lines = [
        "keyless dev-cert wrote:",
        f"  {result.ca}  CA certificate ({ca_state})",
        f"  {result.ca_key}  CA private key (mode 0600)",
        f"  {result.cert}  server certificate for {', '.join(result.hosts)}, "
        f"valid until {result.not_after:%Y-%m-%d}",
        f"  {result.key}  server private key (mode 0600)",
        "",
        "Serve https with it:",
        f"  keyless serve --tls-cert {cert} --tls-key {key}",
        "",
        "Make clients trust the CA:",
        f"  uv, httpx, Python (ssl):  export SSL_CERT_FILE={ca}",
        f"  twine (requests):         export REQUESTS_CA_BUNDLE={ca}",
        f"  pip:                      pip --cert {ca} ...   (or PIP_CERT={ca})",
        "  uv --native-tls (--system-certs in newer uv) reads the operating system's trust",
        "  store instead of SSL_CERT_FILE: add ca.pem there if you use it.",
        "  These variables REPLACE the default trusted roots, so the same shell can no longer",
        "  reach pypi.org; for both, point them at a bundle of the usual roots plus ca.pem.",
        "",
        "warning: keep ca-key.pem on this machine and never commit or share it. Anyone holding it",
        "can make certificates that every client trusting this CA accepts, for any site.",
    ]
    out.write("\n".join(lines) + "\n")
