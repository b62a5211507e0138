"""Distribution files and their PEP 658 metadata at /files/<sha256>/<filename>, over real HTTP."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer

from .uploading import core_metadata_of, upload

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text


def files_of(client: httpx.Client, index: str, project: str) -> dict[str, dict[str, Any]]:
    """The simple JSON file entries of a project, by filename, with absolute URLs."""
    page = f"{client.base_url}/{index}/simple/{project}/"
    answer = client.get(page, headers={"Accept": JSON_TYPE})
    assert answer.status_code == 200, answer.text
    entries = {entry["filename"]: entry for entry in answer.json()["files"]}
    for entry in entries.values():
        entry["url"] = urljoin(page, entry["url"])
    return entries


@dataclass
class Published:
    wheel: tuple[str, bytes]
    sdist: tuple[str, bytes]
    entries: dict[str, dict[str, Any]]

    def url(self, filename: str) -> str:
        return str(self.entries[filename]["url"])


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> str:
    return server.token("files-owner", "prod")


@pytest.fixture(scope="module")
def published(client: httpx.Client, owner: str) -> Published:
    # A payload big enough that ranges land inside compressed data, not just headers.
    payload = hashlib.sha256(b"seed").digest() * 2048
    wheel = build_wheel(
        "files-demo",
        "1.0",
        metadata={"summary": "Files demo", "requires_dist": ["httpx>=0.27"]},
        extra_files={"files_demo/data.bin": payload},
    )
    sdist = build_sdist("files-demo", "1.0")
    ok(upload(client, "prod", owner, *wheel))
    ok(upload(client, "prod", owner, *sdist))
    return Published(wheel=wheel, sdist=sdist, entries=files_of(client, "prod", "files-demo"))


# ------------------------------------------------------------------------------- downloads


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_the_url_from_the_simple_page_downloads_the_uploaded_bytes(
    client: httpx.Client, published: Published, kind: str
) -> None:
    filename, data = published.wheel if kind == "wheel" else published.sdist
    answer = client.get(published.url(filename))
    assert answer.status_code == 200
    assert answer.content == data
    assert answer.headers["content-length"] == str(len(data))
    assert (
        hashlib.sha256(answer.content).hexdigest()
        == published.entries[filename]["hashes"]["sha256"]
    )


def test_head(client: httpx.Client, published: Published) -> None:
    filename, data = published.wheel
    answer = client.head(published.url(filename))
    assert answer.status_code == 200
    assert answer.headers["content-length"] == str(len(data))
    assert answer.content == b""
    metadata = client.head(published.url(filename) + ".metadata")
    assert metadata.status_code == 200
    assert metadata.headers["content-length"] == str(len(core_metadata_of(filename, data)))


@pytest.mark.local_only  # counts the folder's blob files
def test_same_bytes_in_two_indexes_have_one_url_and_one_blob(
    server: LiveServer, client: httpx.Client
) -> None:
    filename, data = build_wheel("shared-bytes-demo", "1.0")
    ok(upload(client, "test", server.token("shared-test-owner", "test"), filename, data))
    ok(upload(client, "prod", server.token("shared-prod-owner", "prod"), filename, data))
    on_test = files_of(client, "test", "shared-bytes-demo")[filename]["url"]
    on_prod = files_of(client, "prod", "shared-bytes-demo")[filename]["url"]
    assert on_test == on_prod
    assert client.get(on_prod).content == data

    blobs = server.data_dir / "blobs" / "sha256"
    holding = [p for p in blobs.rglob("*") if p.is_file() and p.read_bytes() == data]
    assert len(holding) == 1, holding
    assert holding[0].name == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------- PEP 658


def test_metadata_file_is_the_wheels_metadata(client: httpx.Client, published: Published) -> None:
    filename, data = published.wheel
    answer = client.get(published.url(filename) + ".metadata")
    assert answer.status_code == 200
    assert answer.content == core_metadata_of(filename, data)
    advertised = published.entries[filename]["core-metadata"]["sha256"]
    assert hashlib.sha256(answer.content).hexdigest() == advertised


@pytest.mark.local_only  # counts the folder's blob files
def test_a_wheel_upload_writes_one_blob_and_keeps_its_metadata_in_the_database(
    server: LiveServer, client: httpx.Client
) -> None:
    # The METADATA file is served from the database: an upload costs one file write, fsync
    # and rename, not two.
    filename, data = build_wheel("one-blob-demo", "1.0")
    blobs = server.data_dir / "blobs" / "sha256"
    before = {p for p in blobs.rglob("*") if p.is_file()}
    ok(upload(client, "prod", server.token("one-blob-owner", "prod"), filename, data))
    added = {p for p in blobs.rglob("*") if p.is_file()} - before
    assert [p.name for p in added] == [hashlib.sha256(data).hexdigest()]
    entry = files_of(client, "prod", "one-blob-demo")[filename]
    answer = client.get(entry["url"] + ".metadata")
    assert answer.status_code == 200
    assert answer.content == core_metadata_of(filename, data)
    assert answer.headers["etag"] == f'"{entry["core-metadata"]["sha256"]}"'


def test_sdists_have_no_metadata_file(client: httpx.Client, published: Published) -> None:
    filename, _ = published.sdist
    assert published.entries[filename]["core-metadata"] is False
    answer = client.get(published.url(filename) + ".metadata")
    assert answer.status_code == 404


# ------------------------------------------------------------------------------- ranges, caching


@pytest.mark.parametrize(
    ("spec", "start", "stop"),
    [("bytes=10-99", 10, 100), ("bytes=100-", 100, None), ("bytes=-22", -22, None)],
)
def test_range_requests(
    client: httpx.Client, published: Published, spec: str, start: int, stop: int | None
) -> None:
    filename, data = published.wheel
    expected = data[start:stop]
    answer = client.get(published.url(filename), headers={"Range": spec})
    assert answer.status_code == 206
    assert answer.content == expected
    first = start % len(data)
    assert answer.headers["content-range"] == (
        f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    )


@pytest.mark.parametrize("spec", ["bytes={size}-", "bytes={over}-{far}", "bytes=-0"])
def test_unsatisfiable_range(client: httpx.Client, published: Published, spec: str) -> None:
    filename, data = published.wheel
    size = len(data)
    wanted = spec.format(size=size, over=size + 10, far=size + 99)
    answer = client.get(published.url(filename), headers={"Range": wanted})
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{size}"
    assert f"has {size} bytes" in answer.text  # says why, not only the status
    assert client.get(published.url(filename)).headers["accept-ranges"] == "bytes"


def test_a_range_past_the_end_is_cut_to_the_file(
    client: httpx.Client, published: Published
) -> None:
    filename, data = published.wheel
    answer = client.get(published.url(filename), headers={"Range": "bytes=5-99999999"})
    assert answer.status_code == 206
    assert answer.content == data[5:]
    assert answer.headers["content-range"] == f"bytes 5-{len(data) - 1}/{len(data)}"
    assert answer.headers["content-length"] == str(len(data) - 5)
    # A partial answer is cached like the whole file: same ETag, immutable.
    assert answer.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert "immutable" in answer.headers["cache-control"]


def test_ranges_this_server_does_not_take_get_the_whole_file(
    client: httpx.Client, published: Published
) -> None:
    # RFC 9110 lets a server ignore a Range header: several ranges, another unit, or a range
    # whose end is before its start are answered with the whole file, not an error.
    filename, data = published.wheel
    for spec in ("bytes=0-9,20-29", "items=0-9", "bytes=50-10", "bytes=x-y"):
        answer = client.get(published.url(filename), headers={"Range": spec})
        assert answer.status_code == 200, spec
        assert answer.content == data, spec


def test_if_range_sends_the_part_only_when_the_etag_is_current(
    client: httpx.Client, published: Published
) -> None:
    filename, data = published.wheel
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    current = client.get(published.url(filename), headers={"Range": "bytes=0-9", "If-Range": etag})
    assert current.status_code == 206
    assert current.content == data[:10]
    stale = client.get(published.url(filename), headers={"Range": "bytes=0-9", "If-Range": '"x"'})
    assert stale.status_code == 200
    assert stale.content == data


def test_head_with_a_range_says_what_a_get_would_send(
    client: httpx.Client, published: Published
) -> None:
    filename, data = published.wheel
    answer = client.head(published.url(filename), headers={"Range": "bytes=10-19"})
    assert answer.status_code == 206
    assert answer.headers["content-length"] == "10"
    assert answer.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert answer.content == b""


def test_curl_fetches_a_range_and_resumes_a_cut_download(
    tmp_path: Path, published: Published
) -> None:
    filename, data = published.wheel
    url = published.url(filename)
    part = tmp_path / "part"
    curl = ["curl", "--silent", "--show-error", "--fail"]
    subprocess.run([*curl, "-r", "100-1123", "-o", str(part), url], check=True, timeout=30)
    assert part.read_bytes() == data[100:1124]
    # A download cut off half way, continued where the file on disk ends (`-C -`).
    whole = tmp_path / filename
    whole.write_bytes(data[: len(data) // 2])
    subprocess.run([*curl, "-C", "-", "-o", str(whole), url], check=True, timeout=30)
    assert whole.read_bytes() == data


@pytest.mark.parametrize("suffix", ["", ".metadata"])
def test_etag_and_if_none_match(client: httpx.Client, published: Published, suffix: str) -> None:
    url = published.url(published.wheel[0]) + suffix
    first = client.get(url)
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"nope", {etag}'):
        again = client.get(url, headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b""
    changed = client.get(url, headers={"If-None-Match": '"nope"'})
    assert changed.status_code == 200
    assert changed.content == first.content


def test_file_and_metadata_have_different_etags(client: httpx.Client, published: Published) -> None:
    url = published.url(published.wheel[0])
    file_tag = client.get(url).headers["etag"]
    answer = client.get(url + ".metadata", headers={"If-None-Match": file_tag})
    assert answer.status_code == 200


# ------------------------------------------------------------------------------- 404s


def test_unknown_hash_wrong_filename_and_garbage(
    client: httpx.Client, published: Published
) -> None:
    filename, data = published.wheel
    sha256 = hashlib.sha256(data).hexdigest()
    other_name, other_data = published.sdist
    other_sha = hashlib.sha256(other_data).hexdigest()
    for path in (
        f"/files/{'0' * 64}/{filename}",  # unknown hash
        f"/files/{sha256}/files_demo-9.9-py3-none-any.whl",  # a name this hash never had
        f"/files/{other_sha}/{filename}",  # a real name under another file's hash
        f"/files/{sha256}/{other_name}",
        f"/files/{sha256[:60]}/{filename}",  # not a sha256
        f"/files/{sha256.upper()}/{filename}",
        f"/files/{sha256}/{filename}x.metadata",
        f"/files/{sha256}/..%2F..%2Fkeyless.db",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert data not in answer.content


# ------------------------------------------------------------------------------- PEP 792


def test_quarantined_files_are_not_served(
    server: LiveServer, client: httpx.Client, owner: str
) -> None:
    """PEP 792: a quarantined project's files are not offered for download."""
    wheel_name, wheel = build_wheel("quarantine-files-demo", "1.0")
    ok(upload(client, "prod", owner, wheel_name, wheel))
    url = files_of(client, "prod", "quarantine-files-demo")[wheel_name]["url"]
    answer = client.post(
        "/prod/api/projects/quarantine-files-demo/status",
        json={"status": "quarantined", "reason": "malware"},
        headers={"Authorization": f"Bearer {owner}"},
    )
    assert answer.status_code == 200, answer.text
    for target in (url, url + ".metadata"):
        refused = client.get(target)
        assert refused.status_code in (403, 404), target
        assert wheel not in refused.content
        assert b"Metadata-Version" not in refused.content

    # The same bytes on an index where the project is not quarantined stay available.
    ok(upload(client, "test", server.token("quarantine-files-test", "test"), wheel_name, wheel))
    assert client.get(url).content == wheel

    answer = client.post(
        "/prod/api/projects/quarantine-files-demo/status",
        json={"status": "active"},
        headers={"Authorization": f"Bearer {owner}"},
    )
    assert answer.status_code == 200
