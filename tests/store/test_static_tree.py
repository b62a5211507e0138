"""The folder that holds the static read path (`store/static_tree.py`): every change atomic,
unchanged bytes left alone, nothing outside the folder, distributions linked to their blobs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keyless.store.blobs import LocalBlobStore
from keyless.store.static_tree import FolderTarget


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def target(tmp_path: Path, blobs: LocalBlobStore) -> FolderTarget:
    return FolderTarget(tmp_path / "static", blobs)


def test_a_page_is_replaced_whole_never_rewritten_in_place(target: FolderTarget) -> None:
    path = "prod/simple/demo/index.json"
    assert target.put(path, b'{"old": true}')
    file = target.root / path
    with file.open("rb") as reader:  # nginx sending the page while it changes
        assert target.put(path, b'{"new": "and longer"}')
        assert reader.read() == b'{"old": true}'  # the old file, whole
    assert file.read_bytes() == b'{"new": "and longer"}'
    assert file.stat().st_mode & 0o777 == 0o644  # readable by the web server's user
    assert [p.name for p in file.parent.iterdir()] == ["index.json"]  # no temp file left


def test_unchanged_bytes_are_not_written_again(target: FolderTarget) -> None:
    path = "prod/simple/index.html"
    assert target.put(path, b"<html></html>")
    before = os.stat(target.root / path)
    assert not target.put(path, b"<html></html>")
    after = os.stat(target.root / path)
    # nginx's ETag is mtime and size: a client's cached copy stays valid.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("path", ["../outside", "prod/../../x", "/etc/passwd", "a//b", ".tmp-x"])
def test_no_path_leaves_the_folder(target: FolderTarget, path: str) -> None:
    with pytest.raises(ValueError, match="not a path inside the static tree"):
        target.put(path, b"x")


def test_removing_the_last_page_of_a_folder_removes_the_folder(target: FolderTarget) -> None:
    target.put("prod/simple/gone/index.html", b"h")
    target.put("prod/simple/gone/index.json", b"j")
    assert target.remove("prod/simple/gone/index.html")
    assert (target.root / "prod/simple/gone").is_dir()
    assert target.remove("prod/simple/gone/index.json")
    assert not (target.root / "prod").exists()
    assert not target.remove("prod/simple/gone/index.json")
    assert sorted(target.paths()) == []


def test_a_distribution_is_a_link_to_its_blob(target: FolderTarget, blobs: LocalBlobStore) -> None:
    sha256 = blobs.put_bytes(b"wheel bytes")
    path = f"files/{sha256}/demo-1.0-py3-none-any.whl"
    assert target.link_blob(path, sha256)
    linked = target.root / path
    assert linked.read_bytes() == b"wheel bytes"
    assert os.path.samefile(linked, blobs.path_for(sha256))  # no second copy
    assert target.link_blob(path, sha256)  # again: nothing to do
    assert not target.link_blob(f"files/{'0' * 64}/missing.whl", "0" * 64)
    assert sorted(target.paths()) == [path]


def test_a_listing_drops_temp_files_a_dead_writer_left_and_keeps_fresh_ones(
    target: FolderTarget,
) -> None:
    target.put("prod/simple/index.html", b"h")
    folder = target.root / "prod" / "simple"
    stale, fresh = folder / ".tmp-stale", folder / ".tmp-fresh"
    stale.write_bytes(b"half a page")
    fresh.write_bytes(b"a page being written")
    os.utime(stale, (0, 0))
    assert sorted(target.paths()) == ["prod/simple/index.html"]
    assert not stale.exists()
    assert fresh.exists()
