"""An index with an upstream (index/mirror/): another keyless server started here plays the
upstream; pip and uv install through the mirror's one URL."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer, start_server, stop_server
from tests.index.uploading import upload

JSON = "application/vnd.pypi.simple.v1+json"


def mirror_config(upstream: LiveServer, ttl: int = 600) -> str:
    return f"""
[indexes.main]
profile = "pypi"
upstream = "{upstream.simple_url("test")}"
upstream-ttl = {ttl}
"""


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, upstream: LiveServer) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("mirror"), config_text=mirror_config(upstream))
    yield live
    stop_server(live)


def publish(
    server: LiveServer, index: str, name: str, version: str, **metadata: str
) -> dict[str, bytes]:
    """A wheel and an sdist of `name` `version` uploaded to `server`'s `index`."""
    token = server.token(f"{index}-owner", index)
    made = dict(
        [build_wheel(name, version, metadata=metadata), build_sdist(name, version)],
    )
    with server.client() as client:
        for filename, data in made.items():
            answer = upload(client, index, token, filename, data)
            assert answer.status_code == 200, answer.text
    return made


def first_file_url(client: httpx.Client, page: str) -> str:
    """The URL of the first file the simple page at `page` (a path on `client`'s server)
    lists, from its JSON form."""
    answer = client.get(page, headers={"Accept": JSON})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["files"][0]["url"])


def stored_soon(server: LiveServer, *sha256s: str) -> bool:
    """Whether the blobs are in `server`'s store within 5 s. A first download's last bytes go
    once their hash matches, and the file is made durable, placed and recorded just after:
    a test looking at the store from outside waits for that."""
    blobs = server.blobs()
    for _ in range(100):
        if all(blobs.exists(sha256) for sha256 in sha256s):
            return True
        time.sleep(0.05)
    return False


def test_upstream_pages_are_served_with_their_facts_and_links_here(
    upstream: LiveServer, mirror: LiveServer
) -> None:
    publish(upstream, "test", "page-lib", "1.0", requires_python=">=3.8")
    publish(upstream, "test", "page-lib", "2.0", requires_python=">=3.10")
    token = upstream.token("test-owner", "test")
    with upstream.client() as client:
        yanked = client.post(
            "/test/api/projects/page-lib/releases/2.0/yank",
            json={"reason": "broken"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert yanked.status_code == 200, yanked.text
        original = client.get("/test/simple/page-lib/", headers={"Accept": JSON}).json()
    with mirror.client() as client:
        answer = client.get("/main/simple/page-lib/", headers={"Accept": JSON})
        html = client.get("/main/simple/page-lib/", headers={"Accept": "text/html"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == JSON
    assert answer.headers["x-keyless-source"] == "upstream"
    mirrored = answer.json()
    assert mirrored["versions"] == original["versions"] == ["1.0", "2.0"]
    assert len(mirrored["files"]) == 4
    for theirs, ours in zip(original["files"], mirrored["files"], strict=True):
        for key in ("filename", "hashes", "requires-python", "core-metadata", "yanked", "size"):
            assert ours[key] == theirs[key], key
        assert (
            ours["url"]
            == f"/main/+mirror/page-lib/{theirs['hashes']['sha256']}/" + (theirs["filename"])
        )
    assert {f["yanked"] for f in mirrored["files"]} == {False, "broken"}
    assert all(f["core-metadata"] for f in mirrored["files"] if f["filename"].endswith(".whl"))
    # The same page as PEP 503 HTML, for clients that ask for it.
    assert html.headers["content-type"].startswith("text/html")
    links = re.findall(r'<a href="([^"]+)"([^>]*)>', html.text)
    assert len(links) == 4
    assert all(href.startswith("/main/+mirror/page-lib/") for href, _ in links)
    assert sum('data-yanked="broken"' in attrs for _, attrs in links) == 2
    # (the test's sdists declare no Requires-Python; each wheel does)
    assert sum('data-requires-python="&gt;=3.10"' in attrs for _, attrs in links) == 1
    assert sum('data-requires-python="&gt;=3.8"' in attrs for _, attrs in links) == 1
    # Revalidation: the ETag we send back gets a 304.
    with mirror.client() as client:
        again = client.get(
            "/main/simple/page-lib/",
            headers={"Accept": JSON, "If-None-Match": answer.headers["etag"]},
        )
    assert again.status_code == 304


def test_the_json_api_of_an_upstream_project_says_what_its_page_says(
    upstream: LiveServer, mirror: LiveServer
) -> None:
    """PyPI's JSON API of a name only the upstream has: its files from the upstream's page,
    at the mirror's URLs; `info` knows only the name, the version and Requires-Python."""
    made = {
        **publish(upstream, "test", "api-lib", "1.0", requires_python=">=3.8"),
        **publish(upstream, "test", "api-lib", "2.0"),  # yanked below: not the latest
        **publish(upstream, "test", "api-lib", "3.0a1"),  # a pre-release: not the latest
    }
    token = upstream.token("test-owner", "test")
    with upstream.client() as client:
        yanked = client.post(
            "/test/api/projects/api-lib/releases/2.0/yank",
            json={"reason": "broken"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert yanked.status_code == 200, yanked.text
        theirs = client.get("/test/simple/api-lib/", headers={"Accept": JSON}).json()
    with mirror.client() as client:
        answer = client.get("/main/pypi/api-lib/json")
        release = client.get("/main/pypi/api-lib/2.0/json")
        spelled = client.get("/main/pypi/api-lib/2.0.0/json")
        missing = client.get("/main/pypi/api-lib/9.9/json")
        unknown = client.get("/main/pypi/never-published/json")
        page = client.get("/main/simple/never-published/")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["x-keyless-source"] == "upstream"
    document = answer.json()
    info = document["info"]
    assert (info["name"], info["version"]) == ("api-lib", "1.0")
    assert info["requires_python"] is None  # its wheel says >=3.8, its sdist nothing
    assert (info["yanked"], info["yanked_reason"]) == (False, None)
    for unknown_field in ("summary", "description", "author", "license", "requires_dist"):
        assert info[unknown_field] is None, unknown_field
    assert info["classifiers"] == []
    assert list(document["releases"]) == ["1.0", "2.0", "3.0a1"]
    assert {f["filename"] for f in document["urls"]} == {
        f["filename"] for f in theirs["files"] if "-1.0" in f["filename"]
    }
    listed = [f for files in document["releases"].values() for f in files]
    assert sorted(f["filename"] for f in listed) == sorted(made)
    by_name = {f["filename"]: f for f in theirs["files"]}
    for entry in listed:
        original = by_name[entry["filename"]]
        assert entry["digests"] == {"sha256": original["hashes"]["sha256"]}
        assert entry["size"] == original["size"] == len(made[entry["filename"]])
        assert entry["requires_python"] == original["requires-python"]
        assert entry["yanked"] is (original["yanked"] is not False)
        assert entry["yanked_reason"] == (original["yanked"] or None)
        assert entry["packagetype"] == (
            "bdist_wheel" if entry["filename"].endswith(".whl") else "sdist"
        )
        assert entry["upload_time_iso_8601"] == original["upload-time"]
        assert entry["_source"] == "upstream"
        assert entry["url"] == (
            f"{mirror.url}/main/+mirror/api-lib/{original['hashes']['sha256']}/" + entry["filename"]
        )
    wheel = next(f for f in document["urls"] if f["filename"].endswith(".whl"))
    assert wheel["requires_python"] == ">=3.8"
    with mirror.client() as client:
        assert client.get(wheel["url"]).content == made[wheel["filename"]]
    # One release: its files as `urls`, its yank in `info`; a version spelled otherwise is
    # the same release (PEP 440), one the upstream lacks a 404 naming it.
    assert release.status_code == 200, release.text
    assert "releases" not in release.json()
    assert (release.json()["info"]["version"], release.json()["info"]["yanked"]) == ("2.0", True)
    assert release.json()["info"]["yanked_reason"] == "broken"
    assert {f["filename"] for f in release.json()["urls"]} == {f for f in made if "-2.0" in f}
    assert spelled.json() == release.json()
    assert missing.status_code == 404
    assert "'api-lib' on the upstream of index 'main' has no release '9.9'" in missing.text
    # A name neither has: the simple page's 404, word for word.
    assert unknown.status_code == 404
    assert unknown.text == page.text


def test_files_are_fetched_checked_stored_and_their_metadata_too(
    upstream: LiveServer, mirror: LiveServer
) -> None:
    made = publish(upstream, "test", "file-lib", "1.0")
    with mirror.client() as client:
        page = client.get("/main/simple/file-lib/", headers={"Accept": JSON}).json()
        wheel = next(f for f in page["files"] if f["filename"].endswith(".whl"))
        sha256 = wheel["hashes"]["sha256"]
        assert not mirror.blobs().exists(sha256)
        first = client.get(wheel["url"])
        metadata = client.get(wheel["url"] + ".metadata")
    assert first.status_code == 200, first.text
    assert first.content == made[wheel["filename"]]
    assert mirror.blobs().exists(sha256)  # stored once, in the content-addressed store
    assert metadata.status_code == 200, metadata.text
    assert b"Name: file-lib" in metadata.content


def test_a_name_the_index_has_is_never_taken_from_upstream(
    upstream: LiveServer, mirror: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    """Dependency confusion: upstream publishes internal-lib 99.0, the index has 1.0."""
    publish(upstream, "test", "public-dep", "1.0")
    publish(upstream, "test", "internal-lib", "99.0")
    publish(mirror, "main", "internal-lib", "1.0", requires_dist="public-dep")
    with mirror.client() as client:
        answer = client.get("/main/simple/internal-lib/", headers={"Accept": JSON})
    assert answer.json()["versions"] == ["1.0"]
    assert "x-keyless-source" not in answer.headers
    index_url = mirror.simple_url("main")
    for installer in ("pip", "uv"):
        target = tmp_path / installer
        if installer == "pip":
            command = [sys.executable, "-m", "pip", "install", "--no-cache-dir"]
        else:
            command = [sys.executable, "-m", "uv", "pip", "install", "--no-cache"]
        done = subprocess.run(
            [*command, "--target", str(target), "--index-url", index_url, "internal-lib"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        installed = sorted(p.name for p in target.glob("*.dist-info"))
        assert installed == ["internal_lib-1.0.dist-info", "public_dep-1.0.dist-info"], installer


def test_a_tampered_upstream_file_is_refused_and_not_stored(
    upstream: LiveServer, mirror: LiveServer
) -> None:
    made = publish(upstream, "test", "tampered-lib", "1.0")
    with mirror.client() as client:
        page = client.get("/main/simple/tampered-lib/", headers={"Accept": JSON}).json()
    wheel = next(f for f in page["files"] if f["filename"].endswith(".whl"))
    sha256 = wheel["hashes"]["sha256"]
    # The upstream's stored bytes change behind its page (same length, one byte flipped),
    # through its blob store's own interface: the same on the folder and on S3.
    original = made[wheel["filename"]]
    store = upstream.blobs()
    assert store.remove(sha256)
    pending = store.new_writer()
    pending.write(original[:-1] + bytes([original[-1] ^ 1]))
    pending.finish()
    store.place(pending, sha256, len(original))
    pending.discard()
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError), mirror.client() as client:
            client.get(wheel["url"])
        assert not mirror.blobs().exists(sha256)
    assert "does not match its upstream hash" in mirror.log()
    assert "Traceback" not in mirror.log()


def test_stored_files_and_cached_pages_outlive_the_upstream(tmp_path: Path) -> None:
    upstream = start_server(tmp_path / "upstream")
    config = mirror_config(upstream, ttl=0)
    mirror = start_server(tmp_path / "mirror", config_text=config)
    try:
        made = publish(upstream, "test", "kept-lib", "1.0")
        with mirror.client() as client:
            page = client.get("/main/simple/kept-lib/", headers={"Accept": JSON})
            wheel = next(f for f in page.json()["files"] if f["filename"].endswith(".whl"))
            assert client.get(wheel["url"]).status_code == 200
            metadata = client.get(wheel["url"] + ".metadata")
            assert metadata.status_code == 200
            assert client.get("/main/simple/").status_code == 200
        stop_server(upstream)
        with mirror.client() as client:
            root = client.get("/main/simple/", headers={"Accept": JSON})
            stale = client.get("/main/simple/kept-lib/", headers={"Accept": JSON})
            stale_api = client.get("/main/pypi/kept-lib/json")
            again = client.get(wheel["url"])
            never_seen = client.get("/main/simple/never-seen/")
            never_seen_api = client.get("/main/pypi/never-seen/json")
        assert root.status_code == 200
        assert [p["name"] for p in root.json()["projects"]] == ["kept-lib"]
        assert root.headers["x-keyless-stale"].startswith("upstream unreachable")
        assert stale.status_code == 200
        assert stale.json()["files"] == page.json()["files"]
        assert stale.headers["x-keyless-stale"].startswith("upstream unreachable")
        assert again.status_code == 200
        assert again.content == made[wheel["filename"]]
        assert never_seen.status_code == 502
        assert upstream.simple_url("test") in never_seen.text
        # The JSON API answers from the same cached page, and fails as the page does.
        assert stale_api.status_code == 200, stale_api.text
        assert stale_api.headers["x-keyless-stale"].startswith("upstream unreachable")
        assert [f["filename"] for f in stale_api.json()["urls"]] == [
            f["filename"] for f in page.json()["files"]
        ]
        assert (never_seen_api.status_code, never_seen_api.text) == (502, never_seen.text)
        # A restart (garbage collection runs at start; the page cache is gone): the stored
        # file and metadata file are still served, the upstream still down.
        stop_server(mirror)
        mirror = start_server(tmp_path / "mirror", config_text=config)
        with mirror.client() as client:
            restarted = client.get(wheel["url"])
            restarted_metadata = client.get(wheel["url"] + ".metadata")
        assert restarted.status_code == 200, restarted.text
        assert restarted.content == made[wheel["filename"]]
        assert restarted_metadata.content == metadata.content
    finally:
        stop_server(mirror)
        stop_server(upstream)


def test_the_root_page_lists_local_and_upstream_names_once(
    upstream: LiveServer, mirror: LiveServer
) -> None:
    publish(upstream, "test", "root-up", "1.0")
    publish(upstream, "test", "Root_Both", "2.0")
    publish(mirror, "main", "root-local", "1.0")
    publish(mirror, "main", "root-both", "1.0")
    with mirror.client() as client:
        answer = client.get("/main/simple/", headers={"Accept": JSON})
        html = client.get("/main/simple/")
    assert answer.status_code == 200, answer.text
    names = [p["name"] for p in answer.json()["projects"]]
    assert {"root-up", "root-local", "root-both"} <= set(names)
    assert "Root_Both" not in names  # the index's own spelling, once
    assert len(names) == len(set(names))
    assert '<a href="/main/simple/root-up/">root-up</a>' in html.text
    assert '<a href="/main/simple/root-local/">root-local</a>' in html.text
    assert html.text.count("/main/simple/root-both/") == 1


def test_a_name_a_pending_publisher_reserves_is_never_taken_from_upstream(
    upstream: LiveServer, mirror: LiveServer
) -> None:
    publish(upstream, "test", "reserved-lib", "5.0")
    with mirror.client() as client:
        before = client.get("/main/simple/reserved-lib/", headers={"Accept": JSON})
        assert before.status_code == 200  # not reserved yet: the upstream's
        token = mirror.token("reserver", "main")
        reserved = client.post(
            "/main/api/pending-publishers",
            json={
                "project": "Reserved_Lib",  # kept as typed, compared normalized
                "kind": "github",
                "config": {"owner": "acme", "repository": "reserved", "workflow": "r.yml"},
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reserved.status_code == 200, reserved.text
        page = client.get("/main/simple/reserved-lib/", headers={"Accept": JSON})
        api = client.get("/main/pypi/reserved-lib/json", headers={"Accept": JSON})
        wheel = before.json()["files"][0]["url"]
        file = client.get(wheel)
    assert page.status_code == 404
    assert file.status_code == 404
    assert (api.status_code, api.json()) == (404, page.json())
    assert "keeps 'reserved-lib' for itself" in page.text
    assert "keeps 'reserved-lib' for itself" in file.text
