"""URLs, redaction, server messages and Retry-After: the index client's small rules."""

from __future__ import annotations

import email.utils
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.publish import PublishError, check_upload_url, redact, server_message, simple_url_for
from keyless.publish.indexclient import (
    IndexClient,
    RemoteFile,
    new_http_client,
    retry_after_seconds,
)
from keyless.publish.options import Backoff
from tests.conftest import LiveServer

from .conftest import StubIndex


@pytest.mark.parametrize(
    ("upload", "simple"),
    [
        ("https://upload.pypi.org/legacy/", "https://pypi.org/simple/"),
        ("https://test.pypi.org/legacy/", "https://test.pypi.org/simple/"),
        ("https://pypi.example.com/prod/legacy/", "https://pypi.example.com/prod/simple/"),
        ("https://pypi.example.com/prod/legacy", "https://pypi.example.com/prod/simple/"),
        ("https://example.com/keyless/test/legacy/", "https://example.com/keyless/test/simple/"),
        ("http://127.0.0.1:8000/legacy/", "http://127.0.0.1:8000/simple/"),
    ],
)
def test_simple_url_for(upload: str, simple: str) -> None:
    assert simple_url_for(upload) == simple


def test_simple_url_that_cannot_be_derived() -> None:
    with pytest.raises(PublishError) as caught:
        simple_url_for("https://devpi.example.com/user/index/")
    assert "--simple-url" in (caught.value.hint or "")


def test_upload_url_mistakes_are_caught() -> None:
    assert check_upload_url("https://h.example/prod/legacy") == "https://h.example/prod/legacy/"
    with pytest.raises(PublishError) as caught:
        check_upload_url("https://h.example/prod/simple/")
    assert "simple (download) URL" in caught.value.message
    assert "https://h.example/prod/legacy/" in (caught.value.hint or "")
    with pytest.raises(PublishError, match="not an http"):
        check_upload_url("ftp://h.example/legacy/")
    # What urlsplit (or the port) refuses is a PublishError too, never a ValueError.
    for broken in ("http://[::1/legacy/", "https://h.example:port/legacy/", "http://h:99999/"):
        with pytest.raises(PublishError, match="does not parse"):
            check_upload_url(broken)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://__token__:pypi-AgEIcHlwaS5vcmc@upload.pypi.org/legacy/",
            "https://***@upload.pypi.org/legacy/",
        ),
        (
            "https://user:secret@h.example:8443/prod/legacy/",
            "https://***@h.example:8443/prod/legacy/",
        ),
        (
            "https://push.fury.io/keyless-abcdef0123456789/legacy/",
            "https://push.fury.io/***/legacy/",
        ),
        (
            "https://h.example/legacy/?token=abc&x=1&api_key=zz",
            "https://h.example/legacy/?token=***&x=1&api_key=***",
        ),
        ("https://h.example/prod/legacy/", "https://h.example/prod/legacy/"),
        ("not a url", "not a url"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_credentials_in_the_upload_url_are_refused() -> None:
    with pytest.raises(PublishError) as caught:
        check_upload_url("https://__token__:keyless-secret@h.example/prod/legacy/")
    assert "carries credentials" in caught.value.message
    assert "keyless-secret" not in str(caught.value)
    assert "KEYLESS_TOKEN" in (caught.value.hint or "")


def test_version_exists_falls_back_to_the_simple_page(stub: StubIndex) -> None:
    stub.store("demo-1.0.0-py3-none-any.whl", b"x")
    stub.store("demo-2.0rc1.tar.gz", b"y")
    with httpx.Client() as http:
        client = IndexClient(stub.upload_url, http=http)
        assert client.version_exists("demo", "1.0")  # normalized: 1.0 == 1.0.0
        assert client.version_exists("Demo", "2.0rc1")
        assert not client.version_exists("demo", "3.0")
        assert not client.version_exists("unknown", "1.0")
    assert "/x/pypi/demo/1.0/json" in stub.gets


@pytest.mark.parametrize("files", [5, "demo-1.0.tar.gz", None, {"a": 1}])
def test_a_simple_page_with_files_that_are_not_a_list_lists_nothing(
    stub: StubIndex, files: object
) -> None:
    stub.routes["/x/simple/odd/"] = (200, {"meta": {"api-version": "1.1"}, "files": files})
    with httpx.Client() as http:
        assert IndexClient(stub.upload_url, http=http).existing_entries("odd") == {}


def test_errors_from_bad_urls_are_redacted() -> None:
    with pytest.raises(PublishError) as caught:
        check_upload_url("https://u:hunter22@h.example/prod/simple/")
    assert "hunter22" not in str(caught.value)
    assert "hunter22" not in str(caught.value.context)


def response(status: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "https://h/legacy/"), **kwargs)  # type: ignore[arg-type]


def test_server_message_reads_json_reason_and_html() -> None:
    assert (
        server_message(
            response(
                400, json={"message": "File already exists", "code": "400 File already exists"}
            )
        )
        == "400 Bad Request: File already exists"
    )
    html = (
        "<html><head><title>x</title></head><body><h1>403 Forbidden</h1>"
        "<p>Invalid API Token: token is expired</p></body></html>"
    )
    message = server_message(response(403, text=html, headers={"content-type": "text/html"}))
    assert "Invalid API Token: token is expired" in message
    assert message.startswith("403 Forbidden")
    mint = response(
        422,
        json={
            "message": "Token request failed",
            "errors": [{"code": "invalid-publisher", "description": "no match"}],
        },
    )
    assert "invalid-publisher: no match" in server_message(mint)
    assert (
        server_message(response(502, text="502 upstream down\n"))
        == "502 Bad Gateway: upstream down"
    )


def test_retry_after_seconds_and_http_dates() -> None:
    assert retry_after_seconds(response(503, headers={"retry-after": "7"})) == 7.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds(response(503, headers={"retry-after": later}))
    assert seconds is not None
    assert 28 <= seconds <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_seconds(response(503, headers={"retry-after": past})) == 0.0
    assert retry_after_seconds(response(503, headers={"retry-after": "soon"})) is None
    assert retry_after_seconds(response(503)) is None


def test_backoff_is_jittered_exponential_capped_and_honours_retry_after() -> None:
    import random

    backoff = Backoff(base=1.0, cap=8.0, max_retry_after=60.0)
    rng = random.Random(1)  # noqa: S311
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        delays = {backoff.delay(attempt, None, rng) for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jitter: workers do not retry in lockstep
    assert backoff.delay(1, 30.0, rng) == 30.0
    assert backoff.delay(1, 3600.0, rng) == 60.0  # capped


def test_index_client_rejects_a_simple_url_as_upload_url() -> None:
    with httpx.Client() as http, pytest.raises(PublishError):
        IndexClient("https://pypi.org/simple/", http=http)


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def test_the_cas_are_loaded_on_the_first_https_request_only(
    server: LiveServer, tls_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain-http index costs no CA bundle (40-110 ms of start-up here); an https one still
    gets the CAs the environment names, loaded once, and is verified with them."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    loaded: list[str] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loaded.append(str(args[0] if args else kwargs.get("cafile") or kwargs.get("capath")))
        load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    assert tls_server.tls is not None
    with new_http_client(environ={"SSL_CERT_FILE": str(tls_server.tls.ca)}) as http:
        for _ in range(2):
            assert http.get(f"{server.url}/_/health").status_code == 200
        assert loaded == []
        for _ in range(2):
            assert http.get(f"{tls_server.url}/_/health").status_code == 200
        assert loaded == [str(tls_server.tls.ca)]
    # The same CA from the environment must really be what the https index is checked with.
    with (
        new_http_client(environ={}) as http,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        http.get(f"{tls_server.url}/_/health")


def test_a_ca_file_from_the_environment_that_cannot_be_loaded_fails_the_https_request(
    tls_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    missing = tmp_path / "no-such-ca.pem"
    with (
        new_http_client(environ={"SSL_CERT_FILE": str(missing)}) as http,
        pytest.raises(PublishError, match=f"cannot load the CA certificates from {missing}"),
    ):
        http.get(f"{tls_server.url}/_/health")
    # Named by the caller (--cert), it fails at once.
    with pytest.raises(PublishError, match="cannot load the CA certificates"):
        new_http_client(ca_file=missing, environ={})


def test_a_pep_503_html_page_is_read_for_hashes_when_the_index_has_no_json() -> None:
    page = (
        "<!DOCTYPE html><html><head><title>Links for demo</title></head><body>"
        '<a href="../../files/demo-1.0.tar.gz#sha256=ABC123">demo-1.0.tar.gz</a>'
        '<a href="https://cdn.example/demo-1.0-py3-none-any.whl">demo-1.0-py3-none-any.whl</a>'
        "</body></html>"
    )

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/prod/simple/demo/"
        return httpx.Response(200, text=page, headers={"content-type": "text/html"})

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        client = IndexClient("https://pypi.example/prod/legacy/", http=http)
        entries = client.existing_entries("Demo")
    assert entries == {
        "demo-1.0.tar.gz": RemoteFile(
            "demo-1.0.tar.gz", "abc123", "https://pypi.example/prod/files/demo-1.0.tar.gz"
        ),
        "demo-1.0-py3-none-any.whl": RemoteFile(
            "demo-1.0-py3-none-any.whl", None, "https://cdn.example/demo-1.0-py3-none-any.whl"
        ),
    }
