"""Reading local distributions and the upload form built from them (compared with twine's)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from twine.package import PackageFile
from twine.repository import Repository

from keyless.publish import IndexClient, PublishError, load_dist, upload_fields
from tests.builders import build_sdist, build_wheel, forged_wheel, write_dist
from tests.conftest import LiveServer
from tests.index.uploading import form_fields

RICH_METADATA: dict[str, Any] = {
    "summary": "A demo, with everything twine sends",
    "description": "# Demo\n\nHello, *world*.\n",
    "description_content_type": "text/markdown",
    "keywords": ["alpha", "beta"],
    "author": "Ada",
    "author_email": "ada@example.com",
    "license_expression": "MIT",
    "classifiers": ["Programming Language :: Python :: 3", "Typing :: Typed"],
    "requires_dist": ["httpx>=0.27", 'rich; extra == "cli"'],
    "requires_python": ">=3.11",
    "project_urls": {"Homepage": "https://example.com", "Source": "https://example.com/src"},
    "provides_extra": ["cli"],
}


def both(tmp_path: Path, name: str = "Demo-Pkg", version: str = "1.0.0") -> list[Path]:
    return [
        write_dist(
            tmp_path, *build_wheel(name, version, metadata=RICH_METADATA, tag="py2.py3-none-any")
        ),
        write_dist(tmp_path, *build_sdist(name, version, metadata=RICH_METADATA)),
    ]


def test_load_dist_reads_metadata_and_hashes(tmp_path: Path) -> None:
    wheel, sdist = both(tmp_path)
    for path, kind in ((wheel, "bdist_wheel"), (sdist, "sdist")):
        dist = load_dist(path)
        data = path.read_bytes()
        assert dist.packagetype == kind
        assert (dist.name, dist.normalized, dist.version) == ("Demo-Pkg", "demo-pkg", "1.0.0")
        assert dist.sha256 == hashlib.sha256(data).hexdigest()
        assert dist.md5 == hashlib.md5(data).hexdigest()  # noqa: S324
        assert dist.blake2_256 == hashlib.blake2b(data, digest_size=32).hexdigest()
        assert dist.size == len(data)
        assert dist.metadata.summary == RICH_METADATA["summary"]
        assert dist.core_metadata.startswith(b"Metadata-Version: 2.4")
    assert load_dist(wheel).pyversion == "py2.py3"
    assert load_dist(sdist).pyversion == "source"


def test_a_dist_is_read_once_and_its_metadata_parsed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digests and the archive checks come from one read of the file, and the metadata
    is parsed once for both the checks and the upload form (each was done twice: ~0.5 ms a
    file of the client's CPU, with 50 wheels a release)."""
    import keyless.dists.metadata
    import keyless.publish.localdist

    opened: list[Path] = []
    parsed: list[bytes] = []
    open_path = Path.open

    def counted_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return open_path(self, *args, **kwargs)

    def counting(module: Any) -> None:
        parse = module.parse_email

        def counted(data: bytes) -> Any:
            parsed.append(data)
            return parse(data)

        monkeypatch.setattr(module, "parse_email", counted)

    counting(keyless.publish.localdist)
    counting(keyless.dists.metadata)
    monkeypatch.setattr(Path, "open", counted_open)
    for path in both(tmp_path):
        opened.clear()
        parsed.clear()
        dist = load_dist(path)
        assert opened == [path]
        assert len(parsed) == 1
        assert dist.metadata.summary == RICH_METADATA["summary"]
        assert ("summary", RICH_METADATA["summary"]) in upload_fields(dist)


def test_a_dist_too_big_to_keep_in_memory_is_read_twice_with_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyless.publish.localdist

    for path in both(tmp_path):
        whole = load_dist(path)
        monkeypatch.setattr(keyless.publish.localdist, "_KEEP_IN_MEMORY", 100)
        streamed = load_dist(path)
        monkeypatch.undo()
        # Equal but for the Metadata objects, which compare by identity.
        assert replace(streamed, metadata=whole.metadata) == whole
        assert streamed.metadata.summary == whole.metadata.summary


@pytest.mark.parametrize(
    ("filename", "data", "expected"),
    [
        ("demo-1.0.zip", b"PK\x05\x06" + bytes(18), "demo-1.0.zip"),
        ("demo-1.0-py3-none-any.whl", b"not a zip at all", "not a zipfile"),
        ("demo-1.0.tar.gz", b"\x1f\x8b garbage", "demo-1.0.tar.gz"),
        (*forged_wheel("demo", "1.0", inner_version="6.6.6"), "metadata says demo 6.6.6"),
    ],
)
def test_unreadable_dists_fail_naming_the_file(
    tmp_path: Path, filename: str, data: bytes, expected: str
) -> None:
    path = write_dist(tmp_path, filename, data)
    with pytest.raises(PublishError) as caught:
        load_dist(path)
    assert expected.lower() in caught.value.message.lower()
    assert caught.value.context["file"] == str(path)
    assert filename in caught.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="no such file") as caught:
        load_dist(tmp_path / "demo-1.0.tar.gz")
    assert "python -m build" in (caught.value.hint or "")


def test_invalid_metadata_lists_every_problem(tmp_path: Path) -> None:
    text = (
        "Metadata-Version: 2.4\nName: demo\nVersion: 1.0\n"
        "Requires-Dist: !!bad\nRequires-Python: >>3\n"
    )
    path = write_dist(tmp_path, *build_wheel("demo", "1.0", metadata_text=text))
    with pytest.raises(PublishError) as caught:
        load_dist(path)
    assert "requires-dist" in caught.value.message.lower()
    assert "requires-python" in caught.value.message.lower()
    assert "keyless check" in (caught.value.hint or "")


def twine_fields(path: Path) -> list[tuple[str, str]]:
    """What twine itself sends for `path` (its own form builder, not a reimplementation)."""
    package = PackageFile.from_filename(str(path), comment=None)
    fields = Repository._convert_metadata_to_list_of_tuples(package.metadata_dictionary())
    return [(key, str(value)) for key, value in fields] + [
        (":action", "file_upload"),
        ("protocol_version", "1"),
    ]


def test_upload_fields_are_what_twine_sends(tmp_path: Path) -> None:
    for path in both(tmp_path):
        ours = upload_fields(load_dist(path))
        theirs = twine_fields(path)
        # twine sends the name "safe" (runs of other characters as '-'); this one is already.
        # It no longer sends md5_digest; the legacy API still takes it, and some indexes want it.
        assert sorted(f for f in ours if f[0] != "md5_digest") == sorted(theirs)
        assert ("md5_digest", load_dist(path).md5) in ours


def test_upload_fields_agree_with_the_test_suites_twine_form(tmp_path: Path) -> None:
    for path in both(tmp_path):
        ours = upload_fields(load_dist(path))
        reference = form_fields(path.name, path.read_bytes())

        # The reference sends Keywords verbatim; twine (and we) send the parsed list joined.
        def normal(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
            return sorted(
                (k, v.replace(", ", ",") if k == "keywords" else v)
                for k, v in fields
                if k != "pyversion"
            )

        assert normal(ours) == normal(reference)


def test_old_metadata_license_file_is_not_sent(tmp_path: Path) -> None:
    text = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nLicense-File: LICENSE\n"
    path = write_dist(tmp_path, *build_sdist("demo", "1.0", metadata_text=text))
    fields = dict(upload_fields(load_dist(path)))
    assert "license_file" not in fields
    assert fields["metadata_version"] == "2.1"


def test_the_live_server_accepts_the_fields_and_stores_the_same_metadata(
    server: LiveServer, tmp_path: Path
) -> None:
    token = server.token("localdist-owner", "prod")
    with httpx.Client(timeout=30) as http:
        client = IndexClient(server.upload_url("prod"), http=http)
        for path in both(tmp_path, name="localdist-demo"):
            dist = load_dist(path)
            seen: list[int] = []
            answer = client.upload(dist, token, on_progress=seen.append)
            assert answer.status_code == 200, answer.text
            assert seen[-1] == dist.size
        assert client.existing_files("localdist-demo") == {
            path.name: load_dist(path).sha256 for path in both(tmp_path, name="localdist-demo")
        }
        release = http.get(f"{server.url}/prod/pypi/localdist-demo/1.0.0/json").json()["info"]
    assert release["summary"] == RICH_METADATA["summary"]
    assert release["requires_dist"] == RICH_METADATA["requires_dist"]
    assert release["project_urls"] == RICH_METADATA["project_urls"]
    assert release["description_content_type"] == "text/markdown"
