"""hatch, poetry, pdm and flit against a live server: token uploads, re-uploads, a wrong token,
the links they print, and poetry/pdm/uv project installs from the index.

Each tool runs from a venv of its own (scripts/client_tools.py, which `make test` runs first),
so none of them shares packages with the dev venv. A tool that cannot be installed fails the
session's first test that needs it; nothing here is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from scripts import client_tools

from tests.conftest import LiveServer, start_server, stop_server, trust
from tests.index.test_clients import run, twine_upload, write_dists

pytestmark = pytest.mark.clients

FORBIDDEN = "403 Invalid or non-existent authentication information."


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    return client_tools.ensure(client_tools.default_folder())


@pytest.fixture
def tool_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """`env` with a home of its own: no user config of hatch, poetry, pdm or uv applies."""
    home = tmp_path / "home"
    home.mkdir()
    own = ("HATCH_", "POETRY_", "PDM_", "FLIT_", "XDG_", "VIRTUAL_ENV")
    clean = {k: v for k, v in env.items() if not k.startswith(own)}
    return {
        **clean,
        "HOME": str(home),
        "PDM_CHECK_UPDATE": "false",
        "POETRY_VIRTUALENVS_IN_PROJECT": "true",
        "POETRY_NO_INTERACTION": "1",
    }


def output(result: subprocess.CompletedProcess[str]) -> str:
    # Rich-style clients wrap long lines; one space between words makes them searchable.
    return " ".join((result.stdout + result.stderr).split())


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return output(result)


def failed(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    return output(result)


def changed_wheel(folder: Path, name: str, version: str) -> Path:
    """A wheel with the same filename as write_dists' but other bytes."""
    return write_dists(folder, name, version, module=name.replace("-", "_") + "_changed")[0]


def test_hatch_publish_skips_what_is_there_and_prints_a_link_that_works(
    server: LiveServer, tmp_path: Path, tools: dict[str, Path], tool_env: dict[str, str]
) -> None:
    hatch = [str(tools["hatch"]), "publish", "--repo", server.upload_url("prod")]
    token = server.token("hatch-owner", "prod")
    files = write_dists(tmp_path / "dist", "hatch-demo", "1.0")
    first = ok(run([*hatch, "--user", "__token__", "--auth", token, *map(str, files)], tool_env))
    assert first.count("... success") == 2

    # hatch reads `{upload URL}+simple/{name}/` (it takes any index but PyPI for devpi) and
    # skips the files listed there, as it does on PyPI: a re-run uploads nothing, and a
    # changed file under the same name is not sent either.
    again = ok(run([*hatch, "--user", "__token__", "--auth", token, *map(str, files)], tool_env))
    assert again.count("already exists") == 2, again
    changed = changed_wheel(tmp_path / "changed", "hatch-demo", "1.0")
    skipped = ok(run([*hatch, "--user", "__token__", "--auth", token, str(changed)], tool_env))
    assert "already exists" in skipped
    assert '"GET /prod/legacy/+simple/hatch-demo/" 200' in server.log()

    # The link hatch prints after an upload, `{upload URL}{name}/{version}/`, leads to the
    # release's page.
    link = re.search(rf"{re.escape(server.url)}/\S+/hatch-demo/1\.0/", first)
    assert link is not None, first
    with server.client() as http:
        page = http.get(link.group(0), follow_redirects=True)
    assert page.status_code == 200
    assert page.url.path == "/prod/project/hatch-demo/1.0/"
    assert "hatch_demo-1.0-py3-none-any.whl" in page.text

    new = write_dists(tmp_path / "new", "hatch-demo", "1.1")[0]  # one it does not skip
    wrong = failed(
        run([*hatch, "--user", "__token__", "--auth", "keyless-wrong", str(new)], tool_env)
    )
    assert FORBIDDEN in wrong


def test_poetry_publish_rerun_changed_bytes_and_wrong_token(
    server: LiveServer, tmp_path: Path, tools: dict[str, Path], tool_env: dict[str, str]
) -> None:
    project = tmp_path / "poetry-demo"
    write_dists(project / "dist", "poetry-demo", "1.0")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "poetry-demo"\nversion = "1.0"\n'
        '[build-system]\nrequires = ["poetry-core>=2"]\n'
        'build-backend = "poetry.core.masonry.api"\n'
    )
    token = server.token("poetry-owner", "prod")
    env = {**tool_env, "POETRY_REPOSITORIES_KEYLESS_URL": server.upload_url("prod")}
    publish = [str(tools["poetry"]), "publish", "--repository", "keyless"]
    with_token = {**env, "POETRY_PYPI_TOKEN_KEYLESS": token}

    ok(run(publish, with_token, cwd=project))
    # A re-run of the same files succeeds, as on PyPI (identical bytes are taken as done).
    ok(run(publish, with_token, cwd=project))
    # Other bytes under a filename already there: refused in words, and --skip-existing
    # recognises the refusal (it looks for PyPI's 400 "File already exists").
    changed_wheel(project / "dist", "poetry-demo", "1.0")
    refused = failed(run(publish, with_token, cwd=project))
    assert "File already exists" in refused
    skipped = ok(run([*publish, "--skip-existing"], with_token, cwd=project))
    assert "File exists. Skipping" in skipped

    wrong = failed(run(publish, {**env, "POETRY_PYPI_TOKEN_KEYLESS": "keyless-wrong"}, cwd=project))
    assert FORBIDDEN in wrong


def test_pdm_publish_rerun_changed_bytes_and_wrong_token(
    server: LiveServer, tmp_path: Path, tools: dict[str, Path], tool_env: dict[str, str]
) -> None:
    project = tmp_path / "pdm-demo"
    write_dists(project / "dist", "pdm-demo", "1.0")
    (project / "pyproject.toml").write_text('[project]\nname = "pdm-demo"\nversion = "1.0"\n')
    token = server.token("pdm-owner", "prod")
    publish = [str(tools["pdm"]), "publish", "--no-build", "-r", server.upload_url("prod")]
    with_token = [*publish, "-u", "__token__", "-P", token]

    assert ok(run(with_token, tool_env, cwd=project)).count("Uploading") == 2
    ok(run(with_token, tool_env, cwd=project))
    changed_wheel(project / "dist", "pdm-demo", "1.0")
    refused = failed(run(with_token, tool_env, cwd=project))
    assert "File already exists" in refused
    skipped = ok(run([*with_token, "--skip-existing"], tool_env, cwd=project))
    assert "Skipping pdm_demo-1.0-py3-none-any.whl because it appears to already exist" in skipped

    wrong = failed(run([*publish, "-u", "__token__", "-P", "keyless-wrong"], tool_env, cwd=project))
    assert FORBIDDEN in wrong


def write_flit_project(folder: Path, name: str, version: str) -> Path:
    module = name.replace("-", "_")
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(f'"""{name}."""\n\nVERSION = {version!r}\n')
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\ndescription = "demo"\n'
        '[build-system]\nrequires = ["flit_core>=3.4"]\nbuild-backend = "flit_core.buildapi"\n'
    )
    return folder


def test_flit_publish_over_tls_and_the_link_it_prints(
    tls_server: LiveServer, tmp_path: Path, tools: dict[str, Path], tool_env: dict[str, str]
) -> None:
    """flit builds and uploads in one go; it prints `https://{host}/project/{name}/`."""
    assert tls_server.tls is not None
    project = write_flit_project(tmp_path / "flit", "flit-demo", "1.0")
    env = {
        **trust(tool_env, tls_server.tls.ca),
        "FLIT_INDEX_URL": tls_server.upload_url("prod"),
        "FLIT_USERNAME": "__token__",
        "FLIT_PASSWORD": tls_server.token("flit-owner", "prod"),
        "SOURCE_DATE_EPOCH": "1700000000",  # the same bytes on the re-run
    }
    flit = [str(tools["flit"]), "publish", "--no-use-vcs"]
    first = ok(run(flit, env, cwd=project))
    ok(run(flit, env, cwd=project))  # the same files again: success, as on PyPI

    link = re.search(r"Package is at (\S+)", first)
    assert link is not None, first
    assert link.group(1) == f"{tls_server.url}/project/flit-demo/"
    with tls_server.client() as http:
        page = http.get(link.group(1), follow_redirects=True)
        assert page.status_code == 200
        assert page.url.path == "/prod/project/flit-demo/"
        assert "flit_demo-1.0.tar.gz" in page.text
        # Any spelling of the name leads to the same page.
        assert http.get("/project/Flit_Demo/").headers["location"] == "/prod/project/flit-demo/"

    wrong = failed(run(flit, {**env, "FLIT_PASSWORD": "keyless-wrong"}, cwd=project))
    assert "403 Client Error: Invalid or non-existent authentication information." in wrong


def test_flit_link_to_a_project_on_several_indexes_or_none_opens_the_search(
    server: LiveServer, tmp_path: Path, env: dict[str, str], http: httpx.Client
) -> None:
    files = write_dists(tmp_path, "flit-twice", "1.0")
    for index in ("test", "prod"):
        uploaded = twine_upload(server, index, server.token("twice-owner", index), files, env)
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    for name in ("flit-twice", "Flit_Twice", "nowhere-at-all"):
        answer = http.get(f"/project/{name}/")
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/?q={name}"
    search = http.get(
        "/project/flit-twice/", headers={"Accept": "text/html"}, follow_redirects=True
    )
    assert search.status_code == 200
    assert "/test/project/flit-twice/" in search.text
    assert "/prod/project/flit-twice/" in search.text


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with indexes named like the paths the client links use."""
    config = '[indexes.project]\nprofile = "pypi"\n\n[indexes.legacy]\nprofile = "pypi"\n'
    live = start_server(tmp_path_factory.mktemp("odd-names"), config_text=config)
    yield live
    stop_server(live)


def test_indexes_named_project_and_legacy_keep_their_pages_and_uploads(
    odd_names: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    for index in ("project", "legacy"):
        token = odd_names.token(f"{index}-owner", index)
        files = write_dists(tmp_path / index, "simple", "1.0")  # a project named `simple`
        uploaded = twine_upload(odd_names, index, token, files, env)
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    with odd_names.client() as http:
        # The simple index of the index `project`, not flit's link to a project `simple`.
        root = http.get("/project/simple/")
        assert root.status_code == 200
        assert root.headers["content-type"].startswith("text/html")
        assert ">simple</a>" in root.text
        for index in ("project", "legacy"):
            page = http.get(f"/{index}/legacy/+simple/simple/")
            assert page.status_code == 200
            assert "simple-1.0.tar.gz</a>" in page.text
            release = http.get(f"/{index}/legacy/simple/1.0/", follow_redirects=True)
            assert release.status_code == 200
            assert release.url.path == f"/{index}/project/simple/1.0/"


def upload_consumable(server: LiveServer, tmp_path: Path, env: dict[str, str], name: str) -> None:
    token = server.token(f"{name}-owner", "prod")
    uploaded = twine_upload(server, "prod", token, write_dists(tmp_path / name, name, "3.1"), env)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr


CONSUMER = '[project]\nname = "consumer"\nversion = "0"\nrequires-python = ">=3.11"\n'


def imported_version(venv: Path, module: str, env: dict[str, str]) -> str:
    code = f"import {module}; print({module}.VERSION)"
    return ok(run([str(venv / "bin" / "python"), "-c", code], env))


def test_poetry_add_resolves_from_a_poetry_source_over_tls(
    tls_server: LiveServer, tmp_path: Path, tools: dict[str, Path], tool_env: dict[str, str]
) -> None:
    assert tls_server.tls is not None
    upload_consumable(tls_server, tmp_path, trust(tool_env, tls_server.tls.ca), "kl-poetry-dep")
    project = tmp_path / "consumer"
    project.mkdir()
    simple = tls_server.simple_url("prod")
    (project / "pyproject.toml").write_text(
        f"{CONSUMER}dependencies = []\n[tool.poetry]\npackage-mode = false\n"
        f'[[tool.poetry.source]]\nname = "keyless"\nurl = "{simple}"\npriority = "primary"\n'
    )
    poetry = str(tools["poetry"])
    # Trust as `keyless dev-cert` says: poetry's certificate setting for the source's name.
    ok(run([poetry, "config", "certificates.keyless.cert", str(tls_server.tls.ca)], tool_env))
    ok(run([poetry, "add", "kl-poetry-dep"], tool_env, cwd=project))
    assert imported_version(project / ".venv", "kl_poetry_dep", tool_env) == "3.1"
    assert f'url = "{simple.rstrip("/")}"' in (project / "poetry.lock").read_text()
    assert '"GET /prod/simple/kl-poetry-dep/" 200' in tls_server.log()


def test_pdm_add_resolves_from_a_pdm_source_over_tls(
    tls_server: LiveServer, tmp_path: Path, tools: dict[str, Path], tool_env: dict[str, str]
) -> None:
    assert tls_server.tls is not None
    upload_consumable(tls_server, tmp_path, trust(tool_env, tls_server.tls.ca), "kl-pdm-dep")
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f"{CONSUMER}dependencies = []\n[tool.pdm]\ndistribution = false\n"
        f'[[tool.pdm.source]]\nname = "pypi"\nurl = "{tls_server.simple_url("prod")}"\n'
    )
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {**tool_env, "PDM_PYTHON": str(venv / "bin" / "python")}
    pdm = str(tools["pdm"])
    # Trust as `keyless dev-cert` says: pdm's CA setting for its index.
    ok(run([pdm, "config", "pypi.ca_certs", str(tls_server.tls.ca)], env, cwd=project))
    ok(run([pdm, "add", "kl-pdm-dep"], env, cwd=project))
    assert imported_version(venv, "kl_pdm_dep", tool_env) == "3.1"
    assert '"GET /prod/simple/kl-pdm-dep/" 200' in tls_server.log()


def test_uv_add_resolves_from_a_uv_index_over_tls(
    tls_server: LiveServer, tmp_path: Path, tool_env: dict[str, str]
) -> None:
    assert tls_server.tls is not None
    env = trust(tool_env, tls_server.tls.ca)
    upload_consumable(tls_server, tmp_path, env, "kl-uv-dep")
    project = tmp_path / "consumer"
    project.mkdir()
    simple = tls_server.simple_url("prod")
    (project / "pyproject.toml").write_text(
        f"{CONSUMER}dependencies = []\n"
        f'[[tool.uv.index]]\nname = "keyless"\nurl = "{simple}"\ndefault = true\n'
    )
    # UV_NO_CONFIG would make uv ignore [tool.uv] as well; the own HOME keeps user config out.
    env = {k: v for k, v in env.items() if k != "UV_NO_CONFIG"}
    python = ["--python", os.path.realpath(sys.executable)]
    ok(run([sys.executable, "-m", "uv", "add", *python, "kl-uv-dep"], env, cwd=project))
    assert imported_version(project / ".venv", "kl_uv_dep", env) == "3.1"
    assert f'registry = "{simple}"' in (project / "uv.lock").read_text()
    assert '"GET /prod/simple/kl-uv-dep/" 200' in tls_server.log()


def banner_lines(server: LiveServer, index: str) -> list[str]:
    """The commands `keyless serve` printed at start for `index`."""
    lines = server.log().splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"index '{index}' ")))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        commands.append(line.strip())
    return commands


def test_the_start_up_commands_run_as_printed_over_https(
    tls_server: LiveServer, tmp_path: Path, tools: dict[str, Path], tool_env: dict[str, str]
) -> None:
    """Every install and upload line the banner prints works verbatim against the https server
    with the dev CA: no CA variable is set here, so each line must carry its own trust."""
    assert tls_server.tls is not None
    commands = banner_lines(tls_server, "prod")
    words = {word for line in commands for word in line.split()}
    assert {"pip", "uv", "twine", "hatch", "pdm", "poetry", "flit"} <= words, commands
    pip_venv = tmp_path / "venv"
    bins = [pip_venv / "bin", *(command.parent for command in tools.values())]
    env = {
        **tool_env,
        "KEYLESS_TOKEN": tls_server.token("banner-owner", "prod"),
        "PATH": os.pathsep.join([*map(str, bins), os.path.dirname(sys.executable), env_path()]),
        "VIRTUAL_ENV": str(pip_venv),
    }
    assert not set(env) & {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"}

    def shell(*lines: str, cwd: Path = tmp_path) -> None:
        for line in lines:
            ok(run(["bash", "-c", line], env, cwd=cwd))

    def project(minor: int) -> Path:
        # Each client uploads a version of its own, so the page shows that each one did.
        folder, version = tmp_path / f"banner-demo-{minor}", f"1.{minor}"
        write_dists(folder / "dist", "banner-demo", version)
        text = f'[project]\nname = "banner-demo"\nversion = "{version}"\n'
        (folder / "pyproject.toml").write_text(text)
        return folder

    uploads = [line for line in commands if "publish" in line or "upload" in line]
    uploads = [line for line in uploads if "flit" not in line]
    poetry_setup = [line for line in commands if line.startswith("poetry config")]
    flit = next(line for line in commands if line.endswith("flit publish"))
    shell(uploads[0], cwd=project(0))  # the first upload creates the project
    # The rest at once (each client starts slowly); poetry's config lines before its upload.
    with ThreadPoolExecutor(max_workers=8) as pool:
        # The venv the install lines below install into (VIRTUAL_ENV, and its pip first on PATH).
        jobs: list[Future[Any]] = [
            pool.submit(subprocess.run, [sys.executable, "-m", "venv", str(pip_venv)], check=True)
        ]
        for minor, line in enumerate(uploads[1:], start=1):
            before = poetry_setup if line.startswith("poetry publish") else []
            jobs.append(pool.submit(shell, *before, line, cwd=project(minor)))
        flit_project = write_flit_project(tmp_path / "banner-flit", "banner-flit", "2.0")
        jobs.append(pool.submit(shell, flit, cwd=flit_project))
        for job in jobs:
            job.result()
    with tls_server.client() as http:
        page = http.get("/prod/pypi/banner-demo/json").json()
    assert sorted(page["releases"]) == [f"1.{minor}" for minor in range(len(uploads))]
    assert len(uploads) == 5  # twine, uv, hatch, pdm, poetry

    installs = [line for line in commands if " install " in line]
    assert len(installs) == 2
    for line, name in zip(installs, ("banner-demo", "banner-flit"), strict=True):
        shell(line.replace("PACKAGE", name))
    python = str(pip_venv / "bin" / "python")
    check = "import banner_demo, banner_flit; print(banner_demo.VERSION, banner_flit.VERSION)"
    assert ok(run([python, "-c", check], env)) == f"1.{len(uploads) - 1} 2.0"


def env_path() -> str:
    return os.environ.get("PATH", os.defpath)


def test_client_links_behind_a_proxy_keep_its_path(proxied: LiveServer) -> None:
    with proxied.client() as http:
        answer = http.get("/prod/legacy/some-project/1.0/")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/keyless/prod/project/some-project/1.0/"
