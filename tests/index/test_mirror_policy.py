"""What an index with an upstream takes from it, and what it keeps for itself: name patterns an
admin reserves (`reserved-names`), the per-project merge list (`upstream-merge`) and offline
mode. Another keyless server started here plays the upstream."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, run_keyless, start_server, stop_server
from tests.index.test_mirror import JSON, publish


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("upstream"))
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, upstream: LiveServer) -> Iterator[LiveServer]:
    config = f"""
[indexes.main]
upstream = "{upstream.simple_url("test")}"
reserved-names = ["Acme_*", "exact.name"]
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
    assert page.status_code == 404
    assert "keeps 'acme-tools' for itself (reserved by the pattern 'acme-*')" in page.text
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


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ('upstream = "https://example.org/simple/"\nreserved-names = "acme-*"', "must be a list"),
        ('upstream = "https://example.org/simple/"\nreserved-names = ["acme/*"]', "'acme/*'"),
        ('reserved-names = ["acme-*"]', "only matters for an index with an upstream"),
    ],
)
def test_name_lists_that_cannot_work_stop_the_server_saying_why(
    tmp_path: Path, setting: str, said: str
) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text(f"[indexes.main]\n{setting}\n", encoding="utf-8")
    done = run_keyless("serve", "--config", str(config), "--data", str(tmp_path / "data"))
    assert done.returncode != 0
    assert said in done.stderr
    assert "Traceback" not in done.stderr
