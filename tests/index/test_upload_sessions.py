"""PEP 694 upload sessions on a live server: the state machine over HTTP, as a client sees it.

Files are built by tests/builders.py; twine is the legacy client that meets a session.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from keyless.index.accounts import Accounts, hash_token
from keyless.store import db
from tests.builders import build_sdist, build_wheel, form_mapping, traversal_wheel
from tests.conftest import LiveServer

from .sessions_api import (
    MEDIA_TYPE,
    add_file,
    assert_problem,
    complete,
    create,
    delete,
    get,
    open_session,
    post,
    publish,
    root,
    send_bytes,
    upload_completed,
)
from .uploading import form_fields, upload


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> str:
    return server.token("session-owner", "prod")


def simple_files(http: httpx.Client, name: str) -> list[str]:
    page = http.get(
        f"/prod/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    if page.status_code == 404:
        return []
    assert page.status_code == 200, page.text
    return sorted(f["filename"] for f in page.json()["files"])


def test_a_session_publishes_its_files_together(http: httpx.Client, owner: str) -> None:
    wheel = build_wheel("staged-one", "1.0")
    sdist = build_sdist("staged-one", "1.0")
    created = create(http, owner, "Staged_One", "1.0")
    assert created.status_code == 201, created.text
    assert created.headers["content-type"] == MEDIA_TYPE
    session = created.json()
    url = session["links"]["session"]
    assert created.headers["location"] == url
    assert (
        url
        == f"{str(http.base_url).rstrip('/')}/prod/upload/2.0/sessions/{session['session-token']}"
    )
    assert session["status"] == "open"
    assert session["files"] == {}
    assert session["mechanisms"] == ["http-post-bytes"]

    upload_completed(http, owner, session, *wheel)
    assert simple_files(http, "staged-one") == []  # nothing is visible before the publish
    upload_completed(http, owner, session, *sdist)
    assert simple_files(http, "staged-one") == []

    published = publish(http, owner, session)
    assert published.status_code == 201, published.text
    assert published.headers["location"] == url
    assert published.json()["status"] == "published"
    assert simple_files(http, "staged-one") == sorted([wheel[0], sdist[0]])
    state = get(http, url, owner).json()
    assert state["status"] == "published"
    assert {f: v["status"] for f, v in state["files"].items()} == {
        wheel[0]: "completed",
        sdist[0]: "completed",
    }


def test_a_second_create_answers_409_with_the_live_sessions_location(
    http: httpx.Client, owner: str
) -> None:
    session = open_session(http, owner, "second-create", "1.0")
    again = create(http, owner, "Second.Create", "1.0.0")  # the same release, spelled otherwise
    assert_problem(again, 409, "already open")
    assert again.headers["location"] == session["links"]["session"]
    assert create(http, owner, "second-create", "2.0").status_code == 201  # another release


def test_concurrent_creates_have_one_winner(server: LiveServer, owner: str) -> None:
    answers: list[httpx.Response] = []
    start = threading.Barrier(8)

    def race() -> None:
        with server.client() as client:
            start.wait()
            answers.append(create(client, owner, "racing-create", "1.0"))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 7, [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 201)
    assert {a.headers["location"] for a in answers} == {winner.headers["location"]}


def test_credentials_are_asked_for_and_rights_checked(
    server: LiveServer, http: httpx.Client, owner: str
) -> None:
    session = open_session(http, owner, "guarded-session", "1.0")
    url = session["links"]["session"]
    anonymous = http.get(url)
    assert_problem(anonymous, 401, "Invalid or non-existent authentication information.")
    assert anonymous.headers["www-authenticate"] == 'Basic realm="keyless"'
    assert_problem(get(http, url, "keyless-not-a-token"), 401)
    # A valid token of someone with no role on the project: 403, on every endpoint.
    other = server.token("session-stranger", "prod")
    upload(http, "prod", owner, *build_sdist("guarded-session", "0.1"))  # the project exists
    assert_problem(get(http, url, other), 403, "isn't allowed to upload to project")
    assert_problem(publish(http, other, session), 403)
    assert_problem(create(http, other, "guarded-session", "2.0"), 403)  # 403 before 409
    assert_problem(create(http, other, "guarded-session", "1.0"), 403)


def test_a_revoked_token_is_refused_on_its_next_request(
    server: LiveServer, http: httpx.Client
) -> None:
    token = server.token("session-revoked", "prod")
    session = open_session(http, token, "revoked-mid-session", "1.0")
    file = add_file(http, token, session, *build_wheel("revoked-mid-session", "1.0"))
    Accounts(server.engine()).revoke_token_by_hash(hash_token(token))
    assert_problem(complete(http, token, file), 403)
    assert_problem(publish(http, token, session), 403)
    assert simple_files(http, "revoked-mid-session") == []


def test_credentials_are_judged_before_the_body(
    server: LiveServer, http: httpx.Client, owner: str
) -> None:
    """The token is looked up on the thread that runs the request's use case, after the body
    is read; a bad body must still not hide that the credentials are refused."""
    session = open_session(http, owner, "judged-first", "1.0")
    file = add_file(http, owner, session, *build_wheel("judged-first", "1.0"))
    revoked = server.token("session-judged", "prod")
    Accounts(server.engine()).revoke_token_by_hash(hash_token(revoked))
    for token, status in (("keyless-not-a-token", 401), (revoked, 403)):
        wrong_type = http.post(
            root("prod"),
            content=b"x",
            headers={"Content-Type": "text/plain"},
            auth=("__token__", token),
        )
        assert_problem(wrong_type, status, "Invalid or non-existent authentication")
        no_meta = http.post(session["links"]["publish"], json={}, auth=("__token__", token))
        assert_problem(no_meta, status)
        extend = post(http, session["links"]["extend"], token, {"extend-for": -1})
        assert_problem(extend, status)
        octets = http.post(
            file["mechanism"]["file_url"],
            content=b"x",
            headers={"Content-Type": "text/plain"},
            auth=("__token__", token),
        )
        assert_problem(octets, status)
    # The owner's own bad requests still get their own answers.
    assert_problem(post(http, session["links"]["extend"], owner, {"extend-for": -1}), 400)
    octets = http.post(
        file["mechanism"]["file_url"],
        content=b"x",
        headers={"Content-Type": "text/plain"},
        auth=("__token__", owner),
    )
    assert_problem(octets, 415)


def test_the_body_must_be_this_apis_json(http: httpx.Client, owner: str) -> None:
    wrong_type = http.post(
        root("prod"),
        content=b"name=x",
        headers={"Content-Type": "text/plain"},
        auth=("__token__", owner),
    )
    assert_problem(wrong_type, 415)
    no_meta = http.post(root("prod"), json={"name": "x", "version": "1"}, auth=("__token__", owner))
    assert_problem(no_meta, 400, "api-version")
    assert_problem(post(http, root("prod"), owner, {"name": "-bad-", "version": "1"}), 400)
    assert_problem(post(http, root("prod"), owner, {"name": "fine", "version": "one"}), 400)
    huge = http.post(
        root("prod"),
        content=b"{" + b" " * 200_000 + b"}",
        headers={"Content-Type": MEDIA_TYPE},
        auth=("__token__", owner),
    )
    assert_problem(huge, 400, "too large")


def test_file_creation_refusals(http: httpx.Client, owner: str) -> None:
    session = open_session(http, owner, "file-refusals", "1.0")
    filename, data = build_wheel("file-refusals", "1.0")
    good = {
        "filename": filename,
        "size": len(data),
        "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "mechanism": "http-post-bytes",
    }
    upload_url = session["links"]["upload"]
    assert_problem(post(http, upload_url, owner, {**good, "mechanism": "s3-presigned"}), 422)
    assert_problem(post(http, upload_url, owner, {**good, "hashes": {"md5": "0" * 32}}), 400)
    assert_problem(
        post(http, upload_url, owner, {**good, "hashes": {"sha256": "0" * 64, "rot13": "ab"}}),
        400,
        "Unknown hash algorithm",
    )
    other_project = build_wheel("someone-else", "1.0")[0]
    assert_problem(
        post(http, upload_url, owner, {**good, "filename": other_project}),
        400,
        "Start filename for 'file-refusals' with 'file_refusals'.",  # the legacy text
    )
    other_version = build_wheel("file-refusals", "2.0")[0]
    assert_problem(
        post(http, upload_url, owner, {**good, "filename": other_version}),
        400,
        "Version in filename should be '1.0' not '2.0'.",
    )
    assert post(http, upload_url, owner, good).status_code == 202
    assert_problem(post(http, upload_url, owner, good), 409, "already in this session")


def test_a_file_over_the_index_limit_is_refused_with_the_legacy_text(
    server: LiveServer, http: httpx.Client
) -> None:
    token = server.token("tiny-owner", "tiny")
    session = open_session(http, token, "tiny-session", "1.0", index="tiny")
    body = {
        "filename": "tiny_session-1.0.tar.gz",
        "size": 65 * 1024,
        "hashes": {"sha256": "0" * 64},
        "mechanism": "http-post-bytes",
    }
    refused = post(http, session["links"]["upload"], token, body)
    assert_problem(refused, 400, "File too large. Limit for project 'tiny-session' is 65536 bytes.")


def test_bytes_are_bounded_by_the_declared_size_and_may_be_sent_again(
    http: httpx.Client, owner: str
) -> None:
    session = open_session(http, owner, "bounded-bytes", "1.0")
    filename, data = build_wheel("bounded-bytes", "1.0")
    file = add_file(http, owner, session, filename, data)
    assert_problem(send_bytes(http, owner, file, data + b"x"), 400, "More bytes than")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        yield data
        yield b"more than declared"

    chunked = http.post(
        file["mechanism"]["file_url"],
        content=chunks(),
        headers={"Content-Type": "application/octet-stream"},
        auth=("__token__", owner),
    )
    assert_problem(chunked, 400, "More bytes than")
    assert send_bytes(http, owner, file, b"\0" * len(data)).status_code == 204
    assert send_bytes(http, owner, file, data).status_code == 204  # replaces what was sent
    assert complete(http, owner, file).status_code == 201


@pytest.mark.parametrize(
    ("meanwhile", "status", "detail"),
    [
        ("cancel", 409, "The session is canceled: its files cannot change."),
        ("delete", 404, "No such file in this upload session (deleted?)."),
    ],
)
def test_bytes_are_not_recorded_when_the_session_changed_while_they_arrived(
    server: LiveServer, http: httpx.Client, owner: str, meanwhile: str, status: int, detail: str
) -> None:
    """Checked before the body and again when recording it: the session canceled, or the
    file deleted, while the bytes were on their way records nothing."""
    name = f"changed-{meanwhile}"
    session = open_session(http, owner, name, "1.0")
    filename, data = build_wheel(name, "1.0")
    file = add_file(http, owner, session, filename, b"\0" * len(data))  # bytes recorded once
    changed = []

    def chunks() -> Iterator[bytes]:  # the first half, then the change, then the rest
        yield data[: len(data) // 2]
        with server.client() as other:
            if meanwhile == "cancel":
                changed.append(delete(other, session["links"]["session"], owner).status_code)
            else:
                changed.append(
                    delete(other, file["links"]["file-upload-session"], owner).status_code
                )
        yield data[len(data) // 2 :]

    sent = http.post(
        file["mechanism"]["file_url"],
        content=chunks(),
        headers={"Content-Type": "application/octet-stream"},
        auth=("__token__", owner),
    )
    assert changed == [204]
    assert_problem(sent, status, detail)
    if meanwhile == "cancel":  # the file still has the bytes sent before
        with server.engine().connect() as conn:
            recorded = conn.execute(
                select(db.upload_session_files.c.sha256).where(
                    db.upload_session_files.c.filename == filename
                )
            ).scalar_one()
        assert recorded == hashlib.sha256(b"\0" * len(data)).hexdigest()


def test_a_file_that_fails_a_check_carries_the_legacy_uploads_text(
    server: LiveServer, http: httpx.Client, owner: str
) -> None:
    bad = traversal_wheel("bad-archive", "1.0")
    with server.client() as client:
        legacy_answer = client.post(
            "/prod/legacy/",
            data=form_mapping(form_fields(*bad)),
            files={"content": (bad[0], bad[1], "application/octet-stream")},
            auth=("__token__", owner),
            headers={"Accept": "application/json"},
        )
    assert legacy_answer.status_code == 400
    legacy_text = legacy_answer.json()["message"]

    session = open_session(http, owner, "bad-archive", "1.0")
    file = add_file(http, owner, session, *bad)
    refused = complete(http, owner, file)
    assert_problem(refused, 400)
    assert refused.json()["detail"] == legacy_text
    state = get(http, file["links"]["file-upload-session"], owner).json()
    assert state["status"] == "error"
    assert_problem(publish(http, owner, session), 409, f"{bad[0]} (error)")

    # The digest the client declared is checked as the legacy form's sha256_digest.
    wheel = build_wheel("bad-archive", "1.0")
    delete(http, file["links"]["file-upload-session"], owner)
    wrong = add_file(http, owner, session, *wheel, hashes={"sha256": "1" * 64})
    legacy_digest = upload(http, "prod", owner, *wheel, sha256_digest="1" * 64)
    assert_problem(
        complete(http, owner, wrong),
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
    )
    assert "The digest supplied does not match" in legacy_digest.text


def test_publish_waits_for_every_file_and_cancel_ends_the_session(
    http: httpx.Client, owner: str
) -> None:
    session = open_session(http, owner, "cancel-me", "1.0")
    wheel = build_wheel("cancel-me", "1.0")
    file = add_file(http, owner, session, *wheel)
    assert_problem(publish(http, owner, session), 409, f"{wheel[0]} (pending)")
    assert complete(http, owner, file).status_code == 201
    canceled = delete(http, session["links"]["session"], owner)
    assert canceled.status_code == 204
    assert get(http, session["links"]["session"], owner).json()["status"] == "canceled"
    assert_problem(publish(http, owner, session), 409, "canceled")
    assert simple_files(http, "cancel-me") == []
    # The release is free again.
    assert create(http, owner, "cancel-me", "1.0").status_code == 201


def test_a_deleted_file_leaves_the_session(http: httpx.Client, owner: str) -> None:
    session = open_session(http, owner, "delete-file", "1.0")
    wheel = build_wheel("delete-file", "1.0")
    file = add_file(http, owner, session, *wheel)
    link = file["links"]["file-upload-session"]
    assert delete(http, link, owner).status_code == 204
    assert get(http, session["links"]["session"], owner).json()["files"] == {}
    assert_problem(get(http, link, owner), 404)
    upload_completed(http, owner, session, *wheel)  # the name may be used again
    assert publish(http, owner, session).status_code == 201
    assert simple_files(http, "delete-file") == [wheel[0]]


def test_a_filename_published_meanwhile_makes_publish_a_conflict(
    http: httpx.Client, owner: str
) -> None:
    session = open_session(http, owner, "raced-file", "1.0")
    wheel = build_wheel("raced-file", "1.0")
    sdist = build_sdist("raced-file", "1.0")
    upload_completed(http, owner, session, *wheel)
    upload_completed(http, owner, session, *sdist)
    assert upload(http, "prod", owner, *wheel).status_code == 200  # the legacy way, meanwhile
    refused = publish(http, owner, session)
    assert_problem(refused, 409, f"File already exists ('{wheel[0]}'")
    # Nothing of the session went out, and it stays editable.
    assert simple_files(http, "raced-file") == [wheel[0]]
    assert get(http, session["links"]["session"], owner).json()["status"] == "open"


def test_a_new_projects_name_is_reserved_while_its_session_lives(
    server: LiveServer, http: httpx.Client
) -> None:
    alice = server.token("reserving-alice", "prod")
    bob = server.token("reserving-bob", "prod")
    session = open_session(http, alice, "reserved-name", "1.0")
    refused = upload(http, "prod", bob, *build_sdist("reserved-name", "0.9"))
    assert refused.status_code == 403
    assert "reserved by another user's open upload session" in refused.text
    assert_problem(create(http, bob, "reserved-name", "2.0"), 403, "reserved")
    assert_problem(get(http, session["links"]["session"], bob), 403)
    assert http.get("/prod/simple/reserved-name/").status_code == 404
    assert http.get("/prod/pypi/reserved-name/json").status_code == 404
    # Published empty, the session creates the project for its owner (PEP 694's FAQ).
    assert publish(http, alice, session).status_code == 201
    assert http.get("/prod/simple/reserved-name/").status_code == 200
    assert upload(http, "prod", bob, *build_sdist("reserved-name", "0.9")).status_code == 403
    assert upload(http, "prod", alice, *build_sdist("reserved-name", "0.9")).status_code == 200


@pytest.mark.parametrize(
    "name",
    [
        "trailing-newline\n",  # `$` would let it through; PyPI's rule ends at the last character
        "kelvin-\u212a",  # KELVIN SIGN: matches [A-Z] when case is ignored in Unicode, not ASCII
        "long-\u017f",  # LATIN SMALL LETTER LONG S, likewise
    ],
)
def test_a_session_for_a_name_outside_pypis_ascii_rule_is_refused(
    http: httpx.Client, owner: str, name: str
) -> None:
    # The project its normalized form names exists and is the caller's: only the rule refuses.
    normalized = name.rstrip("\n").replace("\u212a", "k").replace("\u017f", "s")
    assert upload(http, "prod", owner, *build_wheel(normalized, "0.1")).status_code == 200
    refused = create(http, owner, name, "1.0")
    assert_problem(refused, 400, "is not a valid project name")


def test_a_publish_records_the_wheels_then_the_sdist_whichever_came_first(
    http: httpx.Client, owner: str
) -> None:
    """A client's parallel requests create a session's files in any order; the publish writes
    them (their rows and audit events) as a legacy upload would: wheels, then the sdist."""
    sdist, wheel = build_sdist("order-demo", "1.0"), build_wheel("order-demo", "1.0")
    session = open_session(http, owner, "order-demo", "1.0")
    upload_completed(http, owner, session, *sdist)  # the sdist first
    upload_completed(http, owner, session, *wheel)
    assert publish(http, owner, session).status_code == 201
    answer = http.get(
        "/prod/api/projects/order-demo/audit", headers={"Authorization": f"Bearer {owner}"}
    )
    assert answer.status_code == 200, answer.text
    newest_first = answer.json()
    files = [r["details"]["filename"] for r in newest_first if r["action"] == "file_upload"]
    assert files == [sdist[0], wheel[0]]  # the sdist recorded last
