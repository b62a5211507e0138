"""`keyless release` end to end: a real TLS keyless server with `test` and `prod` indexes, the CI
emulator's OIDC tokens (no API token anywhere), a local webhook receiver and SMTP server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.ci.emulator import Emulator
from keyless.publish import promote as promote_client
from keyless.publish.errors import PublishError
from keyless.publish.notify import NotifyConfig
from keyless.publish.project import read_project
from keyless.publish.release import (
    ReleaseResult,
    clean_environment,
    release,
    top_level_modules,
)
from keyless.publish.reporter import RecordingReporter
from tests.builders import build_wheel
from tests.conftest import LiveServer, git, make_project

from .conftest import add_github_publisher, github_job, job_env, simple_hashes
from .test_notify import Inbox, Receiver, receiver, smtp  # noqa: F401 - fixtures

CHANGELOG = """\
# Changelog

## [Unreleased]

## [{version}] - 2026-01-01

### Added

- The first real release of {name}.

## [0.0.1] - 2025-01-01

- A placeholder.
"""


def write_project(
    folder: Path,
    name: str,
    version: str = "1.0.0",
    *,
    tool: str = "",
    dynamic_version: bool = False,
) -> Path:
    """A small hatchling project with a console script and a changelog."""
    module = name.replace("-", "_")
    package = folder / "src" / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f'__version__ = "{version}"\n\n\ndef main():\n    print("hello from {name}", __version__)\n'
    )
    version_line = 'dynamic = ["version"]' if dynamic_version else f'version = "{version}"'
    hatch_version = (
        f'[tool.hatch.version]\npath = "src/{module}/__init__.py"\n' if dynamic_version else ""
    )
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "{name}"
            {version_line}
            description = "A sample project released by keyless release."
            readme = "README.md"
            requires-python = ">=3.9"
            license = "MIT"
            authors = [{{name = "Octo", email = "octo@example.com"}}]

            [project.scripts]
            {name} = "{module}:main"

            [tool.hatch.build.targets.wheel]
            packages = ["src/{module}"]

            """
        )
        + hatch_version
        + "\n"
        + tool
    )
    (folder / "README.md").write_text(f"# {name}\n\nA sample project.\n")
    (folder / "CHANGELOG.md").write_text(CHANGELOG.format(version=version, name=name))
    return folder


def stage_project(server: LiveServer, http: httpx.Client, ci: Emulator, name: str) -> None:
    """The project on both indexes (0.0.1), with a GitHub publisher for each."""
    for index in ("test", "prod"):
        make_project(server, http, name, index=index)
        add_github_publisher(server, http, ci, name, index=index)


def keyless_release(
    ci: Emulator, name: str, project: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`keyless release --json` as a step of a GitHub job of octo-org/<name>."""
    dist = project.parent / f"dist-{len(list(project.parent.glob('dist-*')))}"
    command = [
        *(sys.executable, "-m", "keyless", "release", "--json", "--no-isolation"),
        *("--dist-dir", str(dist), *args),
    ]
    done = ci.run(
        command,
        github_job(name),
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        document = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"no JSON result:\n{done.stdout}\n{done.stderr}")
    return done, document


def urls(server: LiveServer) -> list[str]:
    return [
        "--staging-url",
        server.upload_url("test"),
        "--production-url",
        server.upload_url("prod"),
    ]


# ------------------------------------------------------------------ end to end, in CI


def test_two_stage_release_under_the_emulator(
    tp_server: LiveServer,
    tp_http: httpx.Client,
    ci: Emulator,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
    smtp: tuple[Inbox, int],  # noqa: F811
) -> None:
    name = "release-e2e"
    inbox, smtp_port = smtp
    tool = textwrap.dedent(
        f"""\
        [tool.keyless]
        version-scheme = "semver"

        [tool.keyless.notify.email]
        to = ["maintainers@example.com"]
        from = "release-bot@example.com"
        smtp = "127.0.0.1:{smtp_port}"
        """
    )
    project = write_project(tmp_path / "project", name, tool=tool)
    stage_project(tp_server, tp_http, ci, name)
    env = job_env(tp_server, tmp_path)
    env["KEYLESS_NOTIFY_WEBHOOK"] = f"{receiver.url}/hooks/release"
    blobs = tp_server.data_dir / "blobs" / "sha256"
    blobs_before = {p.name for p in blobs.glob("*/*/*")}

    # Promotion is for a production index without upload sessions (PEP 694): as if it had none.
    done, result = keyless_release(
        ci, name, project, env, *urls(tp_server), "--smoke", name, "--no-session"
    )

    assert done.returncode == 0, done.stderr
    assert result["ok"] is True
    assert result["production_method"] == "promote"
    assert result["session"] is None
    assert [(s["name"], s["status"]) for s in result["stages"]] == [
        ("project", "passed"),
        ("version", "passed"),
        ("build", "passed"),
        ("check", "passed"),
        ("staging", "passed"),
        ("install-test", "passed"),
        ("production", "passed"),
        ("notes", "passed"),
        ("notify", "passed"),
    ]
    built = {f["filename"]: f["sha256"] for f in result["built"]}
    assert sorted(built) == ["release_e2e-1.0.0-py3-none-any.whl", "release_e2e-1.0.0.tar.gz"]
    # The very same bytes on both indexes, stored once.
    staged = {k: v for k, v in simple_hashes(tp_http, name, "test").items() if k in built}
    released = {k: v for k, v in simple_hashes(tp_http, name, "prod").items() if k in built}
    assert staged == built
    assert released == built
    assert {f["filename"]: f["sha256"] for f in result["production"]} == built
    new_blobs = {p.name for p in blobs.glob("*/*/*")} - blobs_before
    assert set(built.values()) <= new_blobs
    assert "- The first real release of release-e2e." in result["notes"]
    assert "Trusted Publishing" in done.stderr  # no API token anywhere: minted from OIDC
    assert "hello from release-e2e 1.0.0" not in done.stdout  # stdout is only the JSON

    # The promotion is in prod's journal, by the trusted publisher.
    trail = tp_http.get(
        f"/prod/api/projects/{name}/audit",
        headers={"Authorization": f"Bearer {tp_server.token(f'owner-{name}', 'prod')}"},
    ).json()
    promoted = [row for row in trail if row["action"] == "promote_release"]
    assert len(promoted) == 1
    assert promoted[0]["details"]["trusted_publishers"]

    # Notifications arrived with the right content.
    [hook] = receiver.requests
    assert hook.path == "/hooks/release"
    payload = hook.json()
    assert payload["event"] == "release.succeeded"
    assert (payload["project"], payload["version"]) == (name, "1.0.0")
    assert payload["index"] == tp_server.simple_url("prod")
    assert {f["filename"]: f["sha256"] for f in payload["files"]} == built
    assert all(f["url"] for f in payload["files"])
    assert "The first real release" in payload["notes"]
    assert payload["stage"] is None
    assert payload["error"] is None
    [(envelope, message)] = inbox.messages
    assert envelope.rcpt_tos == ["maintainers@example.com"]
    assert message["Subject"] == f"[keyless] {name} 1.0.0 released"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    assert all(sha in body for sha in built.values())

    # The same release run again (a CI retry): the build makes the same bytes, production
    # already holds them, so it is a success that uploads and promotes nothing.
    prod_before = simple_hashes(tp_http, name, "prod")
    again, second = keyless_release(ci, name, project, env, *urls(tp_server), "--no-session")
    assert again.returncode == 0, again.stderr
    assert second["ok"] is True
    stages = {s["name"]: s["status"] for s in second["stages"]}
    assert stages["staging"] == stages["install-test"] == "skipped"
    assert {f["filename"]: f["status"] for f in second["production"]} == {
        filename: "exists" for filename in built
    }
    assert simple_hashes(tp_http, name, "prod") == prod_before
    assert receiver.requests[-1].json()["event"] == "release.succeeded"


def test_failing_install_test_stops_before_production(
    tp_server: LiveServer,
    tp_http: httpx.Client,
    ci: Emulator,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    name = "release-smoke-fails"
    project = write_project(tmp_path / "project", name)
    stage_project(tp_server, tp_http, ci, name)
    env = job_env(tp_server, tmp_path)
    env["KEYLESS_NOTIFY_WEBHOOK"] = receiver.url + "/hook"
    env["KEYLESS_NOTIFY_SLACK"] = receiver.url + "/services/T000/B000/XXXXSECRET"

    done, result = keyless_release(
        ci,
        name,
        project,
        env,
        *urls(tp_server),
        "--smoke",
        "python -c 'raise SystemExit(3)'",
        "--no-session",
    )

    assert done.returncode == 1
    assert result["ok"] is False
    assert result["failed_stage"] == "install-test"
    assert "the smoke command" in result["error"]["message"]
    assert "exit code 3" in result["error"]["message"]
    statuses = {s["name"]: s["status"] for s in result["stages"]}
    assert statuses["staging"] == "passed"
    assert statuses["install-test"] == "failed"
    assert "production" not in statuses
    # Staging has the files; production has nothing of 1.0.0.
    assert any(f.endswith("1.0.0.tar.gz") for f in simple_hashes(tp_http, name, "test"))
    assert list(simple_hashes(tp_http, name, "prod")) == ["release_smoke_fails-0.0.1.tar.gz"]
    assert "error: " in done.stderr
    assert "install-test" in done.stderr

    hook, slack = receiver.requests
    payload = hook.json()
    assert payload["event"] == "release.failed"
    assert payload["stage"] == "install-test"
    assert "exit code 3" in payload["error"]
    assert sorted(f["filename"] for f in payload["files"]) == [
        "release_smoke_fails-1.0.0-py3-none-any.whl",
        "release_smoke_fails-1.0.0.tar.gz",
    ]
    assert "install-test" in slack.json()["text"]
    assert "XXXXSECRET" not in done.stderr + done.stdout


# ------------------------------------------------------- through a PEP 694 upload session


def test_a_release_is_staged_in_a_session_on_production_and_published_once_tested(
    tp_server: LiveServer,
    tp_http: httpx.Client,
    ci: Emulator,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    name = "release-session"
    project = write_project(tmp_path / "project", name)
    stage_project(tp_server, tp_http, ci, name)
    env = job_env(tp_server, tmp_path)
    env["KEYLESS_NOTIFY_WEBHOOK"] = f"{receiver.url}/hooks/release"

    done, result = keyless_release(ci, name, project, env, *urls(tp_server), "--smoke", name)

    assert done.returncode == 0, done.stderr
    assert result["production_method"] == "session"
    assert result["session"]["status"] == "published"
    assert result["session"]["url"].startswith(f"{tp_server.url}/prod/upload/2.0/sessions/")
    assert all(s["status"] == "passed" for s in result["stages"]), result["stages"]
    assert "Staging in an upload session on production" in done.stderr
    # The install test ran against the session's stage preview: production itself.
    assert f"--index-url {result['session']['stage']}" in done.stderr
    assert "Installing from the session's stage preview" in done.stderr
    built = {f["filename"]: f["sha256"] for f in result["built"]}
    released = {k: v for k, v in simple_hashes(tp_http, name, "prod").items() if k in built}
    assert released == built
    # The staging index was not used at all.
    assert not any("1.0.0" in f for f in simple_hashes(tp_http, name, "test"))
    assert tp_http.get(result["session"]["stage"]).status_code == 404  # gone once published
    [hook] = receiver.requests
    payload = hook.json()
    assert payload["event"] == "release.succeeded"
    assert payload["session"] == "published"


def test_a_failing_install_test_cancels_the_session(
    tp_server: LiveServer,
    tp_http: httpx.Client,
    ci: Emulator,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    name = "release-session-fails"
    project = write_project(tmp_path / "project", name)
    stage_project(tp_server, tp_http, ci, name)
    env = job_env(tp_server, tmp_path)
    env["KEYLESS_NOTIFY_SLACK"] = receiver.url + "/services/T000/B000/XXXXSECRET"
    env["KEYLESS_NOTIFY_WEBHOOK"] = f"{receiver.url}/hook"

    done, result = keyless_release(
        ci, name, project, env, *urls(tp_server), "--smoke", "python -c 'raise SystemExit(3)'"
    )

    assert done.returncode == 1
    assert result["failed_stage"] == "install-test"
    assert result["session"]["status"] == "canceled"
    assert "canceled the session for release-session-fails 1.0.0" in done.stderr
    # Nothing of 1.0.0 anywhere: production never showed it, staging was not used.
    assert list(simple_hashes(tp_http, name, "prod")) == ["release_session_fails-0.0.1.tar.gz"]
    assert not any("1.0.0" in f for f in simple_hashes(tp_http, name, "test"))
    token = tp_server.token(f"owner-{name}", "prod")
    status = tp_http.get(result["session"]["url"], auth=("__token__", token))
    assert status.json()["status"] == "canceled"
    hook, slack = sorted(receiver.requests, key=lambda r: r.path)  # /hook, /services/…
    assert hook.json()["session"] == "canceled"
    assert "upload session canceled: nothing was published" in slack.json()["text"]


# ------------------------------------------------------------------ the library, API tokens


def token_env(server: LiveServer, tmp_path: Path, name: str) -> dict[str, str]:
    env = job_env(server, tmp_path)
    env["KEYLESS_STAGING_TOKEN"] = server.token(f"owner-{name}", "test")
    env["KEYLESS_PRODUCTION_TOKEN"] = server.token(f"owner-{name}", "prod")
    return env


def release_from(
    server: LiveServer,
    project: Path,
    env: dict[str, str],
    *,
    reporter: RecordingReporter | None = None,
    production_url: str | None = None,
    notify_config: NotifyConfig | None = None,
    **options: Any,
) -> ReleaseResult:
    """The library's release of `project` from `server`'s test index to its prod index (or
    `production_url`), notifying no one and building with this venv's backend (no isolation);
    `options` go to `release` as they are."""
    return release(
        project,
        staging_url=server.upload_url("test"),
        production_url=production_url if production_url is not None else server.upload_url("prod"),
        reporter=reporter if reporter is not None else RecordingReporter(),
        environ=env,
        notify_config=notify_config if notify_config is not None else NotifyConfig(),
        **{"no_isolation": True, **options},
    )


def test_publish_to_production_with_api_tokens(
    tp_server: LiveServer, tp_http: httpx.Client, tmp_path: Path
) -> None:
    name = "release-publish-mode"
    make_project(tp_server, tp_http, name, index="prod")
    project = write_project(tmp_path / "project", name, "2.0.0", dynamic_version=True)
    env = token_env(tp_server, tmp_path, name)
    reporter = RecordingReporter()

    result = release_from(
        tp_server,
        project,
        env,
        mode="publish",
        reporter=reporter,
        trusted_publishing="never",
        dist_dir=tmp_path / "dist",
        session=False,
    )

    assert result.ok, result.error
    assert result.production_method == "publish"
    assert result.version == "2.0.0"  # dynamic: read from the build
    built = {d.filename: d.sha256 for d in result.built}
    assert {f.filename: f.sha256 for f in result.production} == built
    assert {k: v for k, v in simple_hashes(tp_http, name, "prod").items() if k in built} == built
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == sorted(built)
    assert env["KEYLESS_STAGING_TOKEN"] in reporter.of("mask")
    assert env["KEYLESS_PRODUCTION_TOKEN"] in reporter.of("mask")
    said = json.dumps([str(v) for kind, v in reporter.events if kind != "mask"])
    assert env["KEYLESS_STAGING_TOKEN"] not in said
    assert [s.name for s in result.stages if s.status == "skipped"] == ["notify"]
    assert json.dumps(result.to_json())  # JSON-ready


def test_promote_refuses_a_staged_release_with_untested_files(
    tp_server: LiveServer, tp_http: httpx.Client, tmp_path: Path
) -> None:
    from tests.index.uploading import upload

    name = "release-extra-file"
    make_project(tp_server, tp_http, name, index="prod")
    env = token_env(tp_server, tmp_path, name)
    # An earlier attempt left a wheel of 1.0.0 on staging that this build does not make.
    leftover = build_wheel(name, "1.0.0", tag="py2-none-any")
    assert upload(tp_http, "test", env["KEYLESS_STAGING_TOKEN"], *leftover).status_code == 200
    project = write_project(tmp_path / "project", name)

    result = release_from(tp_server, project, env, dist_dir=tmp_path / "dist", session=False)

    assert result.failed_stage == "production"
    assert result.error is not None
    assert leftover[0] in result.error.message
    assert list(simple_hashes(tp_http, name, "prod")) == ["release_extra_file-0.0.1.tar.gz"]


def test_promote_falls_back_to_publishing_across_servers(
    tp_server: LiveServer, tp_http: httpx.Client, server: LiveServer, tmp_path: Path
) -> None:
    name = "release-two-servers"
    project = write_project(tmp_path / "project", name)
    env = job_env(tp_server, tmp_path)
    env["KEYLESS_STAGING_TOKEN"] = tp_server.token(f"owner-{name}", "test")
    env["KEYLESS_PRODUCTION_TOKEN"] = server.token(f"owner-{name}", "prod")
    reporter = RecordingReporter()

    result = release_from(
        tp_server,
        project,
        env,
        production_url=server.upload_url("prod"),
        reporter=reporter,
        dist_dir=tmp_path / "dist",
        session=False,
    )

    assert result.ok, result.error
    assert result.production_method == "publish"
    assert any("not two indexes of one keyless server" in w for w in reporter.of("warning"))
    with server.client() as http:
        on_prod = simple_hashes(http, name, "prod")
    assert on_prod == {d.filename: d.sha256 for d in result.built}


def test_cli_without_indexes_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from keyless.cli.main import build_parser
    from keyless.cli.release import cmd_release

    args = build_parser().parse_args(["release", "--project-dir", "."])
    assert cmd_release(args, environ={}) == 2
    assert "--staging-url and --production-url" in capsys.readouterr().err


def test_version_policy_refusals_stop_before_anything_is_built(
    tp_server: LiveServer, tp_http: httpx.Client, tmp_path: Path
) -> None:
    name = "release-policy"
    make_project(tp_server, tp_http, name, index="prod")  # prod has 0.0.1
    env = token_env(tp_server, tmp_path, name)

    def attempt(folder: str, version: str, tool: str = "") -> Any:
        project = write_project(tmp_path / folder, name, version, tool=tool)
        return release_from(tp_server, project, env)

    lower = attempt("lower", "0.0.1rc1")
    assert (lower.ok, lower.failed_stage) == (False, "version")
    assert "not greater than 0.0.1" in lower.error.message
    assert lower.built == []

    # 0.0.1 is on production with other bytes than this build makes: refused, nothing sent.
    taken = attempt("taken", "0.0.1")
    assert (taken.ok, taken.failed_stage) == (False, "production")
    assert "already on production with other files" in taken.error.message
    assert taken.staging == []

    semver = attempt("semver", "1.0", tool='[tool.keyless]\nversion-scheme = "semver"\n')
    assert semver.failed_stage == "version"
    assert "not a SemVer version" in semver.error.message

    project = write_project(tmp_path / "tagged", name, "1.0.0")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "release"], ["tag", "v1.1.0"]):
        git(project, *args)
    tagged = release_from(tp_server, project, env)
    assert tagged.failed_stage == "version"
    assert tagged.error is not None
    assert "on tag 'v1.1.0', but the project's version is 1.0.0" in tagged.error.message
    assert simple_hashes(tp_http, name, "test") == {}


def test_dry_run_uploads_nothing(
    tp_server: LiveServer, tp_http: httpx.Client, tmp_path: Path
) -> None:
    name = "release-dry-run"
    project = write_project(tmp_path / "project", name)
    result = release_from(
        tp_server,
        project,
        job_env(tp_server, tmp_path),  # no token at all: a dry run needs none
        notify_config=NotifyConfig(webhooks=("https://hooks.example/never",)),
        dry_run=True,
        dist_dir=tmp_path / "dist",
    )
    assert result.ok, result.error
    assert {s.name: s.status for s in result.stages} == {
        "project": "passed",
        "version": "passed",
        "build": "passed",
        "check": "passed",
        "staging": "passed",
        "install-test": "skipped",
        "production": "passed",
        "notes": "passed",
        "notify": "skipped",
    }
    assert {f.status for f in result.staging} == {"would-upload"}
    assert result.notifications == []
    assert simple_hashes(tp_http, name, "test") == {}


# ------------------------------------------------------------------ pieces


def test_locate_needs_one_keyless_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "idx.example" and request.url.path == "/":
            return httpx.Response(
                200,
                json={
                    "service": "keyless",
                    "indexes": {"test": {"profile": "pypi"}, "prod": {"profile": "private"}},
                },
            )
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        pair = promote_client.locate(
            "https://idx.example/test/legacy/", "https://idx.example/prod/legacy/", http=http
        )
        assert pair == promote_client.IndexPair("https://idx.example", "test", "prod", "private")
        assert pair.promote_url("My_Pkg", "1.0") == (
            "https://idx.example/test/api/projects/my-pkg/releases/1.0/promote"
        )
        for staging, production in (
            ("https://idx.example/test/legacy/", "https://other.example/prod/legacy/"),
            ("https://idx.example/test/legacy/", "https://idx.example/test/legacy/"),
            ("https://idx.example/test/legacy/", "https://idx.example/nope/legacy/"),
            ("https://upload.pypi.org/legacy/", "https://idx.example/prod/legacy/"),
        ):
            assert promote_client.locate(staging, production, http=http) is None


def test_promote_without_the_endpoint_is_unsupported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="Not Found")

    pair = promote_client.IndexPair("https://idx.example", "test", "prod")
    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as http,
        pytest.raises(promote_client.PromoteUnsupported),
    ):
        promote_client.promote(pair, "demo", "1.0", token="t", http=http)


def test_top_level_modules(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for member in (
            "demo/__init__.py",
            "demo/sub/x.py",
            "single.py",
            "_native.cpython-311-x86_64-linux-gnu.so",
            "demo-1.0.dist-info/METADATA",
            "demo-1.0.data/scripts/tool",
            "demo.pth",
        ):
            archive.writestr(member, "")
    assert top_level_modules(wheel) == ["_native", "demo", "single"]
    listed = tmp_path / "listed-1.0-py3-none-any.whl"
    with zipfile.ZipFile(listed, "w") as archive:
        archive.writestr("listed-1.0.dist-info/top_level.txt", "alpha\nbeta\n")
        archive.writestr("alpha/__init__.py", "")
    assert top_level_modules(listed) == ["alpha", "beta"]


def test_credentials_never_reach_the_code_being_released() -> None:
    env = {
        "PATH": "/bin",
        "KEYLESS_TOKEN": "x",
        "KEYLESS_STAGING_TOKEN": "x",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "x",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "x",
        "PYPI_ID_TOKEN": "x",
        "KEYLESS_SMTP_PASSWORD": "x",
        "KEYLESS_NOTIFY_SLACK": "x",
        "TWINE_PASSWORD": "x",
        "SSL_CERT_FILE": "/ca.pem",
    }
    assert clean_environment(env) == {"PATH": "/bin", "SSL_CERT_FILE": "/ca.pem"}


def test_read_project_errors(tmp_path: Path) -> None:
    assert read_project(tmp_path) is None  # the release refuses it, as a test below shows
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(PublishError, match=r"pyproject\.toml"):
        read_project(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndynamic = ["version"]\n')
    config = read_project(tmp_path)
    assert config is not None
    assert (config.name, config.version, config.problems) == ("x", None, ())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[project]\nname = "x"\nversion = "1"\n[tool.keyless]\nversion-scheme = "calver"\n',
            "version-scheme must be one of",
        ),
        ('tool = 1\n[project]\nname = "x"\n', r"\[tool.keyless\] must be a table"),
        ('[project]\nname = "x"\n[tool.keyless]\nnotify = 1\n', r"notify\] must be a table"),
    ],
)
def test_malformed_settings_stop_the_release_only(tmp_path: Path, text: str, problem: str) -> None:
    # Read once for everyone: doctor and init read what they can, the release refuses.
    (tmp_path / "pyproject.toml").write_text(text)
    project = read_project(tmp_path)
    assert project is not None
    assert project.name == "x"
    [found] = project.problems
    assert re.search(problem, found)
    result = release(
        tmp_path,
        staging_url="https://a/test/legacy/",
        production_url="https://a/prod/legacy/",
        reporter=RecordingReporter(),
        environ={},
        notify_config=NotifyConfig(),
    )
    assert result.failed_stage == "project"
    assert result.error is not None
    assert re.search(problem, result.error.message)


def test_bad_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="unknown release mode"):
        release(
            tmp_path,
            staging_url="https://a/test/legacy/",
            production_url="https://a/prod/legacy/",
            mode="yolo",
            reporter=RecordingReporter(),
        )
    with pytest.raises(PublishError, match="same index"):
        release(
            tmp_path,
            staging_url="https://a/test/legacy/",
            production_url="https://a/test/legacy",
            reporter=RecordingReporter(),
        )


def test_a_project_that_cannot_be_read_still_notifies(
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    result = release(
        tmp_path,  # no pyproject.toml
        staging_url="https://idx.example/test/legacy/",
        production_url="https://idx.example/prod/legacy/",
        reporter=RecordingReporter(),
        environ={"KEYLESS_NOTIFY_WEBHOOK": receiver.url + "/hook"},
    )
    assert (result.ok, result.failed_stage) == (False, "project")
    [hook] = receiver.requests
    assert hook.json()["event"] == "release.failed"
    assert hook.json()["stage"] == "project"
    assert "pyproject.toml does not exist" in hook.json()["error"]
