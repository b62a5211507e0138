"""A local certificate authority and a server certificate, for serving keyless over https.

Trusted Publishing clients (uv, twine, the GitHub action) insist on https, so a local rehearsal
needs a certificate that a client can be told to trust. Rather than a self-signed server
certificate, this makes a small CA and signs the server certificate with it: the CA is what a
client trusts, and it survives the server certificate being renewed or its hosts changing.

Only `cryptography` is used; nothing here touches the network.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import os
import re
import secrets
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")
CA_DAYS = 3650
# Apple platforms refuse TLS server certificates valid for longer than this.
MAX_SERVER_DAYS = 825
# A little backdating so a client whose clock runs slightly behind still accepts a fresh cert.
BACKDATE = dt.timedelta(minutes=5)

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "cert.pem"
SERVER_KEY = "key.pem"

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z", re.IGNORECASE)


class DevCertError(ValueError):
    """The certificate folder or a requested host cannot be used; the message says why."""


@dataclass(frozen=True)
class DevCert:
    """Paths of the files `create_dev_cert` wrote (or reused)."""

    ca: Path
    cert: Path
    key: Path
    ca_key: Path
    new_ca: bool
    """True when this call created the CA, False when an existing one was reused."""
    hosts: tuple[str, ...]
    not_after: dt.datetime


def create_dev_cert(
    folder: Path, hosts: Sequence[str] = DEFAULT_HOSTS, *, days: int = MAX_SERVER_DAYS
) -> DevCert:
    """Write a server certificate for `hosts` signed by a local CA kept in `folder`.

    An existing CA in the folder (`ca.pem` + `ca-key.pem`) is reused, so clients that already
    trust it keep working; otherwise a new one is made. The server certificate and key
    (`cert.pem`, `key.pem`) are always written fresh. Private keys are written with mode 0600.

    Raises DevCertError if a host is neither an IP address nor a DNS name, `days` is out of
    range, or the folder holds only half a CA, a CA that does not match its key, or an expired
    CA. Raises OSError if the folder cannot be written.
    """
    if not 1 <= days <= MAX_SERVER_DAYS:
        raise DevCertError(f"days must be between 1 and {MAX_SERVER_DAYS}, not {days}.")
    names = _parse_hosts(hosts)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_path, ca_key_path = folder / CA_CERT, folder / CA_KEY
    existing = _load_ca(ca_path, ca_key_path, now)
    if existing is None:
        ca_cert, ca_key = _new_ca(now)
        # The key first: a ca.pem without its key would make the next run refuse the folder.
        _write_private(ca_key_path, _key_pem(ca_key))
        _write_public(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    else:
        ca_cert, ca_key = existing

    key = ec.generate_private_key(ec.SECP256R1())
    # A server certificate must not outlive the CA that vouches for it.
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = _server_cert(ca_cert, ca_key, key, names, now, not_after)
    cert_path, key_path = folder / SERVER_CERT, folder / SERVER_KEY
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return DevCert(
        ca=ca_path,
        cert=cert_path,
        key=key_path,
        ca_key=ca_key_path,
        new_ca=existing is None,
        hosts=tuple(hosts),
        not_after=not_after,
    )


def _parse_hosts(hosts: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hosts, str):  # a lone "localhost" would otherwise become nine hosts
        hosts = [hosts]
    if not hosts:
        raise DevCertError("give at least one host (an IP address or a DNS name).")
    names: list[x509.GeneralName] = []
    for host in hosts:
        text = host.strip().strip("[]")  # accept "[::1]" as written in URLs
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
            continue
        except ValueError:
            pass
        labels = text.rstrip(".").split(".")
        if labels and labels[0] == "*":  # a wildcard covers one leftmost label only
            labels = labels[1:]
        if not labels or not all(_DNS_LABEL.match(label) for label in labels):
            raise DevCertError(
                f"host {host!r} is neither an IP address nor a DNS name "
                "(letters, digits and '-' in dot-separated labels, e.g. 'keyless.test')."
            )
        names.append(x509.DNSName(text.rstrip(".").lower()))
    return names


def _load_ca(
    cert_path: Path, key_path: Path, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    if not cert_path.exists() and not key_path.exists():
        return None
    if not (cert_path.exists() and key_path.exists()):
        present, missing = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
        raise DevCertError(
            f"{present} exists but {missing} does not. Restore it, or delete {present} to "
            "create a new CA (clients that trusted the old one must then trust the new one)."
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as exc:
        raise DevCertError(f"cannot read the CA in {cert_path.parent}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise DevCertError(f"{key_path} is not the private key of {cert_path}.")
    if cert.not_valid_after_utc <= now:
        raise DevCertError(
            f"the CA in {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}. Delete "
            f"{cert_path} and {key_path} to create a new one, and trust the new ca.pem."
        )
    return cert, key


def _new_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A distinct name per CA: trust stores and chain building match issuers by name, and the
    # user@host part tells a person browsing their trust store where this one came from.
    label = f"keyless dev CA {_whoami()} {secrets.token_hex(4)}"[:64]
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keyless development CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, label),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    # EC keys sign (TLS handshakes, and certificates for the CA); nothing else is allowed.
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _server_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
    now: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    first = names[0].value
    common_name = str(first)[:64]
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Clients match hosts against the SAN only (the CN is ignored), so every host goes here.
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no USER variable
        user = "user"
    return f"{user}@{socket.gethostname()}"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # mkstemp creates the file 0600, so a key is never readable by others, not even briefly;
    # the rename means a server restarted mid-write sees the old file or the new, never half.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
