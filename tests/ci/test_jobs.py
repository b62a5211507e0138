"""Jobs run under the emulator, seen by a real client: the `id` library's ambient detection."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from keyless.ci import Emulator, JobClaims

from .conftest import detect, unverified

RELEASE = JobClaims(
    repo="octo-org/hello-world",
    workflow="release.yml",
    ref="refs/tags/v1.0.0",
    environment="pypi",
    event="release",
)


def test_id_library_gets_a_github_token(emulator: Emulator, tmp_path: Path) -> None:
    result = detect(emulator, RELEASE, tmp_path)
    assert result.returncode == 0, result.stderr
    claims = unverified(result.stdout.strip())
    assert claims["iss"] == emulator.issuer
    assert claims["aud"] == "keyless"
    assert claims["repository"] == "octo-org/hello-world"
    assert claims["ref"] == "refs/tags/v1.0.0"
    assert claims["environment"] == "pypi"
    assert claims["event_name"] == "release"
    assert claims["job_workflow_ref"] == (
        "octo-org/hello-world/.github/workflows/release.yml@refs/tags/v1.0.0"
    )


def test_without_id_token_permission_id_reports_missing_permission(
    emulator: Emulator, tmp_path: Path
) -> None:
    job = JobClaims(repo="octo-org/hello-world", id_token=False)
    env = emulator.environment(job, base={})
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" not in env
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" not in env
    result = detect(emulator, job, tmp_path)
    assert result.returncode != 0
    assert "GitHubOidcPermissionCredentialError" in result.stderr
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN environment variable was unset" in result.stderr


def test_fork_pull_request_gets_no_token_and_says_fork(emulator: Emulator, tmp_path: Path) -> None:
    job = JobClaims(repo="octo-org/hello-world", fork_pr=True)
    env = emulator.environment(job, base={})
    assert env["GITHUB_EVENT_NAME"] == "pull_request"
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" not in env
    event = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
    assert event["pull_request"]["head"]["repo"]["fork"] is True
    assert event["pull_request"]["base"]["repo"]["full_name"] == "octo-org/hello-world"
    result = detect(emulator, job, tmp_path)
    assert "GitHubOidcPermissionCredentialError" in result.stderr


def test_pull_request_target_from_a_fork_does_get_a_token(
    emulator: Emulator, tmp_path: Path
) -> None:
    # The dangerous case an index must refuse by event_name: GitHub grants the token.
    job = JobClaims(repo="octo-org/hello-world", fork_pr=True, event="pull_request_target")
    result = detect(emulator, job, tmp_path)
    assert result.returncode == 0, result.stderr
    assert unverified(result.stdout.strip())["event_name"] == "pull_request_target"


def test_reusable_workflow_claims_reach_the_client(emulator: Emulator, tmp_path: Path) -> None:
    callee = "octo-org/shared/.github/workflows/publish.yml@refs/heads/main"
    job = JobClaims(repo="octo-org/hello-world", reusable_workflow=callee)
    result = detect(emulator, job, tmp_path)
    claims = unverified(result.stdout.strip())
    assert claims["job_workflow_ref"] == callee
    assert claims["workflow_ref"].startswith("octo-org/hello-world/.github/workflows/release.yml@")


def test_gitlab_job_has_the_token_in_aud_id_token(emulator: Emulator, tmp_path: Path) -> None:
    job = JobClaims(
        provider="gitlab",
        repo="my-group/my-project",
        environment="release",
        audiences=("keyless", "keyless-test"),
    )
    env = emulator.environment(job, base={})
    assert env["GITLAB_CI"] == "true"
    assert env["CI_PROJECT_PATH"] == "my-group/my-project"
    assert env["CI_COMMIT_REF_NAME"] == "main"
    assert env["CI_SERVER_URL"] == emulator.issuer
    assert unverified(env["KEYLESS_TEST_ID_TOKEN"])["aud"] == "keyless-test"
    assert "GITHUB_ACTIONS" not in env
    result = detect(emulator, job, tmp_path)
    assert result.returncode == 0, result.stderr
    claims = unverified(result.stdout.strip())
    assert claims["aud"] == "keyless"
    assert claims["project_path"] == "my-group/my-project"
    assert claims["sha"] == env["CI_COMMIT_SHA"]


def test_gitlab_job_without_id_tokens(emulator: Emulator, tmp_path: Path) -> None:
    job = JobClaims(provider="gitlab", repo="my-group/my-project", id_token=False)
    result = detect(emulator, job, tmp_path)
    assert "GitLab: Environment variable KEYLESS_ID_TOKEN not found" in result.stderr


def test_environment_matches_the_claims(emulator: Emulator, tmp_path: Path) -> None:
    env = emulator.environment(RELEASE, base={"PATH": "/bin"}, workspace=tmp_path)
    claims = unverified(emulator.token("keyless", RELEASE))
    assert env["PATH"] == "/bin"
    assert env["CI"] == env["GITHUB_ACTIONS"] == "true"
    assert env["GITHUB_REPOSITORY"] == claims["repository"]
    assert env["GITHUB_REPOSITORY_OWNER_ID"] == claims["repository_owner_id"]
    assert env["GITHUB_REF"] == claims["ref"]
    assert (env["GITHUB_REF_NAME"], env["GITHUB_REF_TYPE"]) == ("v1.0.0", "tag")
    assert env["GITHUB_SHA"] == claims["sha"]
    assert env["GITHUB_WORKFLOW_REF"] == claims["workflow_ref"]
    assert env["GITHUB_RUN_ID"] == claims["run_id"]
    assert env["GITHUB_EVENT_NAME"] == "release"
    assert env["GITHUB_SERVER_URL"] == "https://github.com"
    assert env["GITHUB_WORKSPACE"] == str(tmp_path)
    for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY", "GITHUB_EVENT_PATH"):
        assert Path(env[name]).is_file()
    assert Path(env["RUNNER_TEMP"]).is_dir()
    event = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
    assert event["release"]["tag_name"] == "v1.0.0"


def test_a_real_ci_jobs_identity_does_not_leak_in(emulator: Emulator, tmp_path: Path) -> None:
    # Run inside a real CI job, the emulated job must see only the emulated identity.
    real = {
        "PATH": "/usr/bin",
        "GITHUB_REPOSITORY": "real/repo",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "real-secret",
        "ACTIONS_RUNTIME_TOKEN": "real-secret",
        "GITLAB_CI": "true",
        "CI_JOB_JWT": "real",
        "PYPI_ID_TOKEN": "real",
        "BUILDKITE": "true",
    }
    env = emulator.environment(JobClaims(repo="octo/hello", id_token=False), base=real)
    assert env["PATH"] == "/usr/bin"
    assert env["GITHUB_REPOSITORY"] == "octo/hello"
    assert not set(env) & {
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "GITLAB_CI",
        "CI_JOB_JWT",
        "PYPI_ID_TOKEN",
        "BUILDKITE",
    }


def test_run_passes_cwd_and_env_through(emulator: Emulator, tmp_path: Path) -> None:
    result = emulator.run(
        [sys.executable, "-c", "import os; print(os.environ['GITHUB_WORKSPACE'], os.getcwd())"],
        RELEASE,
        cwd=tmp_path,
        env={"PATH": "/bin", "EXTRA": "1"},
        capture_output=True,
        text=True,
    )
    workspace, cwd = result.stdout.split()
    assert Path(workspace) == Path(cwd) == tmp_path


def test_scratch_files_are_removed_on_stop(keys_dir: Path) -> None:
    with Emulator(keys_dir) as ci:
        event_path = Path(ci.environment(RELEASE, base={})["GITHUB_EVENT_PATH"])
        assert event_path.is_file()
    assert not event_path.exists()
