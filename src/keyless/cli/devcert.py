"""`keyless dev-cert`: a local CA and a server certificate, and how to make clients trust it."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from keyless.devcert import DevCert

DEFAULT_DIR = Path("keyless-data") / "tls"
# = keyless.devcert.DEFAULT_HOSTS, spelled out so that defining the parser does not import
# cryptography; tests/test_cli_imports.py keeps the two equal.
DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")


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
        "Make clients trust the CA (keyless serve prints these commands in full for each index):",
        *trust_lines(ca),
        "  The variables and flags REPLACE the default trusted roots, so such a command can no",
        "  longer reach pypi.org; for both, point them at a bundle of the usual roots plus ca.pem.",
        "  uv --native-tls (--system-certs in newer uv) reads the operating system's trust",
        "  store instead of SSL_CERT_FILE: add ca.pem there if you use it.",
        "",
        "warning: keep ca-key.pem on this machine and never commit or share it. Anyone holding it",
        "can make certificates that every client trusting this CA accepts, for any site.",
    ]
    out.write("\n".join(lines) + "\n")


# = keyless.devcert.CA_CERT: `keyless serve` looks for the CA beside its certificate.
CA_FILE = "ca.pem"


def trust_lines(ca: str) -> list[str]:
    """How each client is told to trust the CA at `ca` (a shell-quoted path)."""
    return [
        f"  pip:     pip install --cert {ca} ...         (or export PIP_CERT={ca})",
        f"  uv:      export SSL_CERT_FILE={ca}",
        f"  twine:   twine upload --cert {ca} ...        (or export REQUESTS_CA_BUNDLE={ca})",
        f"  hatch:   hatch publish --ca-cert {ca} ...",
        f"  pdm:     pdm publish --ca-certs {ca} ...",
        f"           pdm config pypi.ca_certs {ca}           (for pdm add/install/lock)",
        f"  poetry:  poetry config certificates.NAME.cert {ca}",
        "           (NAME: the repository or source name you gave the index in poetry)",
        f"  flit:    export REQUESTS_CA_BUNDLE={ca}      (flit uploads with requests)",
    ]


def client_lines(simple: str, upload: str, name: str, ca: str | None) -> list[str]:
    """Commands that install from and upload to one index, as printed by `keyless serve`.

    They run as printed (with PACKAGE replaced, $KEYLESS_TOKEN set, the files in dist/):
    tests/index/test_more_clients.py runs each one. `ca` (shell-quoted) is the CA the
    clients must trust, or None when the server's certificate needs no help (or for http).
    `name` is what poetry calls the index.
    """
    # The token from the shell's environment, so it stays out of the shell's history.
    from_env = '"$KEYLESS_TOKEN"'
    pip_cert = twine_cert = hatch_cert = pdm_cert = env_ca = flit_ca = poetry_cert = ""
    if ca is not None:
        pip_cert, twine_cert = f" --cert {ca}", f" --cert {ca}"
        hatch_cert, pdm_cert = f" --ca-cert {ca}", f" --ca-certs {ca}"
        env_ca, flit_ca = f"SSL_CERT_FILE={ca} ", f"REQUESTS_CA_BUNDLE={ca} "
        poetry_cert = f" && poetry config certificates.{name}.cert {ca}"
    return [
        f"  pip install{pip_cert} --index-url {simple} PACKAGE",
        f"  {env_ca}uv pip install --index-url {simple} PACKAGE",
        f"  twine upload{twine_cert} --repository-url {upload} -u __token__ -p {from_env} dist/*",
        f"  {env_ca}uv publish --publish-url {upload} --token {from_env}",
        f"  hatch publish{hatch_cert} --repo {upload} --user __token__ --auth {from_env}",
        f"  pdm publish --no-build{pdm_cert} --repository {upload} "
        f"--username __token__ --password {from_env}",
        f"  poetry config repositories.{name} {upload}{poetry_cert}",
        f"  poetry publish --repository {name} --username __token__ --password {from_env}",
        f"  {flit_ca}FLIT_INDEX_URL={upload} FLIT_USERNAME=__token__ FLIT_PASSWORD={from_env} "
        "flit publish",
    ]
