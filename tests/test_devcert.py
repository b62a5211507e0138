"""`keyless dev-cert`: a CA-signed server certificate that real TLS clients accept."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from keyless.cli.main import build_parser
from keyless.devcert import DevCertError, create_dev_cert


@contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """A one-thread TLS server on 127.0.0.1 that answers each connection with b"ok"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # a client that refused our certificate; the test sees its side

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def fetch(port: int, server_name: str, ca: Path) -> bytes:
    """Connect to 127.0.0.1:port as `server_name`, trusting only `ca`, and read the greeting."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as conn,
    ):
        return conn.recv(16)


def test_certificate_verifies_against_the_ca_for_ip_and_name(tmp_path: Path) -> None:
    files = create_dev_cert(tmp_path / "tls")
    with tls_server(files.cert, files.key) as port:
        assert fetch(port, "127.0.0.1", files.ca) == b"ok"
        assert fetch(port, "localhost", files.ca) == b"ok"
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            fetch(port, "example.com", files.ca)


def test_a_client_that_does_not_trust_the_ca_refuses(tmp_path: Path) -> None:
    files = create_dev_cert(tmp_path / "one")
    other = create_dev_cert(tmp_path / "two")
    with tls_server(files.cert, files.key) as port, pytest.raises(ssl.SSLCertVerificationError):
        fetch(port, "127.0.0.1", other.ca)


def test_extensions(tmp_path: Path) -> None:
    files = create_dev_cert(tmp_path, ["keyless.test", "10.1.2.3"], days=30)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["keyless.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30


def test_second_call_reuses_the_ca_and_renews_the_server_cert(tmp_path: Path) -> None:
    first = create_dev_cert(tmp_path)
    ca_bytes, ca_key_bytes, cert_bytes = (
        first.ca.read_bytes(),
        first.ca_key.read_bytes(),
        first.cert.read_bytes(),
    )
    second = create_dev_cert(tmp_path, ["127.0.0.1"])
    assert first.new_ca
    assert not second.new_ca
    assert second.ca.read_bytes() == ca_bytes
    assert second.ca_key.read_bytes() == ca_key_bytes
    assert second.cert.read_bytes() != cert_bytes
    # A client configured with the CA from the first call accepts the renewed certificate.
    with tls_server(second.cert, second.key) as port:
        assert fetch(port, "127.0.0.1", first.ca) == b"ok"


def test_private_keys_are_owner_only(tmp_path: Path) -> None:
    files = create_dev_cert(tmp_path)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.cert.stat().st_mode) == 0o644


def test_half_a_ca_is_refused_rather_than_replaced(tmp_path: Path) -> None:
    files = create_dev_cert(tmp_path)
    files.ca_key.unlink()
    with pytest.raises(DevCertError, match=r"ca-key\.pem does not"):
        create_dev_cert(tmp_path)


@pytest.mark.parametrize("host", ["", "https://example.com", "bad host", "-x.test", "*"])
def test_bad_hosts_are_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(DevCertError, match="neither an IP address nor a DNS name"):
        create_dev_cert(tmp_path, [host])


def test_cli_command_and_handler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser("dev-cert")  # as `keyless dev-cert ...` builds it
    folder = tmp_path / "tls"
    args = parser.parse_args(["dev-cert", "--dir", str(folder), "--host", "localhost"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    ca = str((folder / "ca.pem").resolve())
    assert f"keyless serve --tls-cert {folder / 'cert.pem'} --tls-key {folder / 'key.pem'}" in out
    assert f"SSL_CERT_FILE={ca}" in out
    assert f"REQUESTS_CA_BUNDLE={ca}" in out
    assert f"pip install --cert {ca}" in out
    assert f"hatch publish --ca-cert {ca}" in out
    assert f"pdm publish --ca-certs {ca}" in out
    assert f"pdm config pypi.ca_certs {ca}" in out
    assert f"poetry config certificates.NAME.cert {ca}" in out
    assert "flit:" in out
    assert "--native-tls" in out
    assert "keep ca-key.pem on this machine" in out
    assert "(new:" in out
    assert args.handler(args) == 0
    assert "(reused:" in capsys.readouterr().out


def test_cli_bad_host_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser("dev-cert")
    args = parser.parse_args(["dev-cert", "--dir", str(tmp_path), "--host", "a b"])
    assert args.handler(args) == 2
    assert "neither an IP address" in capsys.readouterr().err
