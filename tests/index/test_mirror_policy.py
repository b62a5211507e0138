"""What an index with an upstream takes from it, and what it keeps for itself: name patterns an
admin reserves (`reserved-names`), the per-project merge list (`upstream-merge`) and offline
mode. Another keyless server started here plays the upstream."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.index.test_mirror import JSON, publish


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, upstream: LiveServer) -> Iterator[LiveServer]:
    config = f"""
[indexes.main]
upstream = "{upstream.simple_url("test")}"
reserved-names = ["Acme_*", "exact.name"]
upstream-merge = ["Shared_Lib", "acme-merged"]
"""
    live = start_server(tmp_path_factory.mktemp("mirror"), config_text=config)
    yield live
    stop_server(live)


def test_names_matching_a_reserved_pattern_are_never_taken_from_upstream(
    upstream: LiveServer, mirror: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    """An attacker publishes acme-tools (matching `Acme_*`, normalized) upstream."""
    publish(upstream, "test", "acme-tools", "99.0")
    publish(upstream, "test", "Exact_Name", "1.0")
    publish(upstream, "test", "acmeish", "1.0")  # no `-`: not matched by acme-*
    with upstream.client() as client:
        theirs = client.get("/test/simple/acme-tools/", headers={"Accept": JSON}).json()
    wheel = theirs["files"][0]
    with mirror.client() as client:
        page = client.get("/main/simple/acme-tools/", headers={"Accept": JSON})
        exact = client.get("/main/simple/exact-name/", headers={"Accept": JSON})
        other = client.get("/main/simple/acmeish/", headers={"Accept": JSON})
        # The file's mirror URL, made up from the upstream's page: refused all the same.
        file = client.get(
            f"/main/+mirror/acme-tools/{wheel['hashes']['sha256']}/{wheel['filename']}"
        )
        root = client.get("/main/simple/", headers={"Accept": JSON})
        api = client.get("/main/pypi/acme-tools/json", headers={"Accept": JSON})
        other_api = client.get("/main/pypi/acmeish/json")
    assert page.status_code == 404
    assert "keeps 'acme-tools' for itself (reserved by the pattern 'acme-*')" in page.text
    assert (api.status_code, api.json()) == (404, page.json())  # the JSON API keeps it too
    assert other_api.status_code == 200, other_api.text
    assert other_api.json()["info"]["version"] == "1.0"
    assert exact.status_code == 404
    assert "'exact-name'" in exact.text
    assert file.status_code == 404
    assert "reserved by the pattern 'acme-*'" in file.text
    assert other.status_code == 200
    names = {p["name"] for p in root.json()["projects"]}
    assert "acmeish" in names
    assert not names & {"acme-tools", "Exact_Name"}
    # What a user sees: pip finds no acme-tools at all.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target",
         str(tmp_path / "t"), "--index-url", mirror.simple_url("main"), "acme-tools"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "No matching distribution found for acme-tools" in done.stderr


def test_a_reserved_name_published_on_the_index_is_served_from_it(
    upstream: LiveServer, mirror: LiveServer
) -> None:
    publish(upstream, "test", "acme-core", "99.0")
    publish(mirror, "main", "acme-core", "1.0")
    with mirror.client() as client:
        page = client.get("/main/simple/acme-core/", headers={"Accept": JSON})
    assert page.status_code == 200
    assert page.json()["versions"] == ["1.0"]
    with mirror.client() as client:
        api = client.get("/main/pypi/acme-core/json")
    assert api.status_code == 200, api.text
    assert list(api.json()["releases"]) == ["1.0"]
    assert "x-keyless-source" not in api.headers


def test_a_project_on_the_merge_list_lists_both_and_says_where_each_file_comes_from(
    upstream: LiveServer, mirror: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    """shared-lib 1.0 is the index's; the upstream has its own 1.0 (same filenames, other
    bytes: the index's win) and a 2.0, which pip installs through the mirror."""
    ours = publish(mirror, "main", "shared-lib", "1.0")
    publish(upstream, "test", "shared-lib", "1.0", summary="the upstream's own 1.0")
    theirs = publish(upstream, "test", "shared-lib", "2.0")
    publish(upstream, "test", "plain-up", "1.0")
    with mirror.client() as client:
        page = client.get("/main/simple/shared-lib/", headers={"Accept": JSON})
        html = client.get("/main/simple/shared-lib/", headers={"Accept": "text/html"})
        api = client.get("/main/pypi/shared-lib/json")
        api_1 = client.get("/main/pypi/shared-lib/1.0/json")
        plain = client.get("/main/simple/plain-up/", headers={"Accept": JSON})
    assert page.status_code == 200, page.text
    assert page.headers["x-keyless-source"] == "index+upstream"
    document = page.json()
    assert document["versions"] == ["1.0", "2.0"]
    assert document["meta"]["_upstream"] == upstream.simple_url("test")
    sources = {f["filename"]: f["_source"] for f in document["files"]}
    assert sources == {**dict.fromkeys(ours, "local"), **dict.fromkeys(theirs, "upstream")}
    local_wheel = next(
        f for f in document["files"] if f["filename"].endswith("1.0-py3-none-any.whl")
    )
    assert local_wheel["url"].startswith("/files/")  # the index's own bytes, not the upstream's
    links = re.findall(
        r'<a href="[^"]+"[^>]*data-keyless-source="(\w+)"[^>]*>([^<]+)</a>', html.text
    )
    assert {name: source for source, name in links} == sources
    assert api.status_code == 200, api.text
    releases = api.json()["releases"]
    assert {f["filename"]: f["_source"] for f in releases["1.0"]} == dict.fromkeys(ours, "local")
    assert {f["filename"]: f["_source"] for f in releases["2.0"]} == dict.fromkeys(
        theirs, "upstream"
    )
    assert {f["_source"] for f in api_1.json()["urls"]} == {"local"}
    assert all(f["_source"] == "upstream" for f in plain.json()["files"])
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target",
         str(tmp_path / "t"), "--index-url", mirror.simple_url("main"), "shared-lib"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "t" / "shared_lib-2.0.dist-info").is_dir()


def test_a_reserved_name_on_the_merge_list_is_merged(
    upstream: LiveServer, mirror: LiveServer
) -> None:
    """The merge list is the explicit exception: it wins over a reserved pattern."""
    publish(upstream, "test", "acme-merged", "3.0")
    with mirror.client() as client:
        page = client.get("/main/simple/acme-merged/", headers={"Accept": JSON})
        wheel = next(f for f in page.json()["files"] if f["filename"].endswith(".whl"))
        file = client.get(wheel["url"])
    assert page.status_code == 200
    assert file.status_code == 200
