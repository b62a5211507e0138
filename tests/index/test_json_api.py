"""PyPI's JSON API (/{index}/pypi/{name}/json and /{name}/{version}/json) over real HTTP.

The fields twine, uv, Renovate and release tooling read, the choice of the latest release, and
the status codes they branch on (Renovate falls back only on 404).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.builders import build_wheel
from tests.conftest import PUBLIC_URL, LiveServer

from .uploading import Published, publish_wheel_and_sdist, upload

CLASSIFIERS = [
    "License :: OSI Approved :: MIT License",
    "Programming Language :: Python :: 3",
]
PROJECT_URLS = {"Homepage": "https://example.org/jd", "Source": "https://example.org/jd/src"}
METADATA: dict[str, Any] = {
    "summary": "JSON API demo",
    "requires_python": ">=3.10",
    "classifiers": CLASSIFIERS,
    "project_urls": PROJECT_URLS,
    "author": "Ada Lovelace",
    "requires_dist": ["httpx>=0.27"],
    "description": "# JSON demo\n\nHello.\n",
    "description_content_type": "text/markdown",
}


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text


def get_json(client: httpx.Client, path: str) -> dict[str, Any]:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = answer.json()
    return document


def yank(client: httpx.Client, token: str, project: str, version: str, reason: str) -> None:
    answer = client.post(
        f"/prod/api/projects/{project}/releases/{version}/yank",
        json={"reason": reason},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> str:
    return server.token("json-owner", "prod")


@pytest.fixture(scope="module")
def published(client: httpx.Client, owner: str) -> Published:
    return publish_wheel_and_sdist(client, "prod", owner, "Json_Api.Demo", "1.0", METADATA)


# ------------------------------------------------------------------------------- fields


def test_info_fields(client: httpx.Client, published: Published) -> None:
    info = get_json(client, "/prod/pypi/json-api-demo/json")["info"]
    assert info["name"] == "Json_Api.Demo"
    assert info["version"] == "1.0"
    assert info["summary"] == "JSON API demo"
    assert info["requires_python"] == ">=3.10"
    assert info["project_urls"] == PROJECT_URLS
    assert info["classifiers"] == CLASSIFIERS
    assert info["author"] == "Ada Lovelace"
    assert info["requires_dist"] == ["httpx>=0.27"]
    assert info["description"].strip() == "# JSON demo\n\nHello."
    assert info["description_content_type"] == "text/markdown"
    assert info["yanked"] is False
    assert info["yanked_reason"] is None


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_file_fields(client: httpx.Client, published: Published, kind: str) -> None:
    document = get_json(client, "/prod/pypi/json-api-demo/json")
    filename, data = published.wheel if kind == "wheel" else published.sdist
    entry = next(f for f in document["urls"] if f["filename"] == filename)
    assert entry["packagetype"] == ("bdist_wheel" if kind == "wheel" else "sdist")
    assert entry["python_version"] == ("py3" if kind == "wheel" else "source")
    assert entry["digests"] == {
        "md5": hashlib.md5(data).hexdigest(),  # noqa: S324 - the API's field
        "sha256": hashlib.sha256(data).hexdigest(),
        "blake2b_256": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }
    assert entry["size"] == len(data)
    assert entry["requires_python"] == ">=3.10"
    assert entry["yanked"] is False
    assert entry["yanked_reason"] is None

    iso = dt.datetime.strptime(entry["upload_time_iso_8601"], "%Y-%m-%dT%H:%M:%S.%fZ")
    iso = iso.replace(tzinfo=dt.UTC)
    assert published.before - dt.timedelta(seconds=1) <= iso <= published.after
    # PyPI's `upload_time` is the same moment without fraction or zone.
    assert entry["upload_time"] == iso.strftime("%Y-%m-%dT%H:%M:%S")

    url = urljoin(f"{client.base_url}/prod/pypi/json-api-demo/json", entry["url"])
    assert "?" not in url
    assert urlsplit(url).path.endswith("/" + filename)
    assert client.get(url).content == data


def test_urls_and_releases(client: httpx.Client, published: Published) -> None:
    document = get_json(client, "/prod/pypi/json-api-demo/json")
    names = {published.wheel[0], published.sdist[0]}
    assert {f["filename"] for f in document["urls"]} == names
    assert set(document["releases"]) == {"1.0"}
    assert {f["filename"] for f in document["releases"]["1.0"]} == names
    assert isinstance(document["last_serial"], int)
    assert not isinstance(document["last_serial"], bool)


def test_last_serial_grows_after_a_change(client: httpx.Client, owner: str) -> None:
    ok(upload(client, "prod", owner, *build_wheel("serial-demo", "1.0")))
    first = get_json(client, "/prod/pypi/serial-demo/json")["last_serial"]
    # The simple API reports the same serial (PyPI's `_last-serial`).
    simple = client.get(
        "/prod/simple/serial-demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()
    assert simple["meta"]["_last-serial"] == first

    ok(upload(client, "prod", owner, *build_wheel("serial-demo", "1.1")))
    second = get_json(client, "/prod/pypi/serial-demo/json")["last_serial"]
    assert second > first
    yank(client, owner, "serial-demo", "1.0", "old")
    third = get_json(client, "/prod/pypi/serial-demo/json")["last_serial"]
    assert third > second


# ------------------------------------------------------------------------------- latest


def test_latest_is_the_newest_final_non_yanked_release(client: httpx.Client, owner: str) -> None:
    for version in ("1.9", "1.10", "1.11", "2.0rc1"):
        ok(upload(client, "prod", owner, *build_wheel("latest-demo", version)))
    yank(client, owner, "latest-demo", "1.11", "broken")

    document = get_json(client, "/prod/pypi/latest-demo/json")
    # 2.0rc1 is a pre-release and 1.11 is yanked; 1.10 beats 1.9 as a version, not as text.
    assert document["info"]["version"] == "1.10"
    assert [f["filename"] for f in document["urls"]] == ["latest_demo-1.10-py3-none-any.whl"]
    assert document["info"]["yanked"] is False
    assert set(document["releases"]) == {"1.9", "1.10", "1.11", "2.0rc1"}
    yanked = document["releases"]["1.11"][0]
    assert yanked["yanked"] is True
    assert yanked["yanked_reason"] == "broken"


def test_only_pre_releases(client: httpx.Client, owner: str) -> None:
    for version in ("3.0a1", "3.0b2", "3.0b10"):
        ok(upload(client, "prod", owner, *build_wheel("prerelease-demo", version)))
    document = get_json(client, "/prod/pypi/prerelease-demo/json")
    assert document["info"]["version"] == "3.0b10"


# ------------------------------------------------------------------------------- one release


def test_version_endpoint(client: httpx.Client, owner: str) -> None:
    ok(upload(client, "prod", owner, *build_wheel("release-json-demo", "1.0")))
    ok(upload(client, "prod", owner, *build_wheel("release-json-demo", "2.0")))
    yank(client, owner, "release-json-demo", "1.0", "superseded")

    old = get_json(client, "/prod/pypi/release-json-demo/1.0/json")
    assert old["info"]["version"] == "1.0"
    assert old["info"]["yanked"] is True
    assert old["info"]["yanked_reason"] == "superseded"
    assert [f["filename"] for f in old["urls"]] == ["release_json_demo-1.0-py3-none-any.whl"]
    assert old["urls"][0]["yanked"] is True
    assert isinstance(old["last_serial"], int)

    new = get_json(client, "/prod/pypi/release-json-demo/2.0/json")
    assert new["info"]["version"] == "2.0"
    assert [f["filename"] for f in new["urls"]] == ["release_json_demo-2.0-py3-none-any.whl"]


@pytest.mark.parametrize("asked", ["1.0", "1.0.0", "1.0.0.0", "01.0"])
def test_version_spellings_find_the_same_release(
    client: httpx.Client, owner: str, asked: str
) -> None:
    filename, data = build_wheel("spelling-json-demo", "1.0.0")
    ok(upload(client, "prod", owner, filename, data))
    document = get_json(client, f"/prod/pypi/spelling-json-demo/{asked}/json")
    assert document["info"]["version"] == "1.0.0"
    assert [f["filename"] for f in document["urls"]] == [filename]


def test_quarantined_project_offers_no_files(client: httpx.Client, owner: str) -> None:
    ok(upload(client, "prod", owner, *build_wheel("quarantine-json-demo", "1.0")))
    answer = client.post(
        "/prod/api/projects/quarantine-json-demo/status",
        json={"status": "quarantined"},
        headers={"Authorization": f"Bearer {owner}"},
    )
    assert answer.status_code == 200, answer.text
    document = get_json(client, "/prod/pypi/quarantine-json-demo/json")
    assert document["urls"] == []
    assert all(files == [] for files in document["releases"].values())
    assert get_json(client, "/prod/pypi/quarantine-json-demo/1.0/json")["urls"] == []


# ------------------------------------------------------------------------------- status codes


@pytest.mark.parametrize(
    "path",
    [
        "/prod/pypi/no-such-json-project/json",
        "/prod/pypi/no-such-json-project/1.0/json",
        "/prod/pypi/json-api-demo/9.9/json",  # known project, unknown version
        "/prod/pypi/json-api-demo/not-a-version/json",
        "/nope/pypi/json-api-demo/json",
        "/nope/pypi/json-api-demo/1.0/json",
        "/test/pypi/json-api-demo/json",  # exists on prod only
    ],
)
def test_unknown_is_404(client: httpx.Client, published: Published, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404, answer.text
    json_answer = client.get(path, headers={"Accept": "application/json"})
    assert json_answer.status_code == 404
    assert json_answer.json()["message"]


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/prod/pypi/Json_Api.Demo/json", "/prod/pypi/json-api-demo/json"),
        ("/prod/pypi/JSON-API-DEMO/json", "/prod/pypi/json-api-demo/json"),
        ("/prod/pypi/json__api.demo/1.0/json", "/prod/pypi/json-api-demo/1.0/json"),
    ],
)
def test_non_normalized_name_redirects(
    client: httpx.Client, published: Published, path: str, target: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 301
    location = urljoin(f"{client.base_url}{path}", answer.headers["location"])
    assert urlsplit(location).path == target
    assert client.get(location).json()["info"]["name"] == "Json_Api.Demo"


# ------------------------------------------------------------------------------- behind a proxy


def test_urls_and_redirects_use_the_public_url(proxied: LiveServer) -> None:
    """The address the proxy reached us at is not the one clients use."""
    with proxied.client() as client:
        filename, data = build_wheel("Proxy_Json.Demo", "1.0")
        ok(upload(client, "prod", proxied.token("proxy-json-owner", "prod"), filename, data))
        document = get_json(client, "/prod/pypi/proxy-json-demo/json")
        url = document["urls"][0]["url"]
        assert url.startswith(f"{PUBLIC_URL}/files/")
        assert client.get(url.removeprefix(PUBLIC_URL)).content == data
        assert document["info"]["project_url"].startswith(f"{PUBLIC_URL}/prod/")

        for asked, expected in (
            ("/prod/pypi/Proxy_Json.Demo/json", "/prod/pypi/proxy-json-demo/json"),
            ("/prod/pypi/Proxy_Json.Demo/1.0/json", "/prod/pypi/proxy-json-demo/1.0/json"),
        ):
            answer = client.get(asked)
            assert answer.status_code == 301
            location = urljoin(PUBLIC_URL + asked, answer.headers["location"])
            assert location == PUBLIC_URL + expected
