"""`keyless ci-emulator run|serve|token|env`, driven through the parser the main CLI builds."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from keyless.cli import emulator as cli
from tests.conftest import interruptible

from .conftest import DETECT, unverified

BANNER = "keyless ci-emulator: a LOCAL OIDC issuer for rehearsals and tests"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="keyless")
    cli.define(parser.add_subparsers(dest="command", required=True).add_parser("ci-emulator"))
    return parser.parse_args(["ci-emulator", *argv])


def call(*argv: str) -> int:
    args = parse(*argv)
    code: int = args.handler(args)
    return code


def test_run_passes_the_exit_code_through(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    keys = str(tmp_path / "keys")
    code = call("run", "--keys", keys, "--repo", "o/r", "--", sys.executable, "-c", "exit(3)")
    assert code == 3
    err = capfd.readouterr().err
    assert BANNER in err
    assert "OIDC token: available" in err
    assert call("run", "--keys", keys, "--repo", "o/r", "--", sys.executable, "-c", "") == 0


def test_run_gives_the_command_a_working_oidc_flow(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = call(
        "run",
        "--keys",
        str(tmp_path / "keys"),
        "--repo",
        "octo/hello",
        "--ref",
        "refs/tags/v1.0.0",
        "--environment",
        "pypi",
        "--claim",
        "custom=1",
        "--",
        sys.executable,
        "-c",
        DETECT,
    )
    out, err = capfd.readouterr()
    assert code == 0, err
    claims = unverified(out.strip())
    assert (claims["repository"], claims["ref"], claims["environment"], claims["custom"]) == (
        "octo/hello",
        "refs/tags/v1.0.0",
        "pypi",
        "1",
    )


def test_run_without_permission_says_so_and_fails_like_ci(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--keys", str(tmp_path / "keys"), "--repo", "o/r"]
    code = call(*argv, "--no-id-token", "--", sys.executable, "-c", DETECT)
    err = capfd.readouterr().err
    assert code == 1
    assert "OIDC token: NOT available (no `id-token: write` permission)" in err
    assert "GitHubOidcPermissionCredentialError" in err
    call(*argv, "--fork-pr", "--", sys.executable, "-c", "")
    assert "NOT available (pull request from a fork)" in capfd.readouterr().err


def test_run_shows_step_outputs(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    script = "import os; open(os.environ['GITHUB_OUTPUT'], 'a').write('version=1.0\\n')"
    call("run", "--keys", str(tmp_path), "--repo", "o/r", "--", sys.executable, "-c", script)
    assert "--- $GITHUB_OUTPUT ---\nversion=1.0" in capfd.readouterr().err


def test_run_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = str(tmp_path / "keys")
    assert call("run", "--keys", keys, "--repo", "o/r", "--", "no-such-program-xyz") == 127
    assert "command not found: no-such-program-xyz" in capsys.readouterr().err
    assert call("run", "--keys", keys, "--repo", "o/r") == 2
    assert call("run", "--keys", keys, "--repo", "bad", "--", "true") == 2
    assert "is not OWNER/REPO" in capsys.readouterr().err


def test_token_prints_one_jwt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = call(
        "token",
        "--keys",
        str(tmp_path),
        "--audience",
        "keyless-test",
        "--repo",
        "octo/hello",
        "--reusable-workflow",
        "octo/shared/.github/workflows/publish.yml@refs/heads/main",
        "--claim",
        'aud:=["a", "b"]',
        "--drop-claim",
        "jti",
        "--show-claims",
    )
    out, err = capsys.readouterr()
    assert code == 0
    claims = unverified(out.strip())
    assert claims["iss"] == f"http://127.0.0.1:{cli.DEFAULT_PORT}"
    assert claims["aud"] == ["a", "b"]
    assert "jti" not in claims
    assert claims["job_workflow_ref"] == "octo/shared/.github/workflows/publish.yml@refs/heads/main"
    assert BANNER in err
    assert f"serve --port {cli.DEFAULT_PORT}" in err
    assert '"repository": "octo/hello"' in err


def test_env_prints_the_job_variables_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_dir = tmp_path / "job"
    args = ["env", "--keys", str(tmp_path), "--repo", "octo/hello", "--job-dir", str(job_dir)]
    assert call(*args, "--issuer-port", "9999") == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["GITHUB_REPOSITORY"] == "octo/hello"
    assert (
        lines["ACTIONS_ID_TOKEN_REQUEST_URL"] == "http://127.0.0.1:9999/_apis/token?api-version=2.0"
    )
    assert lines["GITHUB_EVENT_PATH"] == str(job_dir / "event.json")
    assert "PATH" not in lines
    assert call(*args, "--export", "--workflow-name", "Release to PyPI") == 0
    assert "export GITHUB_WORKFLOW='Release to PyPI'" in capsys.readouterr().out
    assert call("env", "--keys", str(tmp_path), "--provider", "gitlab", "--repo", "g/p") == 0
    out = capsys.readouterr().out
    assert "GITLAB_CI=true" in out
    assert "KEYLESS_ID_TOKEN=ey" in out


SERVE = textwrap.dedent(
    """
    import argparse, sys
    from keyless.cli import emulator
    parser = argparse.ArgumentParser(prog="keyless")
    emulator.define(parser.add_subparsers().add_parser("ci-emulator"))
    args = parser.parse_args(sys.argv[1:])
    sys.exit(args.handler(args))
    """
)


def test_serve_runs_until_interrupted(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            "ci-emulator",
            "serve",
            "--port",
            "0",
            "--keys",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        issuer = text.split("issuer:", 1)[1].split()[0]
        assert f'issuers = {{ "{issuer}" = "github" }}' in text
        assert f"KEYLESS_TRUSTED_ISSUERS=github={issuer}" in text
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
        assert discovery["issuer"] == issuer
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        assert process.returncode == 0
        assert BANNER in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_run_warns_about_upload_credentials_left_in_the_shell(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_PUBLISH_TOKEN", "pypi-long-lived")
    call("run", "--keys", str(tmp_path), "--repo", "o/r", "--", sys.executable, "-c", "")
    assert "warning: UV_PUBLISH_TOKEN is set" in capfd.readouterr().err
