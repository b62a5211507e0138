"""`keyless init` writes install steps that install the client pinned by version and sha256.

The install step of a written workflow is run as written, in a fresh virtualenv, against a
live keyless index: it installs the very client the index runs, and that client publishes. A
requirements file other than the one init saw is refused before pip runs. uv is pinned the
same way, from PyPI. Targets where no keyless index serves the client are refused, never
written with an unpinned `pip install keyless`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from keyless.cli.main import SERVER_LIBRARIES
from keyless.workflows import uv_pin
from tests.conftest import LiveServer, run_keyless

from .conftest import write_release
from .test_client_install import install_env, missing_server_libraries

pytestmark = pytest.mark.clients

PYPROJECT = '[project]\nname = "{name}"\nversion = "1.0.0"\nrequires-python = ">=3.11"\n'


def make_project(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    (folder / "src" / name.replace("-", "_")).mkdir(parents=True)
    (folder / "src" / name.replace("-", "_") / "__init__.py").write_text("", encoding="utf-8")
    (folder / "pyproject.toml").write_text(PYPROJECT.format(name=name), encoding="utf-8")
    return folder


def init(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_keyless("init", "--repository", "octo-org/demo", *args, cwd=folder)


def step(steps: list[dict[str, Any]], name: str) -> str:
    [found] = [s["run"] for s in steps if s.get("name") == name]
    assert isinstance(found, str)
    return found


def job_shell(tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    """A fresh virtualenv whose `python` a job step runs, and the step's environment."""
    venv = tmp_path / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = install_env(tmp_path)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env["PATH"]])
    return venv, env


def bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_written_install_step_installs_the_index_client_pinned(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    folder = make_project(tmp_path, "pinned-client")
    done = init(folder, "--index", f"prod={server.upload_url('prod')}")
    assert done.returncode == 0, done.stderr
    served = http.get("/+client/").json()
    assert (
        f"the jobs install keyless {served['version']} from the keyless index at {server.url}"
        in done.stdout
    )
    text = (folder / ".github/workflows/release.yml").read_text(encoding="utf-8")
    assert not re.search(r"pip install (keyless|uv)\b", text)
    jobs = yaml.safe_load(text)["jobs"]
    install = step(jobs["publish-prod"]["steps"], "Install keyless")
    assert install == step(jobs["build"]["steps"], "Install keyless")  # one install step
    assert served["requirements"]["sha256"] in install
    assert served["requirements"]["url"] in install

    # Run as written in a fresh venv: the index's own client, without the server's libraries.
    venv, env = job_shell(tmp_path, "job")
    job = tmp_path / "job"
    write_release(job / "dist", "pinned-client", "1.0.0")
    installed = bash(install, env, job)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "keyless-client.txt: OK" in installed.stdout
    version = bash("keyless --version", env, job)
    assert version.stdout.strip() == f"keyless {served['version']}"
    assert missing_server_libraries(venv / "bin" / "python", env) == sorted(SERVER_LIBRARIES)
    env["KEYLESS_TOKEN"] = server.token("pinned-owner", "prod")
    published = bash(step(jobs["publish-prod"]["steps"], "Publish to prod"), env, job)
    assert published.returncode == 0, published.stdout + published.stderr
    page = http.get(
        "/prod/simple/pinned-client/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()
    assert len(page["files"]) == 2

    # A requirements file that is not the one init saw is refused before pip runs.
    tampered = install.replace(served["requirements"]["sha256"], "0" * 64)
    refused = bash(tampered, env, job)
    assert refused.returncode != 0
    assert "FAILED" in refused.stdout + refused.stderr
    assert "Collecting" not in refused.stdout


def test_gitlab_jobs_install_the_same_pinned_client(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    folder = make_project(tmp_path, "gl-pinned")
    done = init(
        folder,
        *("--provider", "gitlab", "--index", f"prod={server.upload_url('prod')}"),
        *("--audience", "prod=keyless"),
    )
    assert done.returncode == 0, done.stderr
    pipeline = yaml.safe_load((folder / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    sha256 = http.get("/+client/").json()["requirements"]["sha256"]
    script = pipeline["publish-prod"]["script"]
    assert script[-1].startswith("keyless publish ")
    assert [line for line in pipeline["build"]["script"] if sha256 in line] == [
        line for line in script if sha256 in line
    ]
    assert any(line.endswith("sha256sum --check -") for line in script)
    assert "python -m pip install --require-hashes -r keyless-client.txt" in script


def test_uv_is_installed_pinned_by_version_and_sha256(tmp_path: Path) -> None:
    folder = make_project(tmp_path, "uv-pinned")
    done = init(folder, "--client", "uv")  # PyPI and TestPyPI: uv comes from PyPI
    assert done.returncode == 0, done.stderr
    version, _ = uv_pin()
    assert f"the jobs install uv {version} from PyPI, pinned by version and sha256" in done.stdout
    jobs = yaml.safe_load((folder / ".github/workflows/release.yml").read_text())["jobs"]
    install = step(jobs["publish-pypi"]["steps"], "Install uv")
    assert "--require-hashes" in install
    venv, env = job_shell(tmp_path, "uv-job")
    installed = bash(install, env, tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    ran = bash("uv --version", env, tmp_path)
    assert ran.stdout.split()[:2] == ["uv", version]
    assert Path(bash("command -v uv", env, tmp_path).stdout.strip()).parent == venv / "bin"


@pytest.mark.parametrize("extra", [[], ["--client-source", "pypi"]])
def test_pypi_targets_without_a_keyless_source_are_refused(
    tmp_path: Path, extra: list[str]
) -> None:
    folder = make_project(tmp_path, "no-source")
    done = init(folder, *extra)
    assert done.returncode == 1
    assert "keyless is not on PyPI, so a job cannot install it from there pinned" in done.stderr
    assert "--client-source" in done.stderr
    assert not (folder / ".github").exists()


def test_pypi_targets_install_from_the_given_keyless_index(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    folder = make_project(tmp_path, "pypi-from-index")
    done = init(folder, "--client-source", server.url, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    served = http.get("/+client/").json()
    assert result["client_install"].startswith(
        f"keyless {served['version']} from the keyless index at {server.url} "
    )
    jobs = yaml.safe_load((folder / ".github/workflows/release.yml").read_text())["jobs"]
    for job in ("build", "publish-testpypi", "publish-pypi"):
        assert served["requirements"]["sha256"] in step(jobs[job]["steps"], "Install keyless")

    not_keyless = init(folder, "--force", "--client-source", f"{server.url}/prod/simple")
    assert not_keyless.returncode == 1
    assert "does not describe a keyless client" in not_keyless.stderr
