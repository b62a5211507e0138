"""Two `keyless serve` processes on one data folder answer alike: what one changes, the other
serves on the very next request (the change serial, `keyless.store.changes`).

Each page is first asked of the second process, so it is in that process's memory when the
first one changes it: without the serial, the second would keep serving the old page.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from keyless.ci.emulator import Emulator
from keyless.config import Settings
from keyless.index.accounts import Accounts, hash_token
from keyless.index.app import create_app
from keyless.index.projects import create_project
from keyless.index.sessions import MAX_FAILURES_PER_USER
from keyless.store import db
from keyless.store.changes import record_change
from tests.builders import build_wheel
from tests.conftest import (
    AUDIENCE,
    LiveServer,
    make_project,
    start_server,
    start_trusted_server,
    stop_server,
)
from tests.web.conftest import HTML, csrf_of

from .test_project_admin import post
from .test_trusted_publishing import add_github_publisher, failure, job, mint
from .uploading import upload

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    folder = tmp_path_factory.mktemp("pair")
    first = start_server(folder / "first")
    second = start_server(folder / "second", data_dir=first.data_dir)
    yield first, second
    stop_server(second)
    stop_server(first)


def page(client: httpx.Client, path: str) -> dict[str, Any]:
    answer = client.get(path, headers={"Accept": JSON_TYPE})
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def files_of(client: httpx.Client, project: str) -> dict[str, Any]:
    """{filename: yanked} on the project's simple page of `prod`."""
    return {f["filename"]: f["yanked"] for f in page(client, f"/prod/simple/{project}/")["files"]}


def projects_of(client: httpx.Client) -> list[str]:
    return [p["name"] for p in page(client, "/prod/simple/")["projects"]]


def ok(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text


def test_an_upload_through_one_is_served_by_the_other_at_once(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    token = first.token("fresh-owner", "prod")
    with first.client() as one, second.client() as two:
        ok(upload(one, "prod", token, *build_wheel("fresh-upload", "1.0")))
        assert files_of(two, "fresh-upload") == {"fresh_upload-1.0-py3-none-any.whl": False}
        assert "fresh-upload" in projects_of(two)  # both pages now in the second's memory

        ok(upload(one, "prod", token, *build_wheel("fresh-upload", "1.1")))
        ok(upload(one, "prod", token, *build_wheel("fresh-other", "1.0")))
        assert files_of(two, "fresh-upload") == {
            "fresh_upload-1.0-py3-none-any.whl": False,
            "fresh_upload-1.1-py3-none-any.whl": False,
        }
        assert "fresh-other" in projects_of(two)
        # And the other way round.
        assert files_of(one, "fresh-other") == {"fresh_other-1.0-py3-none-any.whl": False}
        ok(upload(two, "prod", token, *build_wheel("fresh-other", "1.1")))
        assert len(files_of(one, "fresh-other")) == 2


def test_a_yank_and_a_status_through_one_show_on_the_other_at_once(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    token = first.token("yank-owner", "prod")
    wheel = "fresh_yank-1.0-py3-none-any.whl"
    with first.client() as one, second.client() as two:
        ok(upload(one, "prod", token, *build_wheel("fresh-yank", "1.0")))
        assert files_of(two, "fresh-yank") == {wheel: False}
        ok(post(one, "fresh-yank/releases/1.0/yank", token, {"reason": "broken"}))
        assert files_of(two, "fresh-yank") == {wheel: "broken"}
        ok(post(one, "fresh-yank/status", token, {"status": "quarantined", "reason": "why"}))
        quarantined = page(two, "/prod/simple/fresh-yank/")
        assert quarantined["project-status"] == {"status": "quarantined", "reason": "why"}
        assert quarantined["files"] == []


def test_a_token_revoked_through_one_is_refused_by_the_other_at_once(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    token = first.token("revoke-owner", "prod")
    with second.client() as two:
        ok(upload(two, "prod", token, *build_wheel("fresh-revoked", "1.0")))  # known to it
        assert Accounts(db.open_database(first.database)).revoke_token_by_hash(hash_token(token))
        refused = upload(two, "prod", token, *build_wheel("fresh-revoked", "1.1"))
        assert refused.status_code == 403, refused.text


def test_an_index_created_elsewhere_is_served_at_once(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    with second.client() as two:
        assert two.get("/fresh-index/simple/").status_code == 404
        data = ("--data", str(first.data_dir))
        created = subprocess.run(
            [sys.executable, "-m", "keyless", "index", "create", "fresh-index", *data],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        assert page(two, "/fresh-index/simple/")["projects"] == []
        assert (
            "fresh-index" in two.get("/", headers={"Accept": "application/json"}).json()["indexes"]
        )


# ---------------------------------------------------------------------- exactly once, across them
#
# What must happen once happens once whichever process a request reaches: the database decides
# (the unique filename per index, the used-token table's key, the count of failed sign-ins taken
# in the same writing transaction that records one), never a process's memory.


def at_once(count: int, action: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """`action(0..count-1)` from as many threads, released together; their answers."""
    barrier = threading.Barrier(count)
    answers: list[httpx.Response | BaseException] = [RuntimeError("not run")] * count

    def run(n: int) -> None:
        barrier.wait()
        try:
            answers[n] = action(n)
        except BaseException as exc:  # reported below, with the others
            answers[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert not failed, failed
    return [a for a in answers if isinstance(a, httpx.Response)]


def test_one_file_uploaded_through_both_at_once_is_stored_once(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    token = first.token("race-owner", "prod")
    filename, data = build_wheel("fresh-race", "1.0")
    clients = [server.client() for server in (first, second) for _ in range(5)]
    try:
        answers = at_once(len(clients), lambda n: upload(clients[n], "prod", token, filename, data))
    finally:
        for client in clients:
            client.close()
    assert [a.status_code for a in answers] == [200] * len(clients), [a.text for a in answers]
    with db.reading(first.engine()) as conn:
        rows = conn.execute(select(db.files.c.sha256).where(db.files.c.filename == filename)).all()
    assert len(rows) == 1
    with first.client() as one, second.client() as two:
        for client in (one, two):
            assert files_of(client, "fresh-race") == {filename: False}
            assert client.get(f"/files/{rows[0][0]}/{filename}").content == data


@pytest.fixture(scope="module")
def trusted_pair(
    tmp_path_factory: pytest.TempPathFactory, emulator: Emulator, gitlab_ci: Emulator
) -> Iterator[tuple[LiveServer, LiveServer]]:
    folder = tmp_path_factory.mktemp("trusted-pair")
    first = start_trusted_server(folder / "first", emulator.issuer, gitlab_ci.issuer)
    second = start_server(
        folder / "second",
        tls=first.tls,
        config_text=(folder / "first" / "keyless.toml").read_text(encoding="utf-8"),
        data_dir=first.data_dir,
    )
    yield first, second
    stop_server(second)
    stop_server(first)


def test_an_oidc_token_is_exchanged_once_across_both(
    trusted_pair: tuple[LiveServer, LiveServer], emulator: Emulator
) -> None:
    first, second = trusted_pair
    with first.client() as one, second.client() as two:
        make_project(first, one, "fresh-minted")
        add_github_publisher(first, emulator, "fresh-minted", repository="minted")
        claims = job(repo="octo-org/minted")
        # Replayed, one after the other: the second process refuses what the first took.
        token = emulator.token(AUDIENCE, claims)
        assert mint(one, token).status_code == 200
        assert failure(mint(two, token))[0] == "invalid-reuse-token"
        # Sent to both at once, ten times over: one exchange each time.
        for _ in range(10):
            token = emulator.token(AUDIENCE, claims)

            def send(n: int, token: str = token) -> httpx.Response:
                return mint((one, two)[n], token)

            answers = at_once(2, send)
            codes = sorted(a.status_code for a in answers)
            assert codes == [200, 422], [a.text for a in answers]
            refused = next(a for a in answers if a.status_code == 422)
            assert failure(refused)[0] == "invalid-reuse-token"


def test_failed_sign_ins_are_counted_across_both(
    trusted_pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = trusted_pair
    user = first.user("fresh-guessed")
    # Wrong passwords for one user from one address, half through each process, all at once:
    # exactly the limit's worth are checked, the rest throttled, as with one process.
    clients = [server.client() for server in (first, second) for _ in range(6)]
    forms = [csrf_of(client.get("/account/login", headers=HTML).text) for client in clients]
    try:
        answers = at_once(
            len(clients),
            lambda n: clients[n].post(
                "/account/login",
                data={"csrf_token": forms[n], "username": user, "password": f"wrong {n}"},
            ),
        )
    finally:
        for client in clients:
            client.close()
    codes = Counter(a.status_code for a in answers)
    assert codes == {400: MAX_FAILURES_PER_USER, 429: len(clients) - MAX_FAILURES_PER_USER}


def test_when_the_serial_cannot_be_read_nothing_is_served_from_memory(tmp_path: Path) -> None:
    """A database that does not answer the per-request check (PostgreSQL restarting): the
    request is answered as if nothing were cached, not with the check's exception."""
    app = create_app(Settings(data_dir=tmp_path, access_log=False))

    async def root_projects() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.get("/prod/simple/", headers={"Accept": JSON_TYPE})
        assert answer.status_code == 200, answer.text
        return [p["name"] for p in answer.json()["projects"]]

    assert asyncio.run(root_projects()) == []  # now in memory
    other = db.open_database(tmp_path / "keyless.db")  # another process's change
    with db.writing(other) as conn:
        index_id = conn.execute(select(db.indexes.c.id).where(db.indexes.c.name == "prod")).scalar()
        assert index_id is not None
        create_project(conn, index_id, "made-elsewhere", None)
        record_change(conn, index_id, "made-elsewhere")

    def unreachable() -> None:
        raise OperationalError("SELECT serial", {}, Exception("connection refused"))

    app.changes.poll = unreachable  # type: ignore[method-assign]  # its database gone
    assert asyncio.run(root_projects()) == ["made-elsewhere"]
