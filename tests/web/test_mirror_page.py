"""The web UI of an index with an upstream, in a real browser: it names the upstream and marks
the projects mirrored from it and those merged with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer, start_server, stop_server
from tests.index.test_mirror import publish

from .conftest import screenshot


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    upstream = start_server(tmp_path / "upstream")
    config = f"""
[indexes.main]
upstream = "{upstream.simple_url("test")}"
upstream-merge = ["ui-merged"]
"""
    mirror = start_server(tmp_path / "mirror", config_text=config)
    yield upstream, mirror
    stop_server(mirror)
    stop_server(upstream)


def test_the_index_page_marks_mirrored_and_merged_projects(
    browser: Any, servers: tuple[LiveServer, LiveServer]
) -> None:
    upstream, mirror = servers
    publish(upstream, "test", "ui-public", "1.0")
    publish(upstream, "test", "ui-merged", "2.0")
    publish(mirror, "main", "ui-merged", "1.0")
    publish(mirror, "main", "ui-local", "1.0")
    with mirror.client() as client:  # what pip would do: the page, then a file
        page = client.get(
            "/main/simple/ui-public/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        ).json()
        assert client.get(page["files"][0]["url"]).status_code == 200
    context = browser.new_context(base_url=mirror.url)
    try:
        tab = context.new_page()
        tab.goto("/main/")
        expect(tab.locator("dd.upstream")).to_contain_text(upstream.simple_url("test"))
        mirrored = tab.locator("ul.mirrored li")
        expect(mirrored).to_have_count(1)
        expect(mirrored.first).to_contain_text("ui-public")
        expect(mirrored.first.locator(".badge")).to_have_text("mirrored")
        expect(mirrored.first).to_contain_text("1 file stored here")
        local = tab.locator("ul.projects:not(.mirrored) li")
        merged = local.filter(has_text="ui-merged")
        expect(merged.locator(".badge")).to_have_text("merged with upstream")
        expect(local.filter(has_text="ui-local").locator(".badge")).to_have_count(0)
        screenshot(tab, "index-with-upstream")
        tab.locator("ul.mirrored a").first.click()
        expect(tab.locator("a")).to_have_count(2)  # the mirrored page: both files, linked here
    finally:
        context.close()
