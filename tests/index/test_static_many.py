"""The static tree of a server is current whichever process made the change.

Two `keyless serve` processes share one database (as two machines would), each keeping the
static read path in a folder of its own. A change made through the first shows in the
second's folder within a second, though no request reaches the second (its writer follows
the change serial, `StaticWriter`'s feed); and a page the second had cached before the change
is not written from that stale copy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.builders import build_wheel
from tests.conftest import SERVER_CONFIG, LiveServer, start_server, stop_server

from .uploading import upload

WITHIN = 1.0
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def static_config(folder: Path) -> str:
    return SERVER_CONFIG + f'\n[static]\nfolder = "{folder}"\n'


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer, Path]]:
    first = start_server(tmp_path / "first", config_text=static_config(tmp_path / "tree-1"))
    second_tree = tmp_path / "tree-2"
    second = start_server(
        tmp_path / "second", config_text=static_config(second_tree), data_dir=first.data_dir
    )
    yield first, second, second_tree
    stop_server(second)
    stop_server(first)


def wait_for(what: str, seen: Callable[[], bool]) -> None:
    since = time.monotonic()
    while not seen():
        if time.monotonic() - since > WITHIN:
            pytest.fail(f"{what}: not in the other server's tree within {WITHIN} s")
        time.sleep(0.02)
    print(f"{what}: in the other server's tree after {(time.monotonic() - since) * 1000:.0f} ms")


def stored(tree: Path, path: str) -> dict[str, object] | None:
    try:
        document: dict[str, object] = json.loads((tree / path).read_bytes())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return document


def test_a_change_through_one_server_reaches_the_others_tree(
    pair: tuple[LiveServer, LiveServer, Path],
) -> None:
    first, second, tree = pair
    token = first.token("static-many-owner", "prod")
    old_name, old = build_wheel("static-many", "1.0")
    new_name, new = build_wheel("static-many", "1.1")
    with first.client() as one, second.client() as other:
        assert upload(one, "prod", token, old_name, old).status_code == 200
        page = "prod/simple/static-many/index.json"

        def has(filename: str) -> Callable[[], bool]:
            def check() -> bool:
                document = stored(tree, page)
                files = document["files"] if document else []
                assert isinstance(files, list)
                return filename in [f["filename"] for f in files]

            return check

        wait_for("the first upload", has(old_name))
        # Now the second server has the page in memory, as it was.
        assert other.get("/prod/simple/static-many/", headers={"Accept": JSON_TYPE}).is_success
        assert upload(one, "prod", token, new_name, new).status_code == 200
        wait_for("the second upload", has(new_name))
        served = other.get("/prod/simple/static-many/", headers={"Accept": JSON_TYPE})
        assert (tree / page).read_bytes() == served.content
