"""PEP 694 upload sessions over raw HTTP, for the index's tests (`test_upload_sessions*.py`)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

MEDIA_TYPE = "application/vnd.pypi.upload.v2+json"
PROBLEM = "application/problem+json"
META = {"api-version": "2.0"}


def root(index: str) -> str:
    return f"/{index}/upload/2.0/"


def post(
    http: httpx.Client, url: str, token: str | None, body: dict[str, Any] | None = None
) -> httpx.Response:
    """POST a JSON body of this API (with its `meta`) as `__token__`."""
    return http.post(
        url,
        json={"meta": META, **(body or {})},
        headers={"Content-Type": MEDIA_TYPE},
        auth=("__token__", token) if token else httpx.Auth(),  # Auth(): no credentials
    )


def get(http: httpx.Client, url: str, token: str) -> httpx.Response:
    return http.get(url, auth=("__token__", token))


def delete(http: httpx.Client, url: str, token: str) -> httpx.Response:
    return http.delete(url, auth=("__token__", token))


def create(
    http: httpx.Client, token: str, name: str, version: str, index: str = "prod"
) -> httpx.Response:
    return post(http, root(index), token, {"name": name, "version": version})


def open_session(
    http: httpx.Client, token: str, name: str, version: str, index: str = "prod"
) -> dict[str, Any]:
    created = create(http, token, name, version, index)
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


def add_file(
    http: httpx.Client,
    token: str,
    session: dict[str, Any],
    filename: str,
    data: bytes,
    **declared: Any,
) -> dict[str, Any]:
    """Create the file's upload session, send its bytes; its creation answer (not completed)."""
    body = {
        "filename": filename,
        "size": len(data),
        "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "mechanism": "http-post-bytes",
        **declared,
    }
    created = post(http, session["links"]["upload"], token, body)
    assert created.status_code == 202, created.text
    sent = send_bytes(http, token, created.json(), data)
    assert sent.status_code == 204, sent.text
    return created.json()  # type: ignore[no-any-return]


def send_bytes(http: httpx.Client, token: str, file: dict[str, Any], data: bytes) -> httpx.Response:
    return http.post(
        file["mechanism"]["file_url"],
        content=data,
        headers={"Content-Type": "application/octet-stream"},
        auth=("__token__", token),
    )


def complete(http: httpx.Client, token: str, file: dict[str, Any]) -> httpx.Response:
    return post(http, file["links"]["complete"], token)


def upload_completed(
    http: httpx.Client, token: str, session: dict[str, Any], filename: str, data: bytes
) -> dict[str, Any]:
    file = add_file(http, token, session, filename, data)
    completed = complete(http, token, file)
    assert completed.status_code == 201, completed.text
    assert completed.json()["status"] == "completed"
    return file


def publish(http: httpx.Client, token: str, session: dict[str, Any]) -> httpx.Response:
    return post(http, session["links"]["publish"], token)


def assert_problem(answer: httpx.Response, status: int, detail: str | None = None) -> None:
    """An RFC 9457 problem of this API with `status`, whose detail contains `detail`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["status"] == status
    assert body["meta"] == META
    assert body["errors"][0]["message"] == body["detail"]
    if detail is not None:
        assert detail in body["detail"], body["detail"]
