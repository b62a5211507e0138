"""The bench's bulk seeding of keyless (`Keyless.prepare(bulk=...)`) writes through the index's
own write path: a seeded project is one an upload could have made — listed with its hashes and
serial, its PEP 658 metadata served, owned by the bench user, its files "already there" to a
re-upload of the same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urljoin

import httpx
from bench.dists import build_wheel, metadata_text, upload_fields
from bench.servers import JSON_TYPE, Keyless


def post(server: Keyless, wheel_name: str, version: str) -> httpx.Response:
    wheel = build_wheel(wheel_name, version)
    fields = upload_fields(
        wheel.name, wheel.version, wheel.requires, {"sha256_digest": wheel.sha256}
    )
    data: dict[str, list[str]] = {}
    for key, value in fields:
        data.setdefault(key, []).append(value)
    with httpx.Client(timeout=60) as client:
        return client.post(
            server.upload_url,
            data=data,
            files={"content": (wheel.filename, wheel.data)},
            auth=httpx.BasicAuth("__token__", server.token),
        )


def test_seeded_projects_are_what_uploads_make(tmp_path: Path) -> None:
    seeded = [
        build_wheel("seed-one", "1.0"),
        build_wheel("seed-one", "1.1"),
        build_wheel("seed-two", "2.0", requires=("seed-one",)),
    ]
    server = Keyless(tmp_path / "keyless")
    server.prepare(bulk=seeded)
    server.start()
    try:
        with httpx.Client(timeout=30) as client:
            page = client.get(server.simple_url("seed-one"), headers={"Accept": JSON_TYPE})
            assert page.status_code == 200, page.text
            body = page.json()
            assert [(f["filename"], f["hashes"]["sha256"]) for f in body["files"]] == [
                (w.filename, w.sha256) for w in seeded[:2]
            ]
            assert body["meta"]["_last-serial"] > 0  # the journal row became the serial
            two = client.get(server.simple_url("seed-two"), headers={"Accept": JSON_TYPE})
            (file,) = two.json()["files"]
            metadata = client.get(urljoin(str(two.url), file["url"]) + ".metadata")
            expected = metadata_text("seed-two", "2.0", ("seed-one",)).encode()
            assert metadata.content == expected
            assert file["core-metadata"] == {"sha256": hashlib.sha256(expected).hexdigest()}
            root = client.get(server.simple_url(), headers={"Accept": JSON_TYPE}).json()
            assert {p["name"] for p in root["projects"]} >= {"seed-one", "seed-two"}

        # The bench user owns the seeded project: a new version uploads; the seeded bytes
        # again are the same file, not a conflict.
        new = post(server, "seed-one", "1.2")
        assert new.status_code == 200, new.text
        again = post(server, "seed-one", "1.0")
        assert again.status_code == 200, again.text
        assert again.json()["message"] == "OK: this exact file was already uploaded"
    finally:
        server.stop()
