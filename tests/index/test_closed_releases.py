"""Closed releases: an index may refuse new files for a release N days after its first file
(`close-releases-after`, as PyPI after 14 days) and for one published through an upload session
(`close-session-releases`); by default releases never close.

Time is not waited for: a release is made old by moving its files' upload time (and its row's
creation time) back in the server's database, as if it had been uploaded then.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from sqlalchemy import select, update

from keyless.config import ConfigError, load_settings
from keyless.dists import normalize_name
from keyless.index.accounts import Accounts
from keyless.index.indexes import IndexAdmin
from keyless.index.multipart import StagedFile, UploadForm
from keyless.index.projects import find_project
from keyless.index.releases import release_id
from keyless.index.uploads import UploadRejected, Uploads
from keyless.store import db
from keyless.store.blobs import BlobStore, PendingBlob, write_all
from tests.builders import build_sdist, build_wheel, form_mapping
from tests.conftest import LiveServer, run_keyless, start_server, stop_server
from tests.index import sessions_api
from tests.web.conftest import HTML, make_admin, sign_in

from .test_clients import run, twine_upload
from .test_promote import promote
from .uploading import form_fields, upload

CONFIG = """
[indexes.test]
profile = "pypi"

[indexes.open]
profile = "pypi"

[indexes.closing]
profile = "pypi"
close-releases-after = "14d"
close-session-releases = true

[indexes.sessions-only]
profile = "pypi"
close-session-releases = true
"""

PYPI_TEXT = "Uploading new files to releases older than 14 days is not allowed."
SESSION_TEXT = "was published through an upload session"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("closing"), config_text=CONFIG)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


def write(folder: Path, *dists: tuple[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, data in dists:
        (folder / filename).write_bytes(data)
        paths.append(folder / filename)
    return paths


def age_release(server: LiveServer, index: str, name: str, version: str, days: float) -> None:
    """Move the release's first file (and every other) `days` into the past."""
    engine = server.engine()
    with db.writing(engine) as conn:
        index_id = IndexAdmin(engine).load_indexes()[index].id
        project = find_project(conn, index_id, normalize_name(name))
        assert project is not None
        release = release_id(conn, project.id, version)
        assert release is not None
        then = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        conn.execute(
            update(db.files).where(db.files.c.release_id == release).values(upload_time=then)
        )
        conn.execute(update(db.releases).where(db.releases.c.id == release).values(created=then))


def uv_publish(
    server: LiveServer, index: str, token: str, files: list[Path], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "uv", "publish", "--publish-url", server.upload_url(index)]
    return run([*command, "--token", token, *map(str, files)], env)


def output(done: subprocess.CompletedProcess[str]) -> str:
    """A client's stdout and stderr as one line of words (clients wrap long messages)."""
    return " ".join((done.stdout + done.stderr).split())


def simple_filenames(client: httpx.Client, index: str, name: str) -> set[str]:
    page = client.get(
        f"/{index}/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert page.status_code == 200, page.text
    return {f["filename"] for f in page.json()["files"]}


# ------------------------------------------------------------------ N days after the first file


def test_twine_and_uv_cannot_add_files_to_a_release_older_than_the_limit(
    live: LiveServer, client: httpx.Client, tmp_path: Path, env: dict[str, str]
) -> None:
    name = "closed-old"
    token = live.token("closing-owner", "closing")
    wheel = write(tmp_path / "wheel", build_wheel(name, "1.0"))
    first = twine_upload(live, "closing", token, wheel, env)
    assert first.returncode == 0, output(first)
    age_release(live, "closing", name, "1.0", days=15)

    sdist = write(tmp_path / "sdist", build_sdist(name, "1.0"))
    refused = twine_upload(live, "closing", token, sdist, env)
    assert refused.returncode != 0
    # twine shows the status line only: PyPI's text rides in the reason phrase.
    assert "HTTPError: 400" in output(refused)
    assert PYPI_TEXT in output(refused)
    by_uv = uv_publish(live, "closing", token, sdist, env)
    assert by_uv.returncode != 0
    assert PYPI_TEXT in output(by_uv)
    # The body says what to do, and which release and date.
    answer = upload(client, "closing", token, sdist[0].name, sdist[0].read_bytes())
    assert answer.status_code == 400
    assert PYPI_TEXT in answer.text
    assert "Release 1.0 of 'closed-old' got its first file on" in answer.text
    assert "publish the new files in a new version" in answer.text
    assert simple_filenames(client, "closing", name) == {wheel[0].name}

    # Re-running the job that uploaded the first file still succeeds (the same bytes were
    # there: PyPI answers a duplicate before it asks whether the release is closed), and a new
    # version is a new, open release.
    again = twine_upload(live, "closing", token, wheel, env)
    assert again.returncode == 0, output(again)
    newer = write(tmp_path / "newer", build_wheel(name, "1.1"), build_sdist(name, "1.1"))
    published = uv_publish(live, "closing", token, newer, env)
    assert published.returncode == 0, output(published)


def test_a_release_younger_than_the_limit_takes_new_files(
    live: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    name = "closed-young"
    token = live.token("closing-owner", "closing")
    first = twine_upload(live, "closing", token, write(tmp_path, build_wheel(name, "1.0")), env)
    assert first.returncode == 0, output(first)
    age_release(live, "closing", name, "1.0", days=13)
    late = write(tmp_path / "late", build_sdist(name, "1.0"))
    accepted = twine_upload(live, "closing", token, late, env)
    assert accepted.returncode == 0, output(accepted)
    later = write(tmp_path / "later", build_wheel(name, "1.0", tag="py2.py3-none-any"))
    by_uv = uv_publish(live, "closing", token, later, env)
    assert by_uv.returncode == 0, output(by_uv)


def test_by_default_releases_never_close(
    live: LiveServer, client: httpx.Client, tmp_path: Path, env: dict[str, str]
) -> None:
    name = "never-closed"
    token = live.token("open-owner", "open")
    wheel = write(tmp_path, build_wheel(name, "1.0"))
    assert twine_upload(live, "open", token, wheel, env).returncode == 0
    age_release(live, "open", name, "1.0", days=3650)
    late = write(tmp_path / "late", build_sdist(name, "1.0"))
    accepted = twine_upload(live, "open", token, late, env)
    assert accepted.returncode == 0, output(accepted)
    assert simple_filenames(client, "open", name) == {wheel[0].name, late[0].name}


def test_promote_adds_no_file_to_a_closed_release_on_the_target(
    live: LiveServer, client: httpx.Client
) -> None:
    name = "closed-promote"
    owner = "owner-closed-promote"
    test_token, closing_token = live.token(owner, "test"), live.token(owner, "closing")
    wheel, sdist = build_wheel(name, "1.0"), build_sdist(name, "1.0")
    for dist in (wheel, sdist):
        assert upload(client, "test", test_token, *dist).status_code == 200
    assert upload(client, "closing", closing_token, *wheel).status_code == 200
    age_release(live, "closing", name, "1.0", days=20)

    refused = promote(client, closing_token, name, "1.0", to="closing")
    assert refused.status_code == 400, refused.text
    assert PYPI_TEXT in refused.text
    assert "index 'closing' closes releases 14 days after their first file" in refused.text
    assert simple_filenames(client, "closing", name) == {wheel[0]}

    # Once the target's release is young, the same promotion goes through; how old the
    # release is on the source does not matter.
    age_release(live, "closing", name, "1.0", days=0)
    age_release(live, "test", name, "1.0", days=20)
    promoted = promote(client, closing_token, name, "1.0", to="closing")
    assert promoted.status_code == 200, promoted.text
    assert simple_filenames(client, "closing", name) == {wheel[0], sdist[0]}


# ------------------------------------------------------------------ published through a session


def publish_through_session(
    server: LiveServer, index: str, token: str, dists: list[tuple[str, bytes]]
) -> httpx.Response:
    """Publish `dists` (one release) through a PEP 694 upload session over HTTP; the answer."""
    name, version = name_and_version(dists[0][0])
    with server.client() as http:
        session = sessions_api.open_session(http, token, name, version, index)
        for filename, data in dists:
            sessions_api.upload_completed(http, token, session, filename, data)
        return sessions_api.publish(http, token, session)


def name_and_version(filename: str) -> tuple[str, str]:
    if filename.endswith(".whl"):
        name, version, _, _ = parse_wheel_filename(filename)
    else:
        name, version = parse_sdist_filename(filename)
    return name, str(version)


def test_a_release_published_through_a_session_takes_no_legacy_upload(
    live: LiveServer, client: httpx.Client, tmp_path: Path, env: dict[str, str]
) -> None:
    name = "session-closed"
    token = live.token("session-owner", "sessions-only")
    assert upload(client, "sessions-only", token, *build_sdist(name, "0.1")).status_code == 200
    assert (
        publish_through_session(
            live, "sessions-only", token, [build_wheel(name, "1.0")]
        ).status_code
        == 201
    )
    with db.reading(live.engine()) as conn:
        rows = conn.execute(
            select(db.releases.c.version, db.releases.c.via_session)
            .join(db.projects, db.projects.c.id == db.releases.c.project_id)
            .where(db.projects.c.normalized_name == name)
        )
        marked = dict(rows.all())
    assert marked["1.0"] is True
    assert marked["0.1"] is False

    late = write(tmp_path, build_sdist(name, "1.0"))
    refused = twine_upload(live, "sessions-only", token, late, env)
    assert refused.returncode != 0
    assert SESSION_TEXT in output(refused)
    by_uv = uv_publish(live, "sessions-only", token, late, env)
    assert by_uv.returncode != 0
    assert SESSION_TEXT in output(by_uv)
    # A release uploaded file by file stays open (this index closes none by age).
    other = write(tmp_path / "w", build_wheel(name, "0.1"))
    accepted = twine_upload(live, "sessions-only", token, other, env)
    assert accepted.returncode == 0, output(accepted)


def test_a_session_adding_to_an_existing_release_closes_it(
    live: LiveServer, client: httpx.Client
) -> None:
    name = "session-joins"
    token = live.token("session-owner", "sessions-only")
    assert upload(client, "sessions-only", token, *build_sdist(name, "1.0")).status_code == 200
    assert (
        publish_through_session(
            live, "sessions-only", token, [build_wheel(name, "1.0")]
        ).status_code
        == 201
    )
    another = build_wheel(name, "1.0", tag="py2.py3-none-any")
    answer = upload(client, "sessions-only", token, *another)
    assert answer.status_code == 400
    assert SESSION_TEXT in answer.text


def test_a_second_session_cannot_add_to_a_release_a_session_published(
    live: LiveServer,
) -> None:
    name = "session-twice"
    token = live.token("session-owner", "sessions-only")
    assert (
        publish_through_session(
            live, "sessions-only", token, [build_wheel(name, "1.0")]
        ).status_code
        == 201
    )
    again = publish_through_session(
        live, "sessions-only", token, [build_wheel(name, "1.0", tag="py2.py3-none-any")]
    )
    sessions_api.assert_problem(again, 409, SESSION_TEXT)
    with live.client() as client:
        assert simple_filenames(client, "sessions-only", name) == {build_wheel(name, "1.0")[0]}


def test_without_the_setting_a_session_release_stays_open(
    live: LiveServer, client: httpx.Client
) -> None:
    name = "session-open"
    token = live.token("open-owner", "open")
    assert (
        publish_through_session(live, "open", token, [build_wheel(name, "1.0")]).status_code == 201
    )
    answer = upload(client, "open", token, *build_sdist(name, "1.0"))
    assert answer.status_code == 200, answer.text


class PublishedMeanwhile:
    """The server's blob store, but the first `place` — which an upload calls after its
    snapshot's decisions and before its write transaction — first lets a session publish."""

    def __init__(self, blobs: BlobStore, publish: Callable[[], httpx.Response]) -> None:
        self.blobs, self.publish, self.published = blobs, publish, False

    def place(self, pending: PendingBlob, sha256: str, size: int) -> bool:
        if not self.published:
            self.published = True
            answer = self.publish()
            assert answer.status_code == 201, answer.text
        return self.blobs.place(pending, sha256, size)

    def __getattr__(self, name: str) -> Any:  # the rest of the store, as it is
        return getattr(self.blobs, name)


def test_the_rule_is_decided_again_inside_the_write_transaction(live: LiveServer) -> None:
    # A session publishing the release between an upload's snapshot (open then) and its write.
    name = "session-meanwhile"
    token = live.token("session-owner", "sessions-only")
    engine = live.engine()
    index = IndexAdmin(engine).load_indexes()["sessions-only"]
    identity = Accounts(engine).authenticate(token)
    with live.client() as client:
        assert upload(client, "sessions-only", token, *build_wheel(name, "0.1")).status_code == 200
    blobs = PublishedMeanwhile(
        live.blobs(),
        lambda: publish_through_session(live, "sessions-only", token, [build_wheel(name, "1.0")]),
    )
    filename, data = build_sdist(name, "1.0")
    writer = blobs.new_writer()
    write_all(writer, [data])
    staged = StagedFile(filename, writer, writer.finish())
    form = UploadForm(form_mapping(form_fields(filename, data)), staged)
    uploads = Uploads(engine, blobs, lambda index_id, project: None, descriptions=None)  # type: ignore[arg-type]

    with pytest.raises(UploadRejected) as refused:
        uploads.upload(index, identity, form)

    assert blobs.published
    assert SESSION_TEXT in refused.value.message
    with live.client() as client:
        assert filename not in simple_filenames(client, "sessions-only", name)


# ------------------------------------------------------------------ the settings


def test_the_settings_reach_the_index_and_typos_are_refused(
    live: LiveServer, tmp_path: Path
) -> None:
    # `keyless index list` on the running server's data folder: the indexes' rows, made from
    # the settings the server started with (which it recorded there).
    listed = run_keyless("index", "list", "--data", str(live.data_dir))
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "close-releases-after=1209600s close-session-releases=yes" in lines["closing"]
    assert "close-releases-after=never close-session-releases=no" in lines["open"]
    assert "close-releases-after=never close-session-releases=yes" in lines["sessions-only"]
    # The administrators' page says it in words.
    with live.client() as admin:
        sign_in(admin, make_admin(live, "closing-admin"))
        page = html.unescape(admin.get("/admin/indexes", headers=HTML).text)
    cells = {
        row[0]: row
        for row in (
            re.findall(r"<td>(.*?)</td>", tr, re.S)
            for tr in re.findall(r"<tr>(.*?)</tr>", page, re.S)
        )
        if row
    }
    closing_cell = "14 days after their first file, or when published through a session"
    assert closing_cell in cells['<a href="/closing/">closing</a>']
    assert "never" in cells['<a href="/open/">open</a>']
    assert (
        "when published through a session" in cells['<a href="/sessions-only/">sessions-only</a>']
    )

    config = tmp_path / "keyless.toml"
    for text, message in (
        ('close-release-after = "14d"', "index 'x' has no setting 'close-release-after'"),
        ('close-releases-after = "two weeks"', "write e.g. '14d' or 'never'"),
        ("close-releases-after = -1", "write e.g. '14d' or 'never'"),
        ('close-session-releases = "maybe"', "close-session-releases must be true or false"),
    ):
        config.write_text(f"[indexes.x]\n{text}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_settings(config, environ={})
