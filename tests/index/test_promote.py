"""Promote over HTTP against a live server: same bytes, same hashes, the upload rules, who may."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.ci.emulator import Emulator
from tests.builders import build_sdist, build_wheel
from tests.conftest import (
    SERVER_CONFIG,
    LiveServer,
    free_port,
    make_tls_files,
    start_server,
    stop_server,
)

from .test_trusted_publishing import add_github_publisher, job, mint
from .uploading import upload

JSON = "application/vnd.pypi.simple.v1+json"


def promote(
    client: httpx.Client,
    token: str | None,
    project: str,
    version: str,
    to: str = "prod",
    source: str = "test",
    body: Any = None,
) -> httpx.Response:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps({"to": to} if body is None else body)
    return client.post(
        f"/{source}/api/projects/{project}/releases/{version}/promote",
        content=content,
        headers=headers,
    )


def stage(
    server: LiveServer, client: httpx.Client, name: str, version: str = "1.0.0", index: str = "test"
) -> tuple[str, list[tuple[str, bytes]]]:
    """Upload a wheel and an sdist of `name` to `index`, owned by `owner-<name>`."""
    token = server.token(f"owner-{name}", index)
    dists = [build_wheel(name, version), build_sdist(name, version)]
    for filename, data in dists:
        answer = upload(client, index, token, filename, data)
        assert answer.status_code == 200, answer.text
    return token, dists


def simple_files(client: httpx.Client, index: str, name: str) -> dict[str, str]:
    page = client.get(f"/{index}/simple/{name}/", headers={"Accept": JSON})
    assert page.status_code == 200, page.text
    return {f["filename"]: f["hashes"]["sha256"] for f in page.json()["files"]}


def blobs(server: LiveServer) -> list[Path]:
    return [p for p in (server.data_dir / "blobs" / "sha256").glob("*/*/*") if p.is_file()]


def audit(client: httpx.Client, token: str, index: str, name: str) -> list[dict[str, Any]]:
    answer = client.get(
        f"/{index}/api/projects/{name}/audit", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()
    return rows


@pytest.mark.local_only  # counts the folder's blob files
def test_promote_copies_no_bytes_and_keeps_the_hashes(
    server: LiveServer, client: httpx.Client
) -> None:
    name = "promo-same-bytes"
    test_token, dists = stage(server, client, name)
    prod_token = server.token(f"owner-{name}", "prod")
    blobs_before = sorted(p.name for p in blobs(server))

    answer = promote(client, prod_token, name, "1.0.0")

    assert answer.status_code == 200, answer.text
    result = answer.json()
    expected = {filename: hashlib.sha256(data).hexdigest() for filename, data in dists}
    assert result["project"] == name
    assert result["version"] == "1.0.0"
    assert (result["from"], result["to"]) == ("test", "prod")
    assert result["created_project"] is True
    assert result["changed"] is True
    assert {f["filename"]: f["sha256"] for f in result["files"]} == expected
    assert {f["status"] for f in result["files"]} == {"promoted"}
    assert all(f["url"].endswith(f"/files/{f['sha256']}/{f['filename']}") for f in result["files"])

    # Both indexes list the same files under the same hashes; the blob store holds each once.
    assert simple_files(client, "test", name) == expected
    assert simple_files(client, "prod", name) == expected
    assert sorted(p.name for p in blobs(server)) == blobs_before
    for sha256 in expected.values():
        assert [p.name for p in blobs(server)].count(sha256) == 1
    for filename, sha256 in expected.items():
        download = client.get(f"/files/{sha256}/{filename}")
        assert hashlib.sha256(download.content).hexdigest() == sha256

    # The release on prod carries the same information; the PEP 658 metadata is served.
    staged = client.get(f"/test/pypi/{name}/1.0.0/json").json()
    released = client.get(f"/prod/pypi/{name}/1.0.0/json").json()
    assert released["info"]["summary"] == staged["info"]["summary"]
    assert released["info"]["requires_python"] == staged["info"]["requires_python"]
    assert {f["digests"]["sha256"] for f in released["urls"]} == set(expected.values())
    page = client.get(f"/prod/simple/{name}/", headers={"Accept": JSON}).json()
    wheel = next(f for f in page["files"] if f["filename"].endswith(".whl"))
    assert wheel.get("core-metadata")
    assert client.get(wheel["url"] + ".metadata").status_code == 200

    # The caller owns the new project on prod; both journals record the promotion.
    prod_trail = audit(client, prod_token, "prod", name)
    test_trail = audit(client, test_token, "test", name)
    promoted = [r for r in prod_trail if r["action"] == "promote_release"]
    assert len(promoted) == 1
    assert promoted[0]["details"]["from"] == "test"
    assert {f["filename"] for f in promoted[0]["details"]["files"]} == set(expected)
    assert [r["details"]["to"] for r in test_trail if r["action"] == "promote_release"] == ["prod"]

    # Repeated: a 200 no-op.
    again = promote(client, prod_token, name, "1.0.0")
    assert again.status_code == 200, again.text
    assert again.json()["changed"] is False
    assert {f["status"] for f in again.json()["files"]} == {"existing"}
    assert len(audit(client, prod_token, "prod", name)) == len(prod_trail)


def test_partial_promote_adds_only_what_is_missing(
    server: LiveServer, client: httpx.Client
) -> None:
    name = "promo-partial"
    _, dists = stage(server, client, name)
    prod_token = server.token(f"owner-{name}", "prod")
    wheel_name, wheel = dists[0]
    assert upload(client, "prod", prod_token, wheel_name, wheel).status_code == 200

    answer = promote(client, prod_token, name, "1.0.0")

    assert answer.status_code == 200, answer.text
    status = {f["filename"]: f["status"] for f in answer.json()["files"]}
    assert status == {wheel_name: "existing", dists[1][0]: "promoted"}
    assert answer.json()["created_project"] is False


def test_same_filename_with_other_bytes_on_the_target_fails_loudly(
    server: LiveServer, client: httpx.Client
) -> None:
    name = "promo-conflict"
    stage(server, client, name)
    prod_token = server.token(f"owner-{name}", "prod")
    filename, other = build_wheel(name, "1.0.0", metadata={"summary": "different bytes"})
    assert upload(client, "prod", prod_token, filename, other).status_code == 200

    answer = promote(client, prod_token, name, "1.0.0")

    assert answer.status_code == 400
    assert answer.json()["message"].startswith("File already exists")
    assert filename in answer.json()["message"]
    # Nothing was added: the sdist is not on prod either.
    assert list(simple_files(client, "prod", name)) == [filename]


def test_filename_log_and_target_status_are_respected(
    server: LiveServer, client: httpx.Client
) -> None:
    name = "promo-archived"
    stage(server, client, name)
    prod_token = server.token(f"owner-{name}", "prod")
    assert upload(client, "prod", prod_token, *build_sdist(name, "0.1")).status_code == 200
    archived = client.post(
        f"/prod/api/projects/{name}/status",
        json={"status": "archived"},
        headers={"Authorization": f"Bearer {prod_token}"},
    )
    assert archived.status_code == 200, archived.text

    answer = promote(client, prod_token, name, "1.0.0")

    assert answer.status_code == 403
    assert "archived" in answer.json()["message"]


def test_one_sdist_per_release_holds_on_the_target(
    server: LiveServer, client: httpx.Client
) -> None:
    name = "promo-one-sdist"
    stage(server, client, name, version="1.0.0")
    prod_token = server.token(f"owner-{name}", "prod")
    # 1.0 and 1.0.0 are one release: prod has its sdist already.
    assert upload(client, "prod", prod_token, *build_sdist(name, "1.0")).status_code == 200

    answer = promote(client, prod_token, name, "1.0.0")

    assert answer.status_code == 400
    assert "only one sdist may be uploaded per release" in answer.json()["message"]
    assert list(simple_files(client, "prod", name)) == [f"{name.replace('-', '_')}-1.0.tar.gz"]


def test_policy_of_the_target_applies(server: LiveServer, client: httpx.Client) -> None:
    # `private` allows local versions; `prod` (profile pypi) does not.
    name = "promo-local-version"
    token, _ = stage(server, client, name, version="1.0+local", index="private")
    prod_token = server.token(f"owner-{name}", "prod")

    answer = promote(client, prod_token, name, "1.0+local", source="private")

    assert answer.status_code == 400
    assert "not accepted by index 'prod'" in answer.json()["message"]
    assert client.get(f"/prod/simple/{name}/").status_code == 404
    assert token


def test_refusals(server: LiveServer, client: httpx.Client) -> None:
    name = "promo-refusals"
    test_token, _ = stage(server, client, name)
    prod_token = server.token(f"owner-{name}", "prod")

    # Who: no token, a token for the source index, a stranger, a token limited to another
    # project, an owner on prod who does not own the project on test.
    assert promote(client, None, name, "1.0.0").status_code == 403
    wrong_index = promote(client, test_token, name, "1.0.0")
    assert wrong_index.status_code == 403
    assert "for 'prod' (the target)" in wrong_index.json()["message"]
    stranger = promote(client, server.token("promo-stranger", "prod"), name, "1.0.0")
    assert stranger.status_code == 403
    assert "not an owner" in stranger.json()["message"]
    limited = server.token(f"owner-{name}", "prod", projects=["something-else"])
    assert promote(client, limited, name, "1.0.0").status_code == 403

    other = "promo-refusals-two"
    stage(server, client, other)
    squatter = server.token("promo-squatter", "prod")
    assert upload(client, "prod", squatter, *build_sdist(other, "0.1")).status_code == 200
    not_owner_on_prod = promote(client, server.token(f"owner-{other}", "prod"), other, "1.0.0")
    assert not_owner_on_prod.status_code == 403
    assert "on index 'prod'" in not_owner_on_prod.json()["message"]
    not_owner_on_test = promote(client, squatter, other, "1.0.0")
    assert not_owner_on_test.status_code == 403
    assert "on index 'test'" in not_owner_on_test.json()["message"]

    # What: unknown release/project 404; a malformed request 400.
    assert promote(client, prod_token, name, "9.9.9").status_code == 404
    assert promote(client, prod_token, "promo-no-such-project", "1.0").status_code == 404
    assert promote(client, prod_token, name, "not a version").status_code == 400
    assert promote(client, prod_token, name, "1.0.0", body=b"{not json").status_code == 400
    assert promote(client, prod_token, name, "1.0.0", body=["prod"]).status_code == 400
    assert promote(client, prod_token, name, "1.0.0", body={}).status_code == 400
    assert promote(client, prod_token, name, "1.0.0", body={"to": 7}).status_code == 400
    unknown_target = promote(client, prod_token, name, "1.0.0", to="nowhere")
    assert unknown_target.status_code == 400
    assert "nowhere" in unknown_target.json()["message"]
    same = promote(client, test_token, name, "1.0.0", to="test")
    assert same.status_code == 400
    assert promote(client, prod_token, name, "1.0.0", source="nowhere").status_code == 404
    assert client.get(f"/prod/simple/{name}/").status_code == 404

    # A yanked release is not promoted.
    yanked = client.post(
        f"/test/api/projects/{name}/releases/1.0.0/yank",
        json={"reason": "broken"},
        headers={"Authorization": f"Bearer {test_token}"},
    )
    assert yanked.status_code == 200
    refused = promote(client, prod_token, name, "1.0.0")
    assert refused.status_code == 400
    assert "yanked" in refused.json()["message"]


# ------------------------------------------------------------------ trusted-publisher tokens


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(tmp_path_factory.mktemp("promote-emulator"), port=free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def tp_server(tmp_path_factory: pytest.TempPathFactory, emulator: Emulator) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("promote-tp")
    config = SERVER_CONFIG + '\n[trusted-publishing]\naudience = "keyless"\n'
    config += f'\n[trusted-publishing.issuers]\n"{emulator.issuer}" = "github"\n'
    live = start_server(folder, tls=make_tls_files(folder), config_text=config)
    yield live
    stop_server(live)


def test_trusted_publisher_token_promotes_within_its_scope(
    tp_server: LiveServer, emulator: Emulator
) -> None:
    name = "promo-trusted"
    with tp_server.client() as client:
        stage(tp_server, client, name)
        owner_prod = tp_server.token(f"owner-{name}", "prod")
        assert upload(client, "prod", owner_prod, *build_sdist(name, "0.1")).status_code == 200
        add_github_publisher(tp_server, emulator, name, index="test")
        minted = mint(client, emulator.token("keyless", job()))
        assert minted.status_code == 200, minted.text
        test_only = minted.json()["token"]
        # A token whose scope is the source only may not write to the target.
        refused = promote(client, test_only, name, "1.0.0")
        assert refused.status_code == 403
        assert "isn't allowed to promote" in refused.json()["message"]

        # With a publisher on prod the same job's token covers the target: promoted.
        add_github_publisher(tp_server, emulator, name, index="prod")
        minted = mint(client, emulator.token("keyless", job(sha="b" * 40)))
        assert minted.status_code == 200, minted.text
        answer = promote(client, minted.json()["token"], name, "1.0.0")
        assert answer.status_code == 200, answer.text
        page = client.get(f"/prod/simple/{name}/", headers={"Accept": JSON}).json()
        marks = {f["filename"]: f.get("_trusted-publisher") for f in page["files"]}
        assert marks[f"{name.replace('-', '_')}-1.0.0.tar.gz"][0]["summary"].startswith(
            "GitHub octo-org/demo"
        )
