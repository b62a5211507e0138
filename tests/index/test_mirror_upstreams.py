"""Upstreams that are not keyless: a PEP 503 HTML tree, a private index asking for credentials,
and pages a mirror must refuse. The upstream is a real HTTP server (the standard library's)
answering from a table of paths built by each test."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.builders import build_wheel
from tests.conftest import LiveServer, free_port, run_keyless, start_server, stop_server
from tests.index.other_httpcore import SHAPES
from tests.index.test_mirror import first_file_url

JSON = "application/vnd.pypi.simple.v1+json"
CREDENTIALS = "mirror-user:upstream-s3cret"


@dataclass
class Upstream:
    """Path -> (content type, body) on a stdlib HTTP server; `required_auth` asks for Basic."""

    url: str
    answers: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    required_auth: str | None = None
    seen_auth: list[str | None] = field(default_factory=list)
    gzipped: set[str] = field(default_factory=set)  # compressed when the client accepts gzip
    unsized: set[str] = field(default_factory=set)  # no content-length: the body ends at close
    cut: set[str] = field(default_factory=set)  # the connection closes half-way through
    stalled: set[str] = field(default_factory=set)  # half, then 3 s of nothing, then the rest
    failing: dict[str, int] = field(default_factory=dict)  # path -> the error status answered


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    port = free_port()
    state = Upstream(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/slow/"):
                time.sleep(3)  # longer than the `slow` index's upstream-timeout
            auth = self.headers.get("authorization")
            state.seen_auth.append(auth)
            if state.required_auth and auth != state.required_auth:
                self.send_response(401)
                self.send_header("www-authenticate", 'Basic realm="upstream"')
                self.end_headers()
                return
            if self.path in state.failing:
                self.send_error(state.failing[self.path])
                return
            found = state.answers.get(self.path)
            if found is None:
                self.send_error(404)
                return
            content_type, body = found
            self.send_response(200)
            if self.path in state.gzipped and "gzip" in self.headers.get("accept-encoding", ""):
                body = gzip.compress(body)
                self.send_header("content-encoding", "gzip")
            self.send_header("content-type", content_type)
            if self.path not in state.unsized:
                self.send_header("content-length", str(len(body)))
            self.end_headers()
            if self.path in state.cut | state.stalled:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if self.path in state.cut:
                    return
                time.sleep(3)  # longer than the `stall` index's upstream-timeout
                body = body[len(body) // 2 :]
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[LiveServer]:
    config = f"""
[indexes.main]
upstream = "{upstream.url}/simple/"
upstream-ttl = 0

[indexes.private]
upstream = "{upstream.url}/private/simple/"
upstream-credentials-env = "TEST_UPSTREAM_CREDENTIALS"

[indexes.slow]
upstream = "{upstream.url}/slow/simple/"
upstream-timeout = 1

[indexes.stall]
upstream = "{upstream.url}/simple/"
upstream-timeout = 1
"""
    live = start_server(
        tmp_path_factory.mktemp("mirror"),
        config_text=config,
        env={"TEST_UPSTREAM_CREDENTIALS": CREDENTIALS},
    )
    yield live
    stop_server(live)


def html_page(*links: str) -> tuple[str, bytes]:
    anchors = "".join(f"<a {link}>x</a><br/>\n" for link in links)
    return "text/html", f"<!DOCTYPE html><html><body>\n{anchors}</body></html>".encode()


def test_an_html_upstream_is_read_and_pip_installs_from_it(
    upstream: Upstream, mirror: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    filename, data = build_wheel("html-lib", "1.0")
    sha256 = hashlib.sha256(data).hexdigest()
    old_name, old_data = build_wheel("html-lib", "0.9")
    old_sha256 = hashlib.sha256(old_data).hexdigest()
    upstream.answers["/simple/html-lib/"] = html_page(
        # A relative URL, resolved against the page's (as pip does).
        f'href="../../packages/{filename}#sha256={sha256}" data-requires-python="&gt;=3.8"',
        f'href="/packages/{old_name}#sha256={old_sha256}" data-yanked="too old"',
    )
    upstream.answers[f"/packages/{filename}"] = ("application/octet-stream", data)
    with mirror.client() as client:
        page = client.get("/main/simple/html-lib/", headers={"Accept": JSON})
    assert page.status_code == 200, page.text
    files = {f["filename"]: f for f in page.json()["files"]}
    assert files[filename]["requires-python"] == ">=3.8"
    assert files[filename]["url"] == f"/main/+mirror/html-lib/{sha256}/{filename}"
    assert files[old_name]["yanked"] == "too old"
    # The JSON API from the same page: an HTML page gives no sizes and no version list.
    with mirror.client() as client:
        api = client.get("/main/pypi/html-lib/json")
    assert api.status_code == 200, api.text
    assert (api.json()["info"]["version"], api.json()["info"]["requires_python"]) == (
        "1.0",
        ">=3.8",  # what its one file says
    )
    releases = api.json()["releases"]
    assert {v: [f["filename"] for f in files] for v, files in releases.items()} == {
        "0.9": [old_name],
        "1.0": [filename],
    }
    assert (releases["0.9"][0]["yanked"], releases["0.9"][0]["yanked_reason"]) == (True, "too old")
    assert releases["1.0"][0]["size"] is None
    assert releases["1.0"][0]["url"] == f"{mirror.url}{files[filename]['url']}"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(tmp_path)),
            *("--index-url", mirror.simple_url("main"), "html-lib"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "html_lib-1.0.dist-info").is_dir()


def test_a_file_the_upstream_would_compress_is_stored_as_its_hash_says(
    upstream: Upstream, mirror: LiveServer
) -> None:
    filename, data = build_wheel("gzip-lib", "1.0")
    sha256 = hashlib.sha256(data).hexdigest()
    link = f'href="/packages/{filename}#sha256={sha256}"'
    upstream.answers["/simple/gzip-lib/"] = html_page(link)
    upstream.answers[f"/packages/{filename}"] = ("application/octet-stream", data)
    upstream.gzipped.add(f"/packages/{filename}")
    with mirror.client() as client:
        wheel = client.get(first_file_url(client, "/main/simple/gzip-lib/"))
    assert wheel.status_code == 200
    assert wheel.content == data


@pytest.mark.parametrize("how", ["unsized", "sized"])
def test_a_large_file_arrives_whole_whether_or_not_the_upstream_gives_its_length(
    upstream: Upstream, mirror: LiveServer, how: str
) -> None:
    # Known length: read off the connection in large reads; else through httpx's chunks.
    name = f"{how}-lib"
    filename = f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
    data = os.urandom(5 * 1024 * 1024 + 12345)
    sha256 = hashlib.sha256(data).hexdigest()
    upstream.answers[f"/simple/{name}/"] = html_page(f'href="/packages/{filename}#sha256={sha256}"')
    upstream.answers[f"/packages/{filename}"] = ("application/octet-stream", data)
    if how == "unsized":
        upstream.unsized.add(f"/packages/{filename}")
    with mirror.client() as client:
        url = first_file_url(client, f"/main/simple/{name}/")
        wheel = client.get(url)
        # With a length, the client has the whole body while the server still stores the file
        # (mirror/download.py): the next request on the same connection must find it stored.
        again = client.get(url)
    assert wheel.status_code == 200
    assert wheel.content == data
    assert again.content == data
    assert "x-keyless-source" not in again.headers  # from the store, not the upstream
    assert mirror.blobs().exists(sha256, len(data))


@pytest.mark.parametrize("shape", SHAPES)
def test_first_downloads_go_through_httpx_when_its_connection_is_not_as_expected(
    upstream: Upstream, tmp_path: Path, shape: str
) -> None:
    """The large reads use httpcore's `network_stream` (and do with the httpcore installed);
    another httpcore may hand out none, or one of another shape (tests/index/other_httpcore.py):
    first downloads are then read through httpx's own streaming, whole and hash-checked, and
    the log says why once."""
    name = f"reshaped-{shape}-lib"
    served: dict[str, bytes] = {}
    links = []
    for version in ("1.0", "1.1", "6.6"):
        filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        data = os.urandom(3 * 1024 * 1024 + len(served))
        served[filename] = data
        # 6.6 is tampered with: the upstream's bytes are not those its page gives the hash of.
        page_data = os.urandom(len(data)) if version == "6.6" else data
        links.append(f'href="/packages/{filename}#sha256={hashlib.sha256(page_data).hexdigest()}"')
        upstream.answers[f"/packages/{filename}"] = ("application/octet-stream", data)
    upstream.answers[f"/simple/{name}/"] = html_page(*links)
    mirror = start_server(
        tmp_path / "mirror",
        config_text=f'[indexes.main]\nupstream = "{upstream.url}/simple/"\n',
        prefix=(sys.executable, "-m", "tests.index.other_httpcore", shape),
    )
    try:
        with mirror.client() as client:
            page = client.get(f"/main/simple/{name}/", headers={"Accept": JSON})
            urls = {f["filename"]: f["url"] for f in page.json()["files"]}
            wheels = [client.get(urls[filename]) for filename in list(served)[:2]]
            with pytest.raises(httpx.RemoteProtocolError):
                client.get(urls[list(served)[2]])
    finally:
        stop_server(mirror)
    for wheel, data in zip(wheels, served.values(), strict=False):
        assert wheel.status_code == 200
        assert wheel.content == data
        assert mirror.blobs().exists(hashlib.sha256(data).hexdigest(), len(data))
    assert not mirror.blobs().exists(hashlib.sha256(list(served.values())[2]).hexdigest())
    why = {
        "as-is": None,  # the stream of the httpcore installed is used
        "none": "httpx hands out no network_stream",
        "no-read": "its network_stream (NoRead) has no read()",
        "read-no-timeout": "the read() of its network_stream (ReadNoTimeout) does not take",
        "async-read": "the read() of its network_stream (AsyncRead) is async",
        "no-read-timeout": "httpx's request carries no read timeout",
    }[shape]
    said = [line for line in mirror.log().splitlines() if "read through httpx's chunks" in line]
    assert len(said) == (0 if why is None else 1), said
    assert all(why is not None and why in line for line in said)
    assert "Traceback" not in mirror.log()


@pytest.mark.parametrize(("how", "index"), [("cut", "main"), ("stalled", "stall")])
def test_an_upstream_that_stops_half_way_is_a_cut_off_download_and_nothing_stored(
    upstream: Upstream, mirror: LiveServer, how: str, index: str
) -> None:
    # Closed half-way, or silent for longer than the index's upstream-timeout.
    filename = f"{how}_lib-1.0-py3-none-any.whl"
    data = os.urandom(4 * 1024 * 1024)
    sha256 = hashlib.sha256(data).hexdigest()
    upstream.answers[f"/simple/{how}-lib/"] = html_page(
        f'href="/packages/{filename}#sha256={sha256}"'
    )
    upstream.answers[f"/packages/{filename}"] = ("application/octet-stream", data)
    getattr(upstream, how).add(f"/packages/{filename}")
    with mirror.client() as client:
        url = first_file_url(client, f"/{index}/simple/{how}-lib/")
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(url)
    assert not mirror.blobs().exists(sha256)
    for _ in range(50):  # bounded: the fetch thread discards its temp file as it ends
        if not list((mirror.data_dir / "blobs" / "tmp").glob("*")):
            break
        time.sleep(0.1)
    assert list((mirror.data_dir / "blobs" / "tmp").glob("*")) == []
    # Said in the log in a line, not as a traceback.
    assert f"the upstream stopped sending {filename!r}" in mirror.log()
    assert "Traceback" not in mirror.log()


def test_a_private_upstream_gets_the_credentials_and_the_log_never_does(
    upstream: Upstream, mirror: LiveServer
) -> None:
    filename, data = build_wheel("secret-lib", "1.0")
    sha256 = hashlib.sha256(data).hexdigest()
    upstream.answers["/private/simple/secret-lib/"] = html_page(
        f'href="/private/packages/{filename}#sha256={sha256}"'
    )
    upstream.answers[f"/private/packages/{filename}"] = ("application/octet-stream", data)
    expected = "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()
    upstream.required_auth = expected
    try:
        with mirror.client() as client:
            wheel = client.get(first_file_url(client, "/private/simple/secret-lib/"))
    finally:
        upstream.required_auth = None
    assert wheel.status_code == 200
    assert wheel.content == data
    assert upstream.seen_auth[-1] == expected
    assert "s3cret" not in mirror.log()


@pytest.mark.parametrize(
    ("content_type", "body", "said"),
    [
        ("application/octet-stream", b"\x00\x01", "content type is 'application/octet-stream'"),
        (JSON, b'{"files": [', "not valid JSON"),
        (JSON, b'{"meta": {}}', "no 'files' list"),
        (*html_page('href="/p/bad-1.0.tar.gz"'), "gives no sha256 for 'bad-1.0.tar.gz'"),
        (*html_page(f'href="file:///etc/bad-1.0.tar.gz#sha256={"0" * 64}"'), "not an http(s)"),
        (
            JSON,
            json.dumps({"files": [{"filename": "../x", "url": "/x", "hashes": {}}]}).encode(),
            "not a distribution's name",
        ),
    ],
)
def test_a_malformed_upstream_page_is_refused_saying_why(
    upstream: Upstream, mirror: LiveServer, content_type: str, body: bytes, said: str
) -> None:
    upstream.answers["/simple/bad/"] = (content_type, body)
    with mirror.client() as client:
        answer = client.get("/main/simple/bad/", headers={"Accept": JSON})
    assert answer.status_code == 502, answer.text
    assert said in answer.json()["message"]
    assert f"{upstream.url}/simple/" in answer.json()["message"]


def test_a_page_larger_than_the_limit_is_refused(upstream: Upstream, mirror: LiveServer) -> None:
    from keyless.index.mirror.upstream import MAX_PAGE_BYTES

    upstream.answers["/simple/huge/"] = ("text/html", b" " * (MAX_PAGE_BYTES + 1))
    with mirror.client() as client:
        answer = client.get("/main/simple/huge/")
    assert answer.status_code == 502
    assert "larger than" in answer.text


def test_an_upstream_slower_than_its_timeout_is_a_504_naming_it(
    upstream: Upstream, mirror: LiveServer
) -> None:
    upstream.answers["/slow/simple/late-lib/"] = html_page()
    started = time.monotonic()
    with mirror.client() as client:
        answer = client.get("/slow/simple/late-lib/")
    assert answer.status_code == 504, answer.text
    assert f"{upstream.url}/slow/simple/ did not answer in time" in answer.text
    assert time.monotonic() - started < 2.5
    with mirror.client() as client:
        api = client.get("/slow/pypi/late-lib/json")
    assert (api.status_code, api.text) == (504, answer.text)


def test_what_packaging_cannot_read_on_an_upstream_page_is_no_500_in_the_json_api(
    upstream: Upstream, mirror: LiveServer
) -> None:
    """A version with more digits than `int()` takes (packaging raises a plain ValueError) is
    left out; a page for a name packaging refuses (an upstream may serve one) is answered."""
    filename, data = build_wheel("digits-lib", "1.0")
    huge = "digits_lib-1" + "0" * 5000 + ".tar.gz"
    upstream.answers["/simple/digits-lib/"] = html_page(
        f'href="/packages/{filename}#sha256={hashlib.sha256(data).hexdigest()}"',
        f'href="/packages/{huge}#sha256={hashlib.sha256(b"x").hexdigest()}"',
    )
    upstream.answers["/simple/-odd-/"] = upstream.answers["/simple/digits-lib/"]
    with mirror.client() as client:
        page = client.get("/main/simple/digits-lib/", headers={"Accept": JSON})
        api = client.get("/main/pypi/digits-lib/json")
        odd = client.get("/main/pypi/-odd-/json")
    assert page.status_code == 200, page.text
    assert len(page.json()["files"]) == 2
    assert api.status_code == 200, api.text
    assert {v: [f["filename"] for f in fs] for v, fs in api.json()["releases"].items()} == {
        "1.0": [filename]
    }
    assert odd.status_code == 200, odd.text
    assert (odd.json()["info"]["name"], odd.json()["info"]["version"]) == ("-odd-", "1.0")


def test_an_upstream_answering_an_error_is_a_502_naming_it_and_its_status(
    upstream: Upstream, mirror: LiveServer
) -> None:
    """The page, the file and its metadata file alike (one text for the three)."""
    upstream.failing["/simple/erring-lib/"] = 503
    filename, data = build_wheel("erring-files-lib", "1.0")
    metadata_sha256 = hashlib.sha256(b"Metadata-Version: 2.1").hexdigest()
    upstream.answers["/simple/erring-files-lib/"] = html_page(
        f'href="/packages/{filename}#sha256={hashlib.sha256(data).hexdigest()}" '
        f'data-core-metadata="sha256={metadata_sha256}"'
    )
    upstream.failing[f"/packages/{filename}"] = 500
    upstream.failing[f"/packages/{filename}.metadata"] = 403
    with mirror.client() as client:
        url = first_file_url(client, "/main/simple/erring-files-lib/")
        answers = [
            client.get(path, headers={"Accept": "application/json"})
            for path in ("/main/simple/erring-lib/", url, url + ".metadata")
        ]
    said = f"The upstream {upstream.url}/simple/ answered"
    assert [(answer.status_code, answer.json()["message"]) for answer in answers] == [
        (502, f"{said} 503 for 'erring-lib'; try again later."),
        (502, f"{said} 500 for {filename!r}; try again later."),
        (502, f"{said} 403 for the metadata of {filename!r}; try again later."),
    ]


def test_a_name_the_upstream_lacks_is_a_404_naming_both(
    upstream: Upstream, mirror: LiveServer
) -> None:
    with mirror.client() as client:
        answer = client.get("/main/simple/nowhere-lib/")
    assert answer.status_code == 404
    assert "nor on its upstream" in answer.text
    assert "Traceback" not in mirror.log()  # nor for any refusal above


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ('upstream = "ftp://example.org/simple/"', "upstream must be an http(s) URL"),
        ('upstream = "https://u:p@example.org/simple/"', "must not carry credentials"),
        (
            'upstream = "https://example.org/simple/"\n'
            'upstream-credentials-env = "TEST_NOT_SET_ANYWHERE"',
            "TEST_NOT_SET_ANYWHERE",
        ),
        ('upstream = "https://example.org/simple/"\nupstream-ttl = -1', "upstream-ttl"),
        # The name lists of policy.py and merge.py (tests/index/test_mirror_policy.py).
        ('upstream = "https://example.org/simple/"\nreserved-names = "acme-*"', "must be a list"),
        ('upstream = "https://example.org/simple/"\nreserved-names = ["acme/*"]', "'acme/*'"),
        ('reserved-names = ["acme-*"]', "only matters for an index with an upstream"),
        ('upstream = "https://example.org/simple/"\nupstream-merge = ["acme-*"]', "'acme-*'"),
    ],
)
def test_upstream_settings_that_cannot_work_stop_the_server_saying_why(
    tmp_path: Path, setting: str, said: str
) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text(f"[indexes.main]\n{setting}\n", encoding="utf-8")
    done = run_keyless("serve", "--config", str(config), "--data", str(tmp_path / "data"))
    assert done.returncode != 0
    assert said in done.stderr
    assert "Traceback" not in done.stderr
