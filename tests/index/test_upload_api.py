"""The upload endpoint over raw HTTP: every refusal has the right status and PyPI's text."""

from __future__ import annotations

import hashlib
import random
from typing import cast

import httpx
import pytest

from tests.builders import build_sdist, build_wheel, forged_wheel, zip_bomb_wheel
from tests.conftest import LiveServer

from .uploading import form_fields, upload


@pytest.fixture(scope="module")
def owner_token(server: LiveServer) -> str:
    return server.token("api-owner", "prod")


def test_first_upload_creates_the_project_and_identical_reupload_is_idempotent(
    http: httpx.Client, owner_token: str
) -> None:
    filename, data = build_wheel("first-upload", "1.0")
    created = upload(http, "prod", owner_token, filename, data)
    assert created.status_code == 200, created.text
    again = upload(http, "prod", owner_token, filename, data)
    assert again.status_code == 200, again.text
    assert "already uploaded" in again.json()["message"]


def test_different_bytes_under_a_used_filename_are_refused(
    http: httpx.Client, owner_token: str
) -> None:
    filename, data = build_wheel("reuse-name", "1.0")
    assert upload(http, "prod", owner_token, filename, data).status_code == 200
    _, other = build_wheel("reuse-name", "1.0", extra_files={"reuse_name/x.py": b"x = 1\n"})
    refused = upload(http, "prod", owner_token, filename, other)
    assert refused.status_code == 400
    blake2 = hashlib.blake2b(other, digest_size=32).hexdigest()
    message = f"File already exists ('{filename}', with blake2_256 hash '{blake2}')."
    assert message in refused.text
    assert refused.reason_phrase.startswith(message)  # where twine and PyPI put it


def test_same_release_under_another_spelling_of_the_version(
    http: httpx.Client, owner_token: str
) -> None:
    """1.0 and 1.0.0 are one release: a second sdist for it is refused."""
    assert upload(http, "prod", owner_token, *build_sdist("one-sdist", "1.0")).status_code == 200
    refused = upload(http, "prod", owner_token, *build_sdist("one-sdist", "1.0.0"))
    assert refused.status_code == 400
    assert "Only one sdist may be uploaded per release." in refused.text


def test_wrong_digest(http: httpx.Client, owner_token: str) -> None:
    filename, data = build_wheel("digest-demo", "1.0")
    refused = upload(http, "prod", owner_token, filename, data, sha256_digest="0" * 64)
    assert refused.status_code == 400
    assert (
        "The digest supplied does not match a digest calculated from the uploaded file."
        in refused.text
    )


def test_no_digest_at_all(http: httpx.Client, owner_token: str) -> None:
    filename, data = build_wheel("nodigest-demo", "1.0")
    refused = upload(
        http,
        "prod",
        owner_token,
        filename,
        data,
        md5_digest=None,
        sha256_digest=None,
        blake2_256_digest=None,
    )
    assert refused.status_code == 400
    assert "Include at least one message digest." in refused.text


def test_forged_metadata_version_inside_the_wheel(http: httpx.Client, owner_token: str) -> None:
    """Form and filename say 1.0; the METADATA inside the wheel says 6.6.6. PyPI accepts this."""
    filename, data = forged_wheel("forged-demo", "1.0", inner_version="6.6.6")
    refused = upload(http, "prod", owner_token, filename, data, version="1.0")
    assert refused.status_code == 400
    assert "6.6.6" in refused.text
    assert "1.0" in refused.text


def test_path_traversal_filename(http: httpx.Client, owner_token: str) -> None:
    _, data = build_wheel("traversal-demo", "1.0")
    refused = upload(http, "prod", owner_token, "../../traversal_demo-1.0-py3-none-any.whl", data)
    assert refused.status_code == 400
    assert "Cannot upload a file with '/' or '\\' in the name." in refused.text


def test_zip_bomb(http: httpx.Client, owner_token: str) -> None:
    filename, data = zip_bomb_wheel("bomb-demo", "1.0")
    refused = upload(http, "prod", owner_token, filename, data)
    assert refused.status_code == 400
    assert "compression ratio" in refused.text


def test_oversized_file_on_an_index_with_a_small_limit(
    server: LiveServer, http: httpx.Client
) -> None:
    token = server.token("tiny-owner", "tiny")
    filename, data = build_wheel(
        "big-demo",
        "1.0",
        extra_files={"big_demo/blob.bin": random.Random(0).randbytes(100_000)},  # noqa: S311
    )
    assert len(data) > 64 * 1024
    refused = upload(http, "tiny", token, filename, data)
    assert refused.status_code == 400
    assert "File too large. Limit for project 'big-demo' is 65536 bytes." in refused.text
    if server.database_url is None:  # the folder's temp files (a bucket's: test_s3_blobs.py)
        assert server.data_dir.joinpath("blobs", "tmp").is_dir()
        assert list(server.data_dir.joinpath("blobs", "tmp").iterdir()) == []


def test_non_owner_token_is_refused(
    server: LiveServer, http: httpx.Client, owner_token: str
) -> None:
    filename, data = build_wheel("owned-demo", "1.0")
    assert upload(http, "prod", owner_token, filename, data).status_code == 200
    stranger = server.token("stranger", "prod")
    filename2, data2 = build_wheel("owned-demo", "1.1")
    refused = upload(http, "prod", stranger, filename2, data2)
    assert refused.status_code == 403
    assert "The user 'stranger' isn't allowed to upload to project 'owned-demo'." in refused.text


def test_project_scoped_token_cannot_touch_other_projects(
    server: LiveServer, http: httpx.Client
) -> None:
    scoped = server.token("scoped-user", "prod", projects=["scoped-a"])
    assert upload(http, "prod", scoped, *build_wheel("scoped-a", "1.0")).status_code == 200
    refused = upload(http, "prod", scoped, *build_wheel("scoped-b", "1.0"))
    assert refused.status_code == 403
    assert "limited to: scoped-a" in refused.text


def test_token_for_another_index_is_refused(server: LiveServer, http: httpx.Client) -> None:
    token = server.token("test-only", "test")
    refused = upload(http, "prod", token, *build_wheel("wrong-index", "1.0"))
    assert refused.status_code == 403
    assert "another index" in refused.text


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (None, "Invalid or non-existent authentication information."),
        (
            ("__token__", "keyless-not-a-real-token"),
            "Invalid or non-existent authentication information.",
        ),
        (("alice", "hunter2hunter2"), "use '__token__' as the username"),
    ],
)
def test_bad_credentials(http: httpx.Client, auth: tuple[str, str] | None, expected: str) -> None:
    filename, data = build_wheel("auth-demo", "1.0")
    answer = http.post(
        "/prod/legacy/",
        data=dict(form_fields(filename, data)),
        files={"content": (filename, data)},
        auth=auth or httpx.Auth(),  # Auth(): no credentials
    )
    assert answer.status_code == 403
    assert expected in answer.text


def test_expired_and_revoked_tokens(server: LiveServer, http: httpx.Client) -> None:
    import datetime as dt

    from keyless.index.accounts import Accounts
    from keyless.store.db import open_database

    expired = server.token("expiring", "prod", expires_in=dt.timedelta(seconds=-1))
    refused = upload(http, "prod", expired, *build_wheel("expired-demo", "1.0"))
    assert refused.status_code == 403
    assert "Invalid API Token: token is expired" in refused.text

    live = server.token("revoking", "prod")
    engine = open_database(server.database)
    token_id = max(cast(int, row["id"]) for row in Accounts(engine).list_tokens("revoking"))
    Accounts(engine).revoke_token(token_id)
    refused = upload(http, "prod", live, *build_wheel("revoked-demo", "1.0"))
    assert refused.status_code == 403


def test_bearer_and_token_schemes(server: LiveServer, http: httpx.Client) -> None:
    token = server.token("scheme-user", "prod")
    for scheme, version in (("Bearer", "1.0"), ("token", "1.1")):
        filename, data = build_wheel("scheme-demo", version)
        answer = http.post(
            "/prod/legacy/",
            data=dict(form_fields(filename, data)),
            files={"content": (filename, data)},
            headers={"Authorization": f"{scheme} {token}"},
        )
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"protocol_version": "2"}, "Unknown protocol version."),
        ({"filetype": "bdist_egg"}, "Invalid value for filetype. Error: Use a known file type."),
        ({"name": "-bad-"}, "'-bad-' is an invalid value for Name."),
        ({"version": "not a version"}, "'not a version' is invalid for 'version'."),
    ],
)
def test_form_field_errors(
    http: httpx.Client, owner_token: str, overrides: dict[str, str], expected: str
) -> None:
    filename, data = build_wheel("form-demo", "1.0")
    refused = upload(
        http, "prod", owner_token, filename, data, form_fields(filename, data, **overrides)
    )
    assert refused.status_code == 400
    assert expected in refused.text


def test_all_metadata_errors_are_reported_together(http: httpx.Client, owner_token: str) -> None:
    filename, data = build_wheel("many-errors", "1.0")
    refused = upload(
        http,
        "prod",
        owner_token,
        filename,
        data,
        requires_python="not-a-specifier",
        description_content_type="text/html",
    )
    assert refused.status_code == 400
    assert "'not-a-specifier' is invalid for 'requires-python'" in refused.text
    assert "'description-content-type' must be one of" in refused.text


def test_no_file_part(http: httpx.Client, owner_token: str) -> None:
    filename, data = build_wheel("nofile-demo", "1.0")
    answer = http.post(
        "/prod/legacy/",
        data=dict(form_fields(filename, data)),
        files={"other": ("x", b"x")},
        auth=("__token__", owner_token),
    )
    assert answer.status_code == 400
    assert "Upload payload does not have a file." in answer.text


def test_not_multipart(http: httpx.Client, owner_token: str) -> None:
    answer = http.post(
        "/prod/legacy/",
        content=b"{}",
        auth=("__token__", owner_token),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert "multipart/form-data" in answer.text


def test_unknown_index(http: httpx.Client, owner_token: str) -> None:
    filename, data = build_wheel("slash-demo", "1.0")
    unknown = upload(http, "nope", owner_token, filename, data)
    assert unknown.status_code == 404
    assert "No index named 'nope'" in unknown.text


def test_the_upload_url_works_without_its_trailing_slash(
    http: httpx.Client, owner_token: str
) -> None:
    filename, data = build_wheel("slashless-demo", "1.0")
    fields = dict(form_fields(filename, data))
    files = {"content": (filename, data)}
    auth = ("__token__", owner_token)
    stored = http.post("/prod/legacy", data=fields, files=files, auth=auth)
    assert stored.status_code == 200, stored.text
    assert stored.json()["message"] == "OK"
    # The same upload at the usual URL: the same file, already there.
    again = http.post("/prod/legacy/", data=fields, files=files, auth=auth)
    assert (again.status_code, again.json()["sha256"]) == (200, stored.json()["sha256"])
    assert "already uploaded" in again.json()["message"]
    # And every refusal reads the same at both.
    other = http.post("/prod/legacy", data=fields, files=files, auth=("__token__", "keyless-x"))
    assert other.status_code == 403
    assert "Invalid or non-existent authentication information" in other.text


def test_json_errors_for_clients_that_ask(http: httpx.Client, owner_token: str) -> None:
    filename, data = build_wheel("json-error-demo", "1.0")
    answer = http.post(
        "/prod/legacy/",
        data=dict(form_fields(filename, data, sha256_digest="0" * 64)),
        files={"content": (filename, data)},
        auth=("__token__", owner_token),
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"].startswith("400 The digest supplied does not match")
    assert body["message"] == body["code"][4:]


def test_a_new_project_too_similar_to_an_existing_one_is_refused(
    server: LiveServer, http: httpx.Client, owner_token: str
) -> None:
    assert upload(http, "prod", owner_token, *build_wheel("toasting", "1.0")).status_code == 200
    for confusable in ("Toast-ing", "t0asting", "toastlng"):
        refused = upload(http, "prod", owner_token, *build_wheel(confusable, "1.0"))
        assert refused.status_code == 400
        assert f"The name '{confusable}' is too similar to an existing project." in refused.text
    # Another index has its own names.
    other = server.token("similar-owner", "private")
    assert upload(http, "private", other, *build_wheel("t0asting", "1.0")).status_code == 200


def test_index_profiles_differ_on_pypi_only_rules(server: LiveServer, http: httpx.Client) -> None:
    """linux_x86_64 wheels and local versions: refused by the pypi profile, fine on private."""
    prod = server.token("profile-owner", "prod")
    private = server.token("profile-owner", "private")
    linux = build_wheel("profile-demo", "1.0", tag="cp311-cp311-linux_x86_64")
    refused = upload(http, "prod", prod, *linux, pyversion="cp311")
    assert refused.status_code == 400
    assert "unsupported platform tag 'linux_x86_64'" in refused.text
    assert upload(http, "private", private, *linux, pyversion="cp311").status_code == 200

    local = build_wheel("profile-demo", "1.1+corp.1")
    assert upload(http, "prod", prod, *local).status_code == 400
    assert upload(http, "private", private, *local).status_code == 200


def test_description_that_does_not_render_is_refused(http: httpx.Client, owner_token: str) -> None:
    broken_rst = "Title\n=====\n\n.. unknown-directive:: boom\n\n`unclosed\n"
    filename, data = build_wheel(
        "render-demo",
        "1.0",
        metadata={"description": broken_rst, "description_content_type": "text/x-rst"},
    )
    refused = upload(http, "prod", owner_token, filename, data)
    assert refused.status_code == 400
    assert "The description failed to render for 'text/x-rst'." in refused.text


def test_project_size_limit(server: LiveServer, http: httpx.Client) -> None:
    token = server.token("size-owner", "tiny")
    pad = random.Random(1).randbytes(40_000)  # noqa: S311 - incompressible padding
    for version, expected in (("1.0", 200), ("1.1", 200), ("1.2", 400)):
        filename, data = build_wheel("size-demo", version, extra_files={"size_demo/pad": pad})
        answer = upload(http, "tiny", token, filename, data)
        assert answer.status_code == expected, answer.text
    assert (
        "Project size too large. Limit for project 'size-demo' total size is 102400 bytes."
        in answer.text
    )


def test_a_deleted_filename_can_never_be_used_again(server: LiveServer, http: httpx.Client) -> None:
    from sqlalchemy import delete, select

    from keyless.store import db
    from keyless.store.db import open_database

    token = server.token("reuse-owner", "prod")
    filename, data = build_wheel("deleted-demo", "1.0")
    assert upload(http, "prod", token, filename, data).status_code == 200
    engine = open_database(server.database)
    with db.writing(engine) as conn:  # what an admin's removal of the file leaves behind
        conn.execute(delete(db.files).where(db.files.c.filename == filename))
        assert conn.execute(
            select(db.filename_log).where(db.filename_log.c.filename == filename)
        ).first()
    refused = upload(http, "prod", token, filename, data)
    assert refused.status_code == 400
    assert (
        "This filename was previously used by a file that has since been deleted." in refused.text
    )


@pytest.mark.parametrize("name", ["trailing-newline\n", "kelvin-\u212a", "long-\u017f"])
def test_a_form_name_outside_pypis_ascii_rule_gets_pypis_text(
    server: LiveServer, name: str
) -> None:
    token = server.token("ascii-rule-owner", "prod")
    filename, data = build_wheel("ascii-rule", "1.0")
    with server.client() as client:
        answer = upload(client, "prod", token, filename, data, name=name)
    assert answer.status_code == 400, answer.text
    assert f"{name!r} is an invalid value for Name. Error: Start and end with" in answer.text
