"""The stage of a PEP 694 session: pip and uv install the staged release, unpublished, from its
URL alone (no credentials), as --index-url (its dependencies resolve from the index's published
projects) and as --extra-index-url; after publish or cancel the stage is gone."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer

from .sessions_api import delete, open_session, publish, upload_completed
from .test_clients import make_venv, run, uv_pip_install
from .uploading import upload


def pip(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    venv = make_venv(tmp_path)
    done = run(
        [
            *(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"),
            *("--no-cache-dir", *args),
        ],
        env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return next(x for x in done.stdout.splitlines() if x.startswith("Successfully installed"))


@pytest.mark.clients
def test_pip_and_uv_install_from_the_stage_until_it_is_published(
    server: LiveServer, http: httpx.Client, tmp_path: Path, env: dict[str, str]
) -> None:
    owner = server.token("stage-owner", "prod")
    dependency = build_wheel("stage-dep", "2.0")
    assert upload(http, "prod", owner, *dependency).status_code == 200
    wheel = build_wheel(
        "stage-app",
        "1.0",
        metadata={"requires_dist": ["stage-dep>=2"]},
        extra_files={"stage_app/__init__.py": b"STAGED = True\n"},
    )
    session = open_session(http, owner, "stage-app", "1.0")
    upload_completed(http, owner, session, *wheel)
    upload_completed(http, owner, session, *build_sdist("stage-app", "1.0"))
    stage = session["links"]["stage"]
    assert stage == f"{server.url}/prod/+stage/{session['session-token']}/simple/"
    assert http.get("/prod/simple/stage-app/").status_code == 404  # not published

    as_index = pip(tmp_path / "pip-index", env, "--index-url", stage, "stage-app==1.0")
    assert "stage-app-1.0" in as_index
    assert "stage-dep-2.0" in as_index
    as_extra = pip(
        tmp_path / "pip-extra",
        env,
        *("--index-url", server.simple_url("prod"), "--extra-index-url", stage),
        "stage-app==1.0",
    )
    assert "stage-app-1.0" in as_extra
    for flag in ("--index-url", "--extra-index-url"):
        venv = make_venv(tmp_path / f"uv{flag}")
        extra = ("--index-url", server.simple_url("prod")) if flag == "--extra-index-url" else ()
        done = uv_pip_install(venv, env, *extra, flag, stage, "stage-app==1.0")
        assert done.returncode == 0, done.stdout + done.stderr
        check = run(
            [str(venv / "bin" / "python"), "-c", "import stage_app; print(stage_app.STAGED)"], env
        )
        assert check.stdout.strip() == "True", check.stderr

    staged_file = http.get(
        stage + "stage-app/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    file_url = next(f["url"] for f in staged_file.json()["files"] if f["filename"] == wheel[0])
    assert http.get(file_url).content == wheel[1]
    assert publish(http, owner, session).status_code == 201
    assert http.get(stage).status_code == 404
    assert http.get(stage + "stage-app/").status_code == 404
    assert http.get(file_url).status_code == 404
    assert http.get("/prod/simple/stage-app/").status_code == 200


def test_a_canceled_sessions_stage_is_gone(server: LiveServer, http: httpx.Client) -> None:
    owner = server.token("stage-canceler", "prod")
    session = open_session(http, owner, "stage-canceled", "1.0")
    upload_completed(http, owner, session, *build_wheel("stage-canceled", "1.0"))
    stage = session["links"]["stage"]
    page = http.get(stage + "stage-canceled/")
    assert page.status_code == 200
    assert "stage_canceled-1.0-py3-none-any.whl" in page.text
    assert http.get(stage.replace(session["session-token"], "x" * 43)).status_code == 404
    assert delete(http, session["links"]["session"], owner).status_code == 204
    assert http.get(stage).status_code == 404
    assert http.get(stage + "stage-canceled/").status_code == 404
