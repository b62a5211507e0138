"""Fuzzing uploads over HTTP: hostile multipart forms and hostile archives inside them.

One live server for the module; every case must be answered below 500 within the deadline,
leave the store untouched when refused, and leave the server answering its health check
(harness.Guard). An accepted upload must then download with the sha256 it was accepted with.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import event, example, given, note

from tests.conftest import LiveServer, start_server, stop_server

from .archives import Archive, archives
from .forms import (
    UploadCase,
    digest_fields,
    encode_multipart,
    hostile_field_case,
    long_boundary_case,
    one_hostile_field,
    upload_forms,
)
from .harness import Guard, Store, Watchdog, assert_server_held, fuzz_settings

pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("fuzz-uploads"))
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def auth(fuzz_server: LiveServer) -> str:
    token = fuzz_server.token("fuzzer", "test")
    return "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode()


def post_upload(
    guard: Guard, auth: str, content_type: str, body: bytes, sends: bytes | None
) -> httpx.Response:
    """POST an upload body; `sends` is the file inside it (whose blob must not appear on a
    refusal)."""
    return guard.send(
        lambda client: client.post(
            "/test/legacy/",
            content=body,
            headers={"content-type": content_type, "authorization": auth},
        ),
        hashes=[hashlib.sha256(sends).hexdigest()] if sends is not None else [],
    )


def first_words(answer: httpx.Response) -> str:
    """The start of an answer's message, for `event` (names and hashes left out)."""
    return " ".join(answer.text.split()[:4]) if answer.status_code != 200 else "OK"


def assert_downloads(guard: Guard, answer: httpx.Response) -> None:
    """An acknowledged upload is there, byte for byte."""
    stored = answer.json()
    got = guard.client.get(f"/files/{stored['sha256']}/{stored['filename']}")
    assert got.status_code == 200, got.text
    assert hashlib.sha256(got.content).hexdigest() == stored["sha256"]


@fuzz_settings(600)
@example(case=long_boundary_case(300))
@given(case=upload_forms())
def test_hostile_upload_forms(guard: Guard, auth: str, case: UploadCase) -> None:
    note(case.note)
    answer = post_upload(guard, auth, case.multipart.content_type, case.multipart.body, case.file)
    event(f"{answer.status_code} {first_words(answer)}")
    if answer.status_code == 200:
        assert_downloads(guard, answer)


# Known hostile values, tried first in every run (the strategy draws them too, less surely).
@fuzz_settings(400)
@example(case=hostile_field_case({"version": "1." + "9" * 5_000}, name="fzversion"))
@example(case=hostile_field_case({"requires_python": ">=" + "3" * 5_000}, name="fzpython"))
@example(
    case=hostile_field_case(
        {"description": "> " * 50_000, "description_content_type": "text/markdown"},
        name="fzquotes",
    )
)
@example(
    case=hostile_field_case(
        {"description": "\n\n".join("   " * i + "- x" for i in range(1_000))},
        name="fzrstlist",
    )
)
@given(case=one_hostile_field())
def test_one_hostile_metadata_field(guard: Guard, auth: str, case: UploadCase) -> None:
    """Everything as twine sends it but one metadata field: so each hostile value reaches
    the parser, validator or renderer of its own field instead of an earlier refusal."""
    note(case.note)
    answer = post_upload(guard, auth, case.multipart.content_type, case.multipart.body, case.file)
    event(f"{case.label}: {answer.status_code} {first_words(answer)[:40]}")
    if answer.status_code == 200:
        assert_downloads(guard, answer)


@fuzz_settings(500)
@given(archive=archives())
def test_hostile_archives(guard: Guard, auth: str, archive: Archive) -> None:
    """Forms exactly as twine sends them (right name, version and digests) around archives
    whose inside is hostile: so each case reaches the archive checks."""
    note(f"{archive.kind} {archive.filename} mutated: {archive.mutation}")
    fields = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("metadata_version", "2.4"),
        ("name", archive.name),
        ("version", archive.version),
        ("filetype", "bdist_wheel" if archive.kind == "wheel" else "sdist"),
        ("pyversion", "py3" if archive.kind == "wheel" else "source"),
        *digest_fields(archive.data).items(),
    ]
    multipart = encode_multipart(fields, (archive.filename, archive.data), boundary="fuzzbound")
    answer = post_upload(guard, auth, multipart.content_type, multipart.body, archive.data)
    # `pytest --hypothesis-show-statistics` shows which checks the cases reached.
    event(f"{archive.kind} {archive.mutation}: {answer.status_code} {first_words(answer)}")
    if answer.status_code == 200:
        assert_downloads(guard, answer)


def test_server_held_throughout(fuzz_server: LiveServer, watchdog: Watchdog, store: Store) -> None:
    """Last in the module: health checks answered all along, no handler crashed, and no
    refused upload left a blob."""
    assert_server_held(fuzz_server, watchdog, store)
