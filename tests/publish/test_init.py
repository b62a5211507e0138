"""`keyless init`: the workflow it writes is valid, staged and least-privileged, and a rehearsal
of its publish jobs under the CI emulator — with exactly the publishers it printed registered —
publishes to a live TLS index."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from keyless.ci.emulator import Emulator, JobClaims
from keyless.oidc.providers.gitlab import id_token_variable
from keyless.publish.errors import PublishError
from keyless.publish.init import init_workflow, python_versions_for
from tests.builders import CLIENT_SOURCE
from tests.conftest import LiveServer, client_env, make_project, run_keyless

from .conftest import job_env, simple_hashes, write_release

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "1.0.0"
description = "A project released by the workflow keyless init wrote"
readme = "README.md"
requires-python = "{requires}"
"""


def make_sample(tmp_path: Path, name: str, requires: str = ">=3.11") -> Path:
    folder = tmp_path / name
    package = folder / "src" / name.replace("-", "_")
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "1.0.0"\n', encoding="utf-8")
    (folder / "README.md").write_text(f"# {name}\n\nA sample.\n", encoding="utf-8")
    (folder / "pyproject.toml").write_text(
        PYPROJECT.format(name=name, requires=requires), encoding="utf-8"
    )
    return folder


def load(path: Path) -> dict[Any, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def triggers(workflow: dict[Any, Any]) -> Any:
    # YAML 1.1 reads the bare key `on` as True; GitHub reads it as "on".
    return workflow.get("on", workflow.get(True))


# ---------------------------------------------------------------------------- the file


def test_github_workflow_shape(tmp_path: Path) -> None:
    folder = make_sample(tmp_path, "shape-demo", requires=">=3.11")
    result = init_workflow(folder, repository="octo-org/shape-demo", client_source=CLIENT_SOURCE)
    [path] = result.files
    assert path == folder / ".github/workflows/release.yml"
    workflow = load(path)

    # One event per release: a tag push (a GitHub release published from a new tag pushes it).
    assert triggers(workflow) == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {}  # each job asks for what it needs; id-token never here
    jobs = workflow["jobs"]
    assert list(jobs) == ["build", "test", "publish-testpypi", "publish-pypi"]

    build_runs = "\n".join(step.get("run", "") for step in jobs["build"]["steps"])
    assert "python -m build" in build_runs
    assert "keyless check dist/*" in build_runs
    assert any(
        s.get("uses", "").startswith("actions/upload-artifact@") for s in jobs["build"]["steps"]
    )
    assert jobs["test"]["strategy"]["matrix"]["python-version"] == ["3.11", "3.12", "3.13", "3.14"]
    assert jobs["test"]["needs"] == "build"

    for job_id, environment, url in (
        ("publish-testpypi", "testpypi", "https://test.pypi.org/legacy/"),
        ("publish-pypi", "pypi", "https://upload.pypi.org/legacy/"),
    ):
        job = jobs[job_id]
        assert job["permissions"] == {"id-token": "write"}
        assert job["environment"]["name"] == environment
        runs = [step["run"] for step in job["steps"] if "run" in step]
        assert f"keyless publish --repository-url {url} dist/*" in runs
    assert jobs["publish-testpypi"]["needs"] == ["build", "test"]
    assert jobs["publish-pypi"]["needs"] == ["build", "test", "publish-testpypi"]  # staged
    assert jobs["publish-pypi"]["environment"]["url"] == "https://pypi.org/project/shape-demo/"
    assert jobs["build"]["permissions"] == {"contents": "read"}

    first, second = result.publishers
    assert first.fields == {
        "owner": "octo-org",
        "repository": "shape-demo",
        "workflow": "release.yml",
        "environment": "testpypi",
    }
    assert first.settings_url == "https://test.pypi.org/manage/account/publishing/"
    assert first.command is None  # PyPI is registered on its web page
    assert second.environment == "pypi"


def test_gitlab_pipeline_shape(tmp_path: Path) -> None:
    folder = make_sample(tmp_path, "gl-shape", requires=">=3.10,<3.13")
    (folder / "tests").mkdir()
    result = init_workflow(
        folder,
        provider="gitlab",
        indexes=[
            ("test", "https://idx.example/test/legacy/"),
            ("prod", "https://idx.example/prod/legacy/"),
        ],
        audiences={"test": "keyless-test", "prod": "keyless"},
        repository="group/sub/gl-shape",
        client_source=CLIENT_SOURCE,
    )
    pipeline = load(folder / ".gitlab-ci.yml")
    assert pipeline["stages"] == ["build", "test", "publish"]
    assert "python -m build" in pipeline["build"]["script"]
    assert pipeline["test"]["parallel"]["matrix"] == [{"PYTHON_VERSION": ["3.10", "3.11", "3.12"]}]
    assert "python -m pytest" in pipeline["test"]["script"][-1]
    for job_id, variable, audience in (
        ("publish-test", "KEYLESS_TEST_ID_TOKEN", "keyless-test"),
        ("publish-prod", "KEYLESS_ID_TOKEN", "keyless"),
    ):
        job = pipeline[job_id]
        assert job["id_tokens"] == {variable: {"aud": audience}}
        assert variable == id_token_variable(audience)  # where id and uv look
        assert job["stage"] == "publish"
        assert job["rules"] == [{"if": "$CI_COMMIT_TAG =~ /^v/"}]
    assert pipeline["publish-prod"]["needs"] == ["build", "test", "publish-test"]
    assert [p.fields["namespace"] for p in result.publishers] == ["group/sub", "group/sub"]
    assert result.publishers[1].command == (
        "keyless publisher add --index prod --project gl-shape gitlab --namespace group/sub "
        "--project gl-shape --workflow-filepath .gitlab-ci.yml --environment prod"
    )


def test_gitlab_needs_each_audience(tmp_path: Path) -> None:
    folder = make_sample(tmp_path, "gl-aud")
    with pytest.raises(PublishError, match="audience of mine is not known"):
        init_workflow(
            folder, provider="gitlab", indexes=[("mine", "https://idx.example/x/legacy/")]
        )
    # PyPI's and TestPyPI's are known.
    init_workflow(folder, provider="gitlab", repository="g/p", client_source=CLIENT_SOURCE)
    assert "TESTPYPI_ID_TOKEN" in (folder / ".gitlab-ci.yml").read_text()


@pytest.mark.parametrize(
    ("requires", "versions"),
    [
        (None, ["3.10", "3.11", "3.12", "3.13", "3.14"]),
        (">=3.11", ["3.11", "3.12", "3.13", "3.14"]),
        (">=3.11.2", ["3.11", "3.12", "3.13", "3.14"]),
        (">=3.10,<3.13", ["3.10", "3.11", "3.12"]),
        ("!=3.12.*,>=3.12", ["3.13", "3.14"]),
        # CI installs the newest patch of each: <=3.12 admits 3.12.0 alone, so not 3.12.
        ("<=3.12", ["3.10", "3.11"]),
        (">=3.11,<3.12.3", ["3.11"]),
        ("~=3.13.0", ["3.13"]),
    ],
)
def test_python_versions_from_requires_python(requires: str | None, versions: list[str]) -> None:
    assert python_versions_for(requires) == versions


def test_requires_python_without_a_supported_version() -> None:
    with pytest.raises(PublishError, match="admits none"):
        python_versions_for("<3.0")


def test_smoke_test_imports_the_package(tmp_path: Path) -> None:
    folder = make_sample(tmp_path, "smoke-demo")
    workflow = load(init_workflow(folder, repository="o/r", client_source=CLIENT_SOURCE).files[0])
    [test_step] = [s for s in workflow["jobs"]["test"]["steps"] if s.get("name") == "Test"]
    assert test_step["run"] == 'python -c "import smoke_demo"'


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    folder = make_sample(tmp_path, "keep-demo")
    target = folder / ".github/workflows/release.yml"
    target.parent.mkdir(parents=True)
    target.write_text("# mine\n", encoding="utf-8")
    with pytest.raises(PublishError, match="already exists") as caught:
        init_workflow(folder)
    assert caught.value.hint is not None
    assert "--force" in caught.value.hint
    refused = run_keyless("init", cwd=folder)
    assert refused.returncode == 1
    assert "already exists" in refused.stderr
    assert target.read_text(encoding="utf-8") == "# mine\n"

    forced = run_keyless(
        "init", "--force", "--repository", "octo-org/keep-demo", "--client", "uv", cwd=folder
    )
    assert forced.returncode == 0, forced.stderr
    assert "name: release" in target.read_text(encoding="utf-8")
    assert "Register these trusted publishers" in forced.stdout
    assert "Owner                    octo-org" in forced.stdout


def test_needs_a_pyproject(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match=r"pyproject\.toml"):
        init_workflow(tmp_path)


# ------------------------------------------------------------------------ rehearsals


def job_environment(server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """A job step's environment: trusts the index's CA, holds no token, finds `keyless`/`uv`."""
    env = job_env(server, tmp_path)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def register(server: LiveServer, command: str, issuer: str) -> None:
    """The printed `keyless publisher add` command, verbatim, plus the emulator's issuer."""
    words = shlex.split(command)
    assert words[:3] == ["keyless", "publisher", "add"]
    data = [
        "--data",
        str(server.data_dir),
        "--config",
        str(server.data_dir.parent / "keyless.toml"),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "keyless", *words[1:], "--issuer", issuer, *data],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def step_script(run: str) -> str:
    """A step's commands minus installing the client (the test environment already has it)."""
    lines = [line for line in run.splitlines() if "pip install" not in line]
    return "\n".join(lines)


def rehearse(
    ci: Emulator, job: JobClaims, script: str, folder: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return ci.run(
        ["bash", "-euc", script],
        job,
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def init_json(folder: Path, *args: str) -> dict[str, Any]:
    done = run_keyless("init", "--json", *args, cwd=folder)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def trusted_files(http: httpx.Client, project: str, index: str) -> list[str]:
    page = http.get(
        f"/{index}/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()
    return sorted(f["filename"] for f in page["files"] if f.get("_trusted-publisher"))


def test_rehearsal_of_the_github_workflow_publishes_staged(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    name = "init-rehearse"
    folder = make_sample(tmp_path, name)
    for index in ("test", "prod"):
        make_project(tp_server, tp_http, name, index=index)
    assert tp_server.tls is not None  # init asks the index which client its jobs install
    result = init_json(
        folder,
        *("--index", f"test={tp_server.upload_url('test')}"),
        *("--index", f"prod={tp_server.upload_url('prod')}"),
        *("--environment", "test=testpypi", "--environment", "prod=pypi"),
        *("--repository", f"octo-org/{name}", "--cert", str(tp_server.tls.ca)),
    )
    for publisher in result["publishers"]:
        register(tp_server, publisher["command"], ci.issuer)

    # The build job, rehearsed: build (offline, so without isolation), then its check step.
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", "dist", str(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    workflow = load(folder / ".github/workflows/release.yml")
    env = job_environment(tp_server, tmp_path)
    [check] = [
        s for s in workflow["jobs"]["build"]["steps"] if s.get("name") == "Check the distributions"
    ]
    tag = JobClaims(
        repo=f"octo-org/{name}", workflow="release.yml", ref="refs/tags/v1.0.0", event="push"
    )
    checked = rehearse(ci, tag, step_script(check["run"]), folder, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # Each publish job, in the order its `needs` impose, in its own environment.
    for job_id, index in (("publish-test", "test"), ("publish-prod", "prod")):
        job = workflow["jobs"][job_id]
        [publish] = [s for s in job["steps"] if s.get("name") == f"Publish to {index}"]
        claims = JobClaims(
            repo=f"octo-org/{name}",
            workflow="release.yml",
            ref="refs/tags/v1.0.0",
            event="push",  # what the workflow's only trigger, a tag push, runs as
            environment=job["environment"]["name"],
        )
        done = rehearse(ci, claims, step_script(publish["run"]), folder, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert trusted_files(tp_http, name, index) == sorted(
            p.name for p in (folder / "dist").iterdir()
        )
        # The environment's link (shown on the run's page) is the project's page there.
        page = tp_http.get(job["environment"]["url"])
        assert page.status_code == 200
        assert page.url.path == f"/{index}/project/{name}/"
        assert "1.0.0" in page.text

    # The job a publisher was not registered for (the test environment's job on prod) fails.
    wrong = JobClaims(
        repo=f"octo-org/{name}",
        workflow="release.yml",
        ref="refs/tags/v1.0.0",
        environment="testpypi",
    )
    write_release(tmp_path / "other" / "dist", name, "1.0.1")
    refused = rehearse(
        ci,
        wrong,
        f"keyless publish --repository-url {tp_server.upload_url('prod')} dist/*",
        tmp_path / "other",
        env,
    )
    assert refused.returncode != 0
    assert "1.0.1" not in json.dumps(simple_hashes(tp_http, name, "prod"))


def test_rehearsal_with_uv_publish(
    tp_server: LiveServer, tp_http: httpx.Client, ci: Emulator, tmp_path: Path
) -> None:
    name = "init-uv"
    folder = make_sample(tmp_path, name)
    make_project(tp_server, tp_http, name)
    result = init_json(
        folder,
        *("--index", f"prod={tp_server.upload_url('prod')}", "--client", "uv"),
        *("--repository", f"octo-org/{name}"),
    )
    [publisher] = result["publishers"]
    register(tp_server, publisher["command"], ci.issuer)
    write_release(folder / "dist", name, "1.0.0")
    job = load(folder / ".github/workflows/release.yml")["jobs"]["publish-prod"]
    [publish] = [s for s in job["steps"] if s.get("name") == "Publish to prod"]
    assert publish["run"].startswith("uv publish --trusted-publishing always --publish-url ")
    claims = JobClaims(
        repo=f"octo-org/{name}",
        workflow="release.yml",
        ref="refs/tags/v1.0.0",
        event="push",
        environment=job["environment"]["name"],
    )
    done = rehearse(
        ci, claims, step_script(publish["run"]), folder, job_environment(tp_server, tmp_path)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(trusted_files(tp_http, name, "prod")) == 2


def test_rehearsal_of_the_gitlab_pipeline(
    tp_server: LiveServer, tp_http: httpx.Client, gitlab_ci: Emulator, tmp_path: Path
) -> None:
    name = "init-gl"
    folder = make_sample(tmp_path, name)
    for index in ("test", "prod"):
        make_project(tp_server, tp_http, name, index=index)
    assert tp_server.tls is not None
    result = init_json(
        folder,
        "--provider",
        "gitlab",
        *("--index", f"test={tp_server.upload_url('test')}"),
        *("--index", f"prod={tp_server.upload_url('prod')}"),
        *("--repository", f"group/sub/{name}", "--cert", str(tp_server.tls.ca)),
    )
    # The audiences were asked from the index: the test index has its own.
    assert [p["audience"] for p in result["publishers"]] == ["keyless-test", "keyless"]
    for publisher in result["publishers"]:
        register(tp_server, publisher["command"], gitlab_ci.issuer)
    write_release(folder / "dist", name, "1.0.0")
    pipeline = load(folder / ".gitlab-ci.yml")
    env = job_environment(tp_server, tmp_path)
    for job_id, index in (("publish-test", "test"), ("publish-prod", "prod")):
        job = pipeline[job_id]
        # GitLab puts one token per id_tokens: entry in the variable of that name.
        [(variable, token_spec)] = job["id_tokens"].items()
        assert variable == id_token_variable(token_spec["aud"])
        claims = JobClaims(
            provider="gitlab",
            repo=f"group/sub/{name}",
            ref="refs/tags/v1.0.0",
            environment=job["environment"]["name"],
            audiences=(token_spec["aud"],),
        )
        script = "\n".join(step_script(line) for line in job["script"])
        done = rehearse(gitlab_ci, claims, script, folder, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(trusted_files(tp_http, name, index)) == 2


def test_an_index_with_an_untrusted_certificate_is_named_as_such(
    tp_server: LiveServer, tmp_path: Path
) -> None:
    # The server's certificate is signed by a `keyless dev-cert` CA this shell does not trust.
    folder = make_sample(tmp_path, "init-untrusted")
    url = tp_server.upload_url("prod")
    done = subprocess.run(
        [sys.executable, "-m", "keyless", "init", "--provider", "gitlab", "--index", f"prod={url}"],
        cwd=folder,
        env=client_env(tmp_path),  # no SSL_CERT_FILE / REQUESTS_CA_BUNDLE
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the TLS certificate of {tp_server.url} (index prod) is not trusted" in done.stderr
    assert "--cert" in done.stderr
    assert "SSL_CERT_FILE" in done.stderr
    assert "ca.pem" in done.stderr
    assert "is not known" not in done.stderr
    assert not (folder / ".gitlab-ci.yml").exists()
