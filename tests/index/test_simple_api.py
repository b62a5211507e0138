"""The simple repository API over real HTTP (PEP 503, 691, 700, 714, 658, 592, 792).

What pip, uv, hatch and Renovate rely on: the negotiated content type, the API version, every
key of a file entry, redirects to the normalized URL, ETags, and yank/status markers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.builders import build_wheel
from tests.conftest import PUBLIC_URL, LiveServer

from .uploading import Published, core_metadata_of, publish_wheel_and_sdist, upload

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
PIP_ACCEPT = f"{JSON_TYPE}, {HTML_TYPE}; q=0.1, text/html; q=0.01"
UPLOAD_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


# ------------------------------------------------------------------------------------ helpers


class Page(HTMLParser):
    """The anchors and <meta> tags of a simple HTML page, attribute values unescaped."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []
        self.texts: list[str] = []
        self.meta: dict[str, str | None] = {}
        self._in_anchor = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
            self.texts.append("")
            self._in_anchor = True
        elif tag == "meta":
            values = dict(attrs)
            if values.get("name"):
                self.meta[str(values["name"])] = values.get("content")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_anchor = False

    def handle_data(self, data: str) -> None:
        if self._in_anchor:
            self.texts[-1] += data

    def anchor(self, filename: str) -> dict[str, str | None]:
        return self.anchors[self.texts.index(filename)]


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip().lower()


def get_without_accept(client: httpx.Client, url: str) -> httpx.Response:
    """httpx sends `Accept: */*` by default; hatch and Renovate send no Accept at all."""
    request = client.build_request("GET", url)
    del request.headers["accept"]
    return client.send(request)


def simple_json(client: httpx.Client, url: str) -> dict[str, Any]:
    answer = client.get(url, headers={"Accept": JSON_TYPE})
    assert answer.status_code == 200, answer.text
    assert media_type(answer) == JSON_TYPE
    document: dict[str, Any] = answer.json()
    return document


def simple_html(client: httpx.Client, url: str) -> tuple[str, Page]:
    answer = client.get(url, headers={"Accept": "text/html"})
    assert answer.status_code == 200, answer.text
    return answer.text, Page(answer.text)


def manage(client: httpx.Client, token: str, path: str, body: dict[str, Any]) -> None:
    answer = client.post(
        f"/prod/api/projects/{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text


# ------------------------------------------------------------------------------------ fixtures


# One project on prod with a wheel (Requires-Python >=3.9) and an sdist.
NAME = "Simple_Api.Demo"
NORMALIZED = "simple-api-demo"


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> str:
    return server.token("simple-owner", "prod")


@pytest.fixture(scope="module")
def published(client: httpx.Client, owner: str) -> Published:
    meta = {"requires_python": ">=3.9", "summary": "Simple API demo"}
    return publish_wheel_and_sdist(client, "prod", owner, NAME, "1.0", meta)


# ------------------------------------------------------------------------ content negotiation


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP_ACCEPT, JSON_TYPE),
        # Order means nothing: the same q-values listed backwards still pick JSON.
        (f"text/html; q=0.01, {HTML_TYPE}; q=0.1, {JSON_TYPE}", JSON_TYPE),
        (f"{JSON_TYPE}; q=0.2, text/html", TEXT_HTML),
        (f"text/html; q=0.5, {HTML_TYPE}; q=0.9", HTML_TYPE),
        (HTML_TYPE, HTML_TYPE),
        (JSON_TYPE, JSON_TYPE),
        ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
        ("application/vnd.pypi.simple.latest+html", HTML_TYPE),
        ("Application/VND.PyPI.Simple.V1+JSON", JSON_TYPE),
        ("text/html", TEXT_HTML),
        ("*/*", TEXT_HTML),
        ("application/json", TEXT_HTML),
        ("image/png, text/plain;q=0.5", TEXT_HTML),
        (f"{JSON_TYPE}; q=0", TEXT_HTML),
        ("", TEXT_HTML),
    ],
)
@pytest.mark.parametrize("page", ["root", "project"])
def test_content_negotiation(
    client: httpx.Client, published: Published, page: str, accept: str, expected: str
) -> None:
    url = "/prod/simple/" if page == "root" else f"/prod/simple/{NORMALIZED}/"
    answer = client.get(url, headers={"Accept": accept})
    assert answer.status_code == 200, answer.text
    assert media_type(answer) == expected
    assert answer.headers["vary"] == "Accept"
    if expected == JSON_TYPE:
        assert answer.json()["meta"]["api-version"] == "1.4"
    else:
        meta = Page(answer.text).meta
        assert meta["pypi:repository-version"] == "1.4"
        assert '<meta name="pypi:repository-version" content="1.4">' in answer.text


@pytest.mark.parametrize("page", ["root", "project"])
def test_no_accept_header_gets_html(client: httpx.Client, published: Published, page: str) -> None:
    url = "/prod/simple/" if page == "root" else f"/prod/simple/{NORMALIZED}/"
    answer = get_without_accept(client, url)
    assert answer.status_code == 200
    assert media_type(answer) == TEXT_HTML
    assert answer.headers["vary"] == "Accept"
    expected = NAME if page == "root" else published.wheel[0]
    assert expected in Page(answer.text).texts


# ------------------------------------------------------------------------ the project page


def test_json_project_page(client: httpx.Client, published: Published) -> None:
    answer = client.get(f"/prod/simple/{NORMALIZED}/", headers={"Accept": PIP_ACCEPT})
    assert b"dist-info-metadata" not in answer.content  # old pip crashes on it in JSON
    document = answer.json()
    assert document["meta"]["api-version"] == "1.4"
    assert document["name"] == NORMALIZED
    assert document["versions"] == ["1.0"]
    assert document["project-status"]["status"] == "active"
    by_name = {entry["filename"]: entry for entry in document["files"]}
    assert set(by_name) == {published.wheel[0], published.sdist[0]}

    for (filename, data), kind in ((published.wheel, "wheel"), (published.sdist, "sdist")):
        entry = by_name[filename]
        assert "dist-info-metadata" not in entry
        assert entry["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)
        assert entry["requires-python"] == ">=3.9"
        assert entry["yanked"] is False
        assert "?" not in entry["url"]  # pip appends ".metadata" to the URL as it is
        assert urlsplit(entry["url"]).path.endswith("/" + filename)
        assert UPLOAD_TIME.match(entry["upload-time"]), entry["upload-time"]
        moment = dt.datetime.strptime(entry["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        moment = moment.replace(tzinfo=dt.UTC)
        assert published.before - dt.timedelta(seconds=1) <= moment <= published.after
        if kind == "wheel":
            metadata = core_metadata_of(filename, data)
            assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
        else:
            assert entry["core-metadata"] is False


def test_html_project_page(client: httpx.Client, published: Published) -> None:
    text, page = simple_html(client, f"/prod/simple/{NORMALIZED}/")
    assert page.meta["pypi:repository-version"] == "1.4"
    assert "pypi:project-status" not in page.meta  # active is the default, left implicit
    assert sorted(page.texts) == sorted([published.wheel[0], published.sdist[0]])
    # The raw attribute is escaped; a parser hands back the specifier.
    assert 'data-requires-python="&gt;=3.9"' in text

    wheel_name, wheel = published.wheel
    anchor = page.anchor(wheel_name)
    href = str(anchor["href"])
    assert href.endswith(f"{wheel_name}#sha256={hashlib.sha256(wheel).hexdigest()}")
    assert anchor["data-requires-python"] == ">=3.9"
    assert "data-yanked" not in anchor
    metadata_hash = hashlib.sha256(core_metadata_of(wheel_name, wheel)).hexdigest()
    assert anchor["data-core-metadata"] == f"sha256={metadata_hash}"
    assert anchor["data-dist-info-metadata"] == f"sha256={metadata_hash}"

    sdist_name, sdist = published.sdist
    anchor = page.anchor(sdist_name)
    assert str(anchor["href"]).endswith(f"#sha256={hashlib.sha256(sdist).hexdigest()}")
    assert "data-core-metadata" not in anchor
    assert "data-dist-info-metadata" not in anchor


def test_html_and_json_point_at_the_same_downloadable_urls(
    client: httpx.Client, published: Published
) -> None:
    page_url = f"{client.base_url}/prod/simple/{NORMALIZED}/"
    _, page = simple_html(client, page_url)
    html_urls = {
        text: urljoin(page_url, str(a["href"]).split("#")[0])
        for text, a in zip(page.texts, page.anchors, strict=True)
    }
    document = simple_json(client, page_url)
    json_urls = {e["filename"]: urljoin(page_url, e["url"]) for e in document["files"]}
    assert html_urls == json_urls
    for filename, data in (published.wheel, published.sdist):
        downloaded = client.get(json_urls[filename])
        assert downloaded.status_code == 200
        assert downloaded.content == data


def test_root_lists_uploaded_projects(client: httpx.Client, published: Published) -> None:
    document = simple_json(client, "/prod/simple/")
    assert document["meta"]["api-version"] == "1.4"
    names = [project["name"] for project in document["projects"]]
    assert NAME in names

    _, page = simple_html(client, "/prod/simple/")
    assert page.meta["pypi:repository-version"] == "1.4"
    anchor = page.anchor(NAME)
    target = urljoin(f"{client.base_url}/prod/simple/", str(anchor["href"]))
    assert urlsplit(target).path == f"/prod/simple/{NORMALIZED}/"
    assert client.get(target).status_code == 200


def test_head_on_a_page(client: httpx.Client, published: Published) -> None:
    answer = client.head(f"/prod/simple/{NORMALIZED}/", headers={"Accept": JSON_TYPE})
    assert answer.status_code == 200
    assert media_type(answer) == JSON_TYPE
    assert answer.content == b""


# ------------------------------------------------------------------------ redirects and 404s


@pytest.mark.parametrize(
    "path",
    [
        "/prod/simple/Simple_Api.Demo/",
        "/prod/simple/SIMPLE-API-DEMO/",
        "/prod/simple/simple__api..demo/",
        "/prod/simple/Simple_Api.Demo",  # not normalized AND no slash: still one hop
        "/prod/simple/simple-api-demo",
    ],
)
def test_redirect_to_the_normalized_url_in_one_hop(
    client: httpx.Client, published: Published, path: str
) -> None:
    answer = client.get(path, headers={"Accept": PIP_ACCEPT})
    assert answer.status_code == 301
    target = urljoin(f"{client.base_url}{path}", answer.headers["location"])
    assert urlsplit(target).path == f"/prod/simple/{NORMALIZED}/"
    followed = client.get(target, headers={"Accept": PIP_ACCEPT})
    assert followed.status_code == 200
    assert followed.json()["name"] == NORMALIZED


def test_root_without_slash_redirects(client: httpx.Client) -> None:
    answer = client.get("/prod/simple")
    assert answer.status_code == 301
    assert urlsplit(urljoin(f"{client.base_url}/", answer.headers["location"])).path == (
        "/prod/simple/"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/prod/simple/no-such-project-here/",
        "/nope/simple/",
        "/nope/simple/simple-api-demo/",
    ],
)
@pytest.mark.parametrize("accept", [PIP_ACCEPT, "text/html"])
def test_unknown_project_or_index_is_404(client: httpx.Client, path: str, accept: str) -> None:
    answer = client.get(path, headers={"Accept": accept})
    assert answer.status_code == 404


# ------------------------------------------------------------------------ caching


@pytest.mark.parametrize("accept", [PIP_ACCEPT, "text/html"])
def test_etag_and_if_none_match(client: httpx.Client, published: Published, accept: str) -> None:
    url = f"/prod/simple/{NORMALIZED}/"
    first = client.get(url, headers={"Accept": accept})
    etag = first.headers["etag"]
    again = client.get(url, headers={"Accept": accept, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["vary"] == "Accept"
    other = client.get(url, headers={"Accept": accept, "If-None-Match": '"something-else"'})
    assert other.status_code == 200
    assert other.content == first.content


def test_if_none_match_with_a_list_and_weak_tags(
    client: httpx.Client, published: Published
) -> None:
    """RFC 9110: If-None-Match is a list compared weakly; proxies that compress weaken ETags."""
    url = f"/prod/simple/{NORMALIZED}/"
    etag = client.get(url, headers={"Accept": JSON_TYPE}).headers["etag"]
    for header in (f'"other", {etag}', f"W/{etag}", "*"):
        again = client.get(url, headers={"Accept": JSON_TYPE, "If-None-Match": header})
        assert again.status_code == 304, header


def test_html_and_json_have_different_etags(client: httpx.Client, published: Published) -> None:
    url = f"/prod/simple/{NORMALIZED}/"
    html_tag = client.get(url, headers={"Accept": "text/html"}).headers["etag"]
    json_tag = client.get(url, headers={"Accept": JSON_TYPE}).headers["etag"]
    assert html_tag != json_tag
    # A JSON validator must not make the server answer 304 to an HTML request.
    cross = client.get(url, headers={"Accept": "text/html", "If-None-Match": json_tag})
    assert cross.status_code == 200


def test_a_new_upload_shows_at_once_and_changes_the_etags(client: httpx.Client, owner: str) -> None:
    ok(upload(client, "prod", owner, *build_wheel("etag-demo", "1.0")))
    url = "/prod/simple/etag-demo/"
    before = {a: client.get(url, headers={"Accept": a}) for a in (JSON_TYPE, TEXT_HTML)}
    root_before = client.get("/prod/simple/", headers={"Accept": JSON_TYPE})

    filename, data = build_wheel("etag-demo", "2.0")
    ok(upload(client, "prod", owner, filename, data))
    for accept, old in before.items():
        fresh = client.get(url, headers={"Accept": accept, "If-None-Match": old.headers["etag"]})
        assert fresh.status_code == 200, accept
        assert fresh.headers["etag"] != old.headers["etag"]
        assert filename in fresh.text
    assert simple_json(client, url)["versions"] == ["1.0", "2.0"]

    # A new project changes the root listing too.
    ok(upload(client, "prod", owner, *build_wheel("etag-demo-two", "1.0")))
    root = client.get(
        "/prod/simple/",
        headers={"Accept": JSON_TYPE, "If-None-Match": root_before.headers["etag"]},
    )
    assert root.status_code == 200
    assert "etag-demo-two" in [p["name"] for p in root.json()["projects"]]


# ------------------------------------------------------------------------ indexes


def test_the_same_name_in_two_indexes_is_independent(
    server: LiveServer, client: httpx.Client
) -> None:
    on_test = build_wheel("twin-index-demo", "1.0")
    on_prod = build_wheel("twin-index-demo", "2.0")
    ok(upload(client, "test", server.token("twin-test-owner", "test"), *on_test))
    ok(upload(client, "prod", server.token("twin-prod-owner", "prod"), *on_prod))

    test_page = simple_json(client, "/test/simple/twin-index-demo/")
    prod_page = simple_json(client, "/prod/simple/twin-index-demo/")
    assert [f["filename"] for f in test_page["files"]] == [on_test[0]]
    assert [f["filename"] for f in prod_page["files"]] == [on_prod[0]]
    assert test_page["versions"] == ["1.0"]
    assert prod_page["versions"] == ["2.0"]
    private = simple_json(client, "/private/simple/")["projects"]
    assert "twin-index-demo" not in [p["name"] for p in private]
    assert client.get("/private/simple/twin-index-demo/").status_code == 404


# ------------------------------------------------------------------------ yank and status


def test_yanked_release_shows_its_reason(client: httpx.Client, owner: str) -> None:
    ok(upload(client, "prod", owner, *build_wheel("yank-page-demo", "1.0")))
    kept = build_wheel("yank-page-demo", "1.1")
    ok(upload(client, "prod", owner, *kept))
    reason = 'broken <build> & "bad" wheel'
    manage(client, owner, "yank-page-demo/releases/1.0/yank", {"reason": reason})

    url = "/prod/simple/yank-page-demo/"
    files = {f["filename"]: f for f in simple_json(client, url)["files"]}
    assert files["yank_page_demo-1.0-py3-none-any.whl"]["yanked"] == reason
    assert files[kept[0]]["yanked"] is False

    text, page = simple_html(client, url)
    assert page.anchor("yank_page_demo-1.0-py3-none-any.whl")["data-yanked"] == reason
    assert "data-yanked" not in page.anchor(kept[0])
    assert "<build>" not in text  # escaped, not markup

    manage(client, owner, "yank-page-demo/releases/1.0/unyank", {})
    files = {f["filename"]: f for f in simple_json(client, url)["files"]}
    assert files["yank_page_demo-1.0-py3-none-any.whl"]["yanked"] is False
    _, page = simple_html(client, url)
    assert "data-yanked" not in page.anchor("yank_page_demo-1.0-py3-none-any.whl")


def test_yank_without_a_reason(client: httpx.Client, owner: str) -> None:
    filename, data = build_wheel("yank-noreason-demo", "1.0")
    ok(upload(client, "prod", owner, filename, data))
    manage(client, owner, "yank-noreason-demo/releases/1.0/yank", {})
    url = "/prod/simple/yank-noreason-demo/"
    # PEP 691: a reason is a non-empty string; without one, `true`.
    assert simple_json(client, url)["files"][0]["yanked"] is True
    _, page = simple_html(client, url)
    assert page.anchor(filename)["data-yanked"] == ""


def test_quarantined_project_lists_no_files(client: httpx.Client, owner: str) -> None:
    filename, data = build_wheel("quarantine-page-demo", "1.0")
    ok(upload(client, "prod", owner, filename, data))
    url = "/prod/simple/quarantine-page-demo/"
    assert simple_json(client, url)["files"]
    manage(
        client,
        owner,
        "quarantine-page-demo/status",
        {"status": "quarantined", "reason": "malware <found>"},
    )

    document = simple_json(client, url)
    assert document["files"] == []
    assert document["project-status"] == {"status": "quarantined", "reason": "malware <found>"}
    text, page = simple_html(client, url)
    assert page.anchors == []
    assert filename not in text
    assert page.meta["pypi:project-status"] == "quarantined"
    assert page.meta["pypi:project-status-reason"] == "malware <found>"
    assert "<found>" not in text

    manage(client, owner, "quarantine-page-demo/status", {"status": "active"})
    document = simple_json(client, url)
    assert [f["filename"] for f in document["files"]] == [filename]
    assert document["project-status"] == {"status": "active"}


def test_archived_project_refuses_uploads_but_lists_files(client: httpx.Client, owner: str) -> None:
    filename, data = build_wheel("archive-page-demo", "1.0")
    ok(upload(client, "prod", owner, filename, data))
    manage(client, owner, "archive-page-demo/status", {"status": "archived", "reason": "done"})

    refused = upload(client, "prod", owner, *build_wheel("archive-page-demo", "1.1"))
    assert refused.status_code == 403
    assert "archived" in refused.text

    url = "/prod/simple/archive-page-demo/"
    document = simple_json(client, url)
    assert [f["filename"] for f in document["files"]] == [filename]
    assert document["project-status"] == {"status": "archived", "reason": "done"}
    _, page = simple_html(client, url)
    assert page.texts == [filename]
    assert page.meta["pypi:project-status"] == "archived"
    downloaded = client.get(urljoin(f"{client.base_url}{url}", document["files"][0]["url"]))
    assert downloaded.content == data


def test_quarantined_project_refuses_uploads(client: httpx.Client, owner: str) -> None:
    ok(upload(client, "prod", owner, *build_wheel("quarantine-upload-demo", "1.0")))
    manage(client, owner, "quarantine-upload-demo/status", {"status": "quarantined"})
    refused = upload(client, "prod", owner, *build_wheel("quarantine-upload-demo", "1.1"))
    assert refused.status_code == 403


# ------------------------------------------------------------------------ behind a proxy


def test_every_url_carries_the_public_path_prefix(proxied: LiveServer) -> None:
    """Links and redirects must resolve, from the client's side of the proxy, into keyless."""
    with proxied.client() as client:
        filename, data = build_wheel("Proxy_Page.Demo", "1.0")
        ok(upload(client, "prod", proxied.token("proxy-owner", "prod"), filename, data))

        def public(path: str) -> str:
            return PUBLIC_URL + path

        for asked, expected in (
            ("/prod/simple/Proxy_Page.Demo/", "/prod/simple/proxy-page-demo/"),
            ("/prod/simple/Proxy_Page.Demo", "/prod/simple/proxy-page-demo/"),
            ("/prod/simple/proxy-page-demo", "/prod/simple/proxy-page-demo/"),
            ("/prod/simple", "/prod/simple/"),
        ):
            answer = client.get(asked)
            assert answer.status_code == 301
            assert urljoin(public(asked), answer.headers["location"]) == public(expected)

        _, page = simple_html(client, "/prod/simple/")
        href = str(page.anchor("Proxy_Page.Demo")["href"])
        assert urljoin(public("/prod/simple/"), href) == public("/prod/simple/proxy-page-demo/")

        project_page = "/prod/simple/proxy-page-demo/"
        entry = simple_json(client, project_page)["files"][0]
        file_url = urljoin(public(project_page), entry["url"])
        assert file_url.startswith(public("/files/"))
        # What the proxy forwards for that URL is the file.
        assert client.get(file_url.removeprefix(PUBLIC_URL)).content == data


def test_the_landing_document_points_at_public_urls(proxied: LiveServer) -> None:
    with proxied.client() as client:
        indexes = client.get("/").json()["indexes"]
    assert indexes["prod"]["simple"] == f"{PUBLIC_URL}/prod/simple/"
    assert indexes["prod"]["upload"] == f"{PUBLIC_URL}/prod/legacy/"
