"""`keyless doctor` against a live TLS index and the CI emulator's real OIDC tokens.

What it must deliver: the cause and the fix for each way a job fails to publish, and a
publisher registration that — registered verbatim — makes the job publish.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.ci.emulator import Emulator, JobClaims
from keyless.oidc.providers.gitlab import id_token_variable
from keyless.publish.doctor import Diagnosis, diagnose
from tests.conftest import AUDIENCE, LiveServer, client_env, free_port, make_project

from .conftest import (
    Answer,
    StubIndex,
    add_github_publisher,
    github_job,
    job_env,
    publish_in_job,
    write_release,
)

Detector = Callable[[str], str | None]


def project_dir(tmp_path: Path, name: str, version: str = "1.0.0") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\n', encoding="utf-8"
    )
    return folder


def keyless_admin(server: LiveServer, command: str) -> subprocess.CompletedProcess[str]:
    """Run a printed `keyless …` admin command verbatim against the server's data."""
    words = shlex.split(command)
    assert words[0] == "keyless"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "keyless",
            *words[1:],
            "--data",
            str(server.data_dir),
            "--config",
            str(server.data_dir.parent / "keyless.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def in_job(
    ci: Emulator,
    job: JobClaims,
    server: LiveServer,
    http: httpx.Client,
    folder: Path,
    *,
    index: str = "prod",
    detect: Detector | None = None,
    **options: Any,
) -> Diagnosis:
    """`diagnose` with the job's environment; the token comes from the emulator, as `id`
    would fetch it (GitHub: only when the job may request one; GitLab: its variables)."""
    env = ci.environment(job, base={})

    def from_job(audience: str) -> str | None:
        if job.provider == "gitlab":
            return env.get(id_token_variable(audience))
        assert env.get("ACTIONS_ID_TOKEN_REQUEST_URL"), "asked for a token it cannot get"
        return ci.token(audience, job)

    return diagnose(
        server.upload_url(index),
        environ=env,
        http=http,
        project_dir=folder,
        detect=detect or from_job,
        **options,
    )


def codes(diagnosis: Diagnosis, level: str = "error") -> list[str]:
    return [note.code for note in diagnosis.findings if note.level == level]


def mint(http: httpx.Client, token: str, index: str | None = None) -> httpx.Response:
    path = f"/_/oidc/{index}/mint-token" if index else "/_/oidc/mint-token"
    return http.post(path, content=json.dumps({"token": token}))


# ------------------------------------------------------------------ end to end, CLI, `id`


def run_doctor(
    ci: Emulator, job: JobClaims, url: str, folder: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`keyless doctor --repository-url url *args`, run in `folder` as a step of `job`."""
    return ci.run(
        [sys.executable, "-m", "keyless", "doctor", "--repository-url", url, *args],
        job,
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_in_a_github_job_prints_the_publisher_that_makes_it_publish(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, tp_http, "doctor-demo")
    folder = project_dir(tmp_path, "doctor-demo")
    env = job_env(tp_server, tmp_path)
    job = github_job("doctor-demo")
    url = tp_server.upload_url("prod")

    def doctor(*args: str) -> subprocess.CompletedProcess[str]:
        return run_doctor(ci, job, url, folder, env, *args)

    first = doctor()
    output = first.stdout + first.stderr
    # No publisher yet: the index itself says no, so the doctor must not say ready.
    assert first.returncode == 1, output
    assert (
        "The index refuses this job's token for 'doctor-demo' on index 'prod': "
        "invalid-publisher: valid token, but no publisher of 'doctor-demo' on index 'prod' "
        "trusts GitHub repository 'octo-org/doctor-demo'"
    ) in output
    assert "NOT ready to publish" in output
    assert "doctor-demo 1.0.0 is not on the index yet" in output
    assert "The index takes OIDC tokens for audience 'keyless'" in output
    assert "job_workflow_ref" in output  # the claims the index will see...
    assert "eyJ" not in output  # ...but never the token
    expected = (
        "keyless publisher add --index prod --project doctor-demo github --owner octo-org "
        "--repository doctor-demo --workflow release.yml --environment pypi "
        f"--issuer {ci.issuer}"
    )
    assert f"  {expected}\n" in first.stdout

    # Registered verbatim, it lets the very same job publish.
    registered = keyless_admin(tp_server, expected)
    assert registered.returncode == 0, registered.stderr
    now_ready = doctor()
    assert now_ready.returncode == 0, now_ready.stdout + now_ready.stderr
    assert (
        "The index accepts this job's token for 'doctor-demo' on index 'prod': GitHub "
        "octo-org/doctor-demo, workflow release.yml, environment pypi"
    ) in now_ready.stdout
    assert "ready to publish: the index accepts this job" in now_ready.stdout
    assert "The trusted publisher to register" not in now_ready.stdout  # it is registered
    write_release(folder / "dist", "doctor-demo", "1.0.0")
    published = publish_in_job(ci, job, tp_server, folder)
    assert published.returncode == 0, published.stdout + published.stderr

    again = doctor("--json", "--expect", "environment=pypi")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["ok"], report["status"]) == (True, "ready")
    assert report["index_answer"]["allowed"] is True
    assert report["version_exists"] is True
    assert report["registration"]["mismatches"] == []
    assert report["registration"]["fields"]["environment"] == "pypi"
    assert "jti" not in report["claims"]
    assert "eyJ" not in again.stdout
    notes = {note["code"]: note for note in report["findings"]}
    assert notes["version"]["level"] == "warning"
    assert "already on the index" in notes["version"]["message"]
    assert notes["expected"]["level"] == "ok"


def test_doctor_names_the_missing_permission_and_shows_the_yaml(
    tp_server: LiveServer, ci: Emulator, tmp_path: Path
) -> None:
    folder = project_dir(tmp_path, "doctor-perm")
    result = run_doctor(
        ci,
        github_job("doctor-perm", id_token=False),
        tp_server.upload_url("prod"),
        folder,
        job_env(tp_server, tmp_path),
    )
    assert result.returncode == 1
    assert "lacks the `id-token: write` permission" in result.stdout
    assert "      id-token: write" in result.stdout  # the YAML to paste, job level
    assert "NOT ready to publish" in result.stdout


# --------------------------------------------------------------- causes, in process


def test_fork_pull_request(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    job = github_job("doctor-fork", event="pull_request", fork_pr=True, ref=None, environment=None)
    diagnosis = in_job(ci, job, tp_server, tp_http, tmp_path)
    assert codes(diagnosis) == ["fork-pull-request"]  # the cause, not a permission
    [note] = diagnosis.errors
    assert "fork" in note.message
    assert "release" in note.fix
    assert diagnosis.registration is None


def test_pull_request_target_is_refused(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    job = github_job("doctor-prt", event="pull_request_target", ref="refs/heads/main")
    diagnosis = in_job(ci, job, tp_server, tp_http, tmp_path)
    assert "pull-request-target" in codes(diagnosis)
    assert diagnosis.registration is not None
    # The index's own rules say the same: no registration can accept this event.
    assert any("pull_request_target" in m for m in diagnosis.registration.mismatches)
    assert not diagnosis.ok


def test_reusable_workflow_registration_mints(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, tp_http, "doctor-reuse")
    folder = project_dir(tmp_path, "doctor-reuse")
    job = github_job(
        "doctor-reuse",
        reusable_workflow="octo-org/shared/.github/workflows/publish.yml@refs/heads/main",
    )
    diagnosis = in_job(ci, job, tp_server, tp_http, folder)
    assert codes(diagnosis, "warning") == ["reusable-workflow"]
    registration = diagnosis.registration
    assert registration is not None
    assert registration.fields["workflow"] == "release.yml"  # the caller
    assert (
        registration.fields["reusable_workflow"] == "octo-org/shared/.github/workflows/publish.yml"
    )
    assert registration.mismatches == []
    assert registration.command is not None
    assert (
        "--reusable-workflow octo-org/shared/.github/workflows/publish.yml" in registration.command
    )

    assert mint(tp_http, ci.token(AUDIENCE, job)).status_code == 422  # not yet registered
    registered = keyless_admin(tp_server, registration.command)
    assert registered.returncode == 0, registered.stderr
    answer = mint(tp_http, ci.token(AUDIENCE, job))
    assert answer.status_code == 200, answer.text


def test_environment_missing_or_different(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    bare = in_job(ci, github_job("doctor-env", environment=None), tp_server, tp_http, tmp_path)
    assert codes(bare) == []
    assert bare.status == "unknown"  # no pyproject.toml: no project to ask the index about
    assert codes(bare, "warning") == ["environment"]
    assert bare.registration is not None
    assert "environment" not in bare.registration.fields

    staging = github_job("doctor-env", environment="staging")
    other = in_job(ci, staging, tp_server, tp_http, tmp_path, expected={"environment": "pypi"})
    assert codes(other) == ["expected"]
    [note] = other.errors
    assert "environment" in note.message
    assert "'staging'" in note.message
    assert "'pypi'" in note.message


def test_token_for_another_audience(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    job = github_job("doctor-aud")
    diagnosis = in_job(
        ci, job, tp_server, tp_http, tmp_path, detect=lambda _aud: ci.token("elsewhere", job)
    )
    assert codes(diagnosis) == ["audience"]
    assert "'elsewhere'" in diagnosis.errors[0].message


def test_each_index_has_its_audience(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, tp_http, "doctor-stage", index="test")
    folder = project_dir(tmp_path, "doctor-stage")
    job = github_job("doctor-stage", environment="testpypi")
    diagnosis = in_job(ci, job, tp_server, tp_http, folder, index="test")
    assert codes(diagnosis) == ["index"], diagnosis.findings  # not registered yet
    assert diagnosis.audience == "keyless-test"
    assert diagnosis.discovery == "pep807"
    assert diagnosis.claims["aud"] == "keyless-test"
    assert diagnosis.registration is not None
    assert diagnosis.registration.command is not None
    assert diagnosis.registration.command.startswith("keyless publisher add --index test ")
    assert keyless_admin(tp_server, diagnosis.registration.command).returncode == 0
    registered = in_job(ci, job, tp_server, tp_http, folder, index="test")
    assert registered.status == "ready", registered.findings
    assert mint(tp_http, ci.token("keyless-test", job), index="test").status_code == 200


def test_gitlab_without_id_tokens_then_with(
    tp_server: LiveServer, tp_http: httpx.Client, gitlab_ci: Emulator, tmp_path: Path
) -> None:
    make_project(tp_server, tp_http, "doctor-gl")
    folder = project_dir(tmp_path, "doctor-gl")
    job = JobClaims(
        provider="gitlab",
        repo="group/sub/doctor-gl",
        ref="refs/tags/v1.0.0",
        environment="production",
        audiences=("other",),
    )
    missing = in_job(gitlab_ci, job, tp_server, tp_http, folder)
    assert codes(missing) == ["id-tokens"]
    [note] = missing.errors
    assert "KEYLESS_ID_TOKEN is not set" in note.message
    assert "OTHER_ID_TOKEN (aud 'other')" in note.message
    assert "KEYLESS_ID_TOKEN:\n      aud: keyless" in note.fix

    fixed = replace(job, audiences=(AUDIENCE,))
    diagnosis = in_job(gitlab_ci, fixed, tp_server, tp_http, folder)
    assert codes(diagnosis) == ["index"], diagnosis.findings  # not registered yet
    registration = diagnosis.registration
    assert registration is not None
    assert registration.fields == {
        "namespace": "group/sub",
        "project": "doctor-gl",
        "workflow_filepath": ".gitlab-ci.yml",
        "environment": "production",
        "issuer": gitlab_ci.issuer,
    }
    assert registration.command is not None
    assert keyless_admin(tp_server, registration.command).returncode == 0
    assert in_job(gitlab_ci, fixed, tp_server, tp_http, folder).ok
    token = gitlab_ci.environment(fixed, base={})["KEYLESS_ID_TOKEN"]
    assert mint(tp_http, token).status_code == 200


def test_outside_ci_says_how_to_rehearse(
    tp_server: LiveServer, tp_http: httpx.Client, tmp_path: Path
) -> None:
    def no_token(_audience: str) -> str | None:
        raise AssertionError("no token is asked for outside CI")

    folder = project_dir(tmp_path, "doctor-local", version="2.0.0")
    diagnosis = diagnose(
        tp_server.upload_url("prod"), environ={}, http=tp_http, project_dir=folder, detect=no_token
    )
    assert diagnosis.ci is None
    assert diagnosis.status == "unknown"  # no token to ask the index about: not "ready"
    assert not diagnosis.ok
    [note] = [n for n in diagnosis.findings if n.code == "not-ci"]
    assert note.fix.startswith("keyless ci-emulator run --repo ")
    assert "--ref refs/tags/v2.0.0" in note.fix
    assert f"-- keyless doctor --repository-url {tp_server.upload_url('prod')}" in note.fix
    assert diagnosis.version_exists is False


@pytest.mark.parametrize(
    ("suffix", "code", "level"),
    [("/prod/legacy", "upload-url", "warning"), ("/prod/simple/", "upload-url", "error")],
)
def test_upload_url_mistakes(
    tp_server: LiveServer, tp_http: httpx.Client, tmp_path: Path, suffix: str, code: str, level: str
) -> None:
    diagnosis = diagnose(tp_server.url + suffix, environ={}, http=tp_http, project_dir=tmp_path)
    assert code in codes(diagnosis, level)


# ------------------------------------------------- the index's own answer (a dry run), CLI


def doctor_in_job(
    ci: Emulator, job: JobClaims, url: str, folder: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`keyless doctor --json` as a step of the job; (the process, its JSON report)."""
    done = run_doctor(ci, job, url, folder, env, "--json")
    report: dict[str, Any] = json.loads(done.stdout)
    assert "eyJ" not in done.stdout + done.stderr  # the token is never printed
    return done, report


def index_notes(report: dict[str, Any]) -> list[str]:
    return [n["message"] for n in report["findings"] if n["code"] == "index"]


@pytest.mark.parametrize(
    ("registered", "changes", "mismatch"),
    [
        (
            {"workflow": "publish.yml"},
            {},
            "job_workflow_ref: the token says "
            "'octo-org/{name}/.github/workflows/release.yml@refs/tags/v1.0.0', the publisher "
            "for '{name}' on index 'prod' expects "
            "'octo-org/{name}/.github/workflows/publish.yml@refs/tags/v1.0.0'",
        ),
        (
            {"environment": "pypi"},
            {"environment": "staging"},
            "environment: the token says 'staging', the publisher for '{name}' on index 'prod' "
            "expects 'pypi'",
        ),
        (
            {"ref": "refs/tags/v*"},
            {"ref": "refs/heads/main"},
            "ref: the token says 'refs/heads/main', the publisher for '{name}' on index 'prod' "
            "accepts only refs matching 'refs/tags/v*'",
        ),
    ],
    ids=["workflow", "environment", "ref"],
)
def test_doctor_reports_the_index_exact_mismatch(
    tp_server: LiveServer,
    tp_http: httpx.Client,
    ci: Emulator,
    tmp_path: Path,
    registered: dict[str, str],
    changes: dict[str, Any],
    mismatch: str,
) -> None:
    name = f"doctor-mm-{next(iter(registered))}"
    make_project(tp_server, tp_http, name)
    add_github_publisher(tp_server, tp_http, ci, name, **registered)
    folder = project_dir(tmp_path, name)
    job = github_job(name, **changes)
    done, report = doctor_in_job(
        ci, job, tp_server.upload_url("prod"), folder, job_env(tp_server, tmp_path)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (report["ok"], report["status"]) == (False, "not-ready")
    answer = report["index_answer"]
    assert answer["allowed"] is False
    [error] = answer["errors"]
    assert error["code"] == "invalid-publisher"
    assert mismatch.format(name=name) in error["description"]
    [note] = index_notes(report)
    assert mismatch.format(name=name) in note
    # The very token would indeed be refused by the mint, with the same words.
    refused = mint(tp_http, ci.token(AUDIENCE, job), index="prod")
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["description"] == error["description"]


def test_a_token_from_another_repository_learns_nothing_about_the_publishers(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    name = "doctor-guarded"
    make_project(tp_server, tp_http, name)
    add_github_publisher(
        tp_server, tp_http, ci, name, repository="hidden-repo", workflow="hidden-flow.yml"
    )
    folder = project_dir(tmp_path, name)
    intruder = github_job("intruder")  # octo-org/intruder, which no publisher of the project names
    done, report = doctor_in_job(
        ci, intruder, tp_server.upload_url("prod"), folder, job_env(tp_server, tmp_path)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert report["status"] == "not-ready"
    [error] = report["index_answer"]["errors"]
    assert error["description"].startswith(
        f"valid token, but no publisher of '{name}' on index 'prod' trusts GitHub repository "
        "'octo-org/intruder'"
    )
    for secret in ("hidden-repo", "hidden-flow"):
        assert secret not in done.stdout + done.stderr


def test_doctor_says_unknown_when_the_index_is_down(ci: Emulator, tmp_path: Path) -> None:
    folder = project_dir(tmp_path, "doctor-down")
    url = f"https://127.0.0.1:{free_port()}/prod/legacy/"  # nothing listens there
    done, report = doctor_in_job(ci, github_job("doctor-down"), url, folder, client_env(tmp_path))
    assert done.returncode == 3, done.stdout + done.stderr
    assert (report["ok"], report["status"]) == (False, "unknown")
    assert report["index_answer"] is None
    assert [n["code"] for n in report["findings"] if n["level"] == "error"] == []
    [note] = [n for n in report["findings"] if n["level"] == "unknown"]
    assert note["code"] == "audience"
    assert "whether this job can publish is unknown" in note["message"]


def older_index(stub: StubIndex, *, pep807: bool) -> None:
    """A stub answering Trusted Publishing discovery like an index without the dry run: with
    PEP 807 (an older keyless: the dry run is a 404) or with PyPI's root endpoints only."""
    stub.routes["/_/oidc/audience"] = (200, {"audience": AUDIENCE})
    if pep807:
        key = hashlib.sha256(b"/x/legacy/").hexdigest()
        stub.routes[f"/.well-known/pytp/{key}"] = (
            200,
            {
                "audience-endpoint": f"{stub.url}/_/oidc/x/audience",
                "mint-token-endpoint": f"{stub.url}/_/oidc/x/mint-token",
            },
        )
        stub.routes["/_/oidc/x/audience"] = (200, {"audience": AUDIENCE})
        stub.script.append(Answer(status=404, body=b"Not Found"))


@pytest.mark.parametrize("pep807", [True, False], ids=["older-keyless", "root-endpoints-only"])
def test_doctor_says_unknown_when_the_index_has_no_dry_run(
    stub: StubIndex, ci: Emulator, tmp_path: Path, pep807: bool
) -> None:
    older_index(stub, pep807=pep807)
    folder = project_dir(tmp_path, "doctor-old")
    done, report = doctor_in_job(
        ci, github_job("doctor-old"), stub.upload_url, folder, client_env(tmp_path)
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert (report["ok"], report["status"]) == (False, "unknown")
    [note] = [n for n in report["findings"] if n["level"] == "unknown"]
    assert note["code"] == "index"
    assert "whether it accepts this job is unknown" in note["message"]
    if pep807:
        assert "did not answer the dry run (HTTP 404" in note["message"]
        assert len(stub.posts) == 1  # it asked (and got a 404)
    else:
        assert "offers no dry run" in note["message"]
        assert stub.posts == []  # nothing to ask


def test_doctor_text_output_says_unknown(ci: Emulator, tmp_path: Path) -> None:
    folder = project_dir(tmp_path, "doctor-unknown-text")
    url = f"https://127.0.0.1:{free_port()}/prod/legacy/"
    done = run_doctor(ci, github_job("doctor-unknown-text"), url, folder, client_env(tmp_path))
    assert done.returncode == 3
    assert "[????] " in done.stdout
    assert "UNKNOWN whether this job can publish" in done.stdout
    assert "ready to publish" not in done.stdout.replace("NOT ready", "")


def test_settings_only_the_release_reads_do_not_stop_the_doctor(tmp_path: Path) -> None:
    # pyproject.toml is read in one place for release, doctor and init; a malformed
    # [tool.keyless] is the release's business, so the doctor still reads the project.
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "doctor-settings"\nversion = "1.0.0"\n'
        '[tool.keyless]\nversion-scheme = "calver"\n'
    )
    url = f"http://127.0.0.1:{free_port()}/prod/legacy/"  # nothing listens there
    with httpx.Client(timeout=5) as http:
        diagnosis = diagnose(url, environ={}, http=http, project_dir=tmp_path)
    assert (diagnosis.project, diagnosis.version) == ("doctor-settings", "1.0.0")
