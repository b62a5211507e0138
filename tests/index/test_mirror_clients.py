"""pip, uv and poetry install through one mirror URL a project whose dependencies are split
between the index and its upstream, and install it again once the upstream is stopped.

poetry runs from a venv of its own (scripts/client_tools.py, which `make test` runs first).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from scripts import client_tools

from tests.builders import build_wheel
from tests.conftest import start_server, stop_server
from tests.index.test_clients import run
from tests.index.test_mirror import mirror_config, publish
from tests.index.uploading import upload

pytestmark = pytest.mark.clients

CONSUMER = '[project]\nname = "consumer"\nversion = "0"\nrequires-python = ">=3.11"\n'
INSTALLED = ["split_app-1.0.dist-info", "split_local-2.0.dist-info", "split_up-3.0.dist-info"]


def installed(site: Path) -> list[str]:
    return sorted(p.name for p in site.glob("split_*.dist-info"))


def test_pip_uv_and_poetry_install_local_and_upstream_dependencies_then_without_upstream(
    tmp_path: Path, env: dict[str, str]
) -> None:
    poetry = str(client_tools.ensure(client_tools.default_folder())["poetry"])
    own = ("POETRY_", "VIRTUAL_ENV", "XDG_")
    clean = {k: v for k, v in env.items() if not k.startswith(own)}
    home = tmp_path / "home"
    home.mkdir()
    tool_env = {
        **clean,
        "HOME": str(home),
        "POETRY_VIRTUALENVS_IN_PROJECT": "true",
        "POETRY_NO_INTERACTION": "1",
    }
    upstream = start_server(tmp_path / "upstream")
    mirror = start_server(tmp_path / "mirror", config_text=mirror_config(upstream))
    try:
        # split-app (the index's) needs split-local (the index's) and split-up (upstream's).
        publish(upstream, "test", "split-up", "3.0")
        publish(mirror, "main", "split-local", "2.0")
        filename, data = build_wheel(
            "split-app", "1.0", metadata={"requires_dist": ["split-local", "split-up"]}
        )
        with mirror.client() as client:
            token = mirror.token("main-owner", "main")
            assert upload(client, "main", token, filename, data).status_code == 200
        index_url = mirror.simple_url("main")
        project = tmp_path / "consumer"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            f"{CONSUMER}dependencies = []\n[tool.poetry]\npackage-mode = false\n"
            f'[[tool.poetry.source]]\nname = "mirror"\nurl = "{index_url}"\n'
            'priority = "primary"\n'
        )

        def install_all(round_: str) -> None:
            # poetry: `add` resolves and locks the first time; then a fresh venv and an empty
            # cache install from the lock file, through the mirror again.
            shutil.rmtree(project / ".venv", ignore_errors=True)
            poetry_env = {**tool_env, "POETRY_CACHE_DIR": str(tmp_path / f"poetry-{round_}")}
            command = [poetry, "add", "split-app"] if round_ == "first" else [poetry, "install"]
            done = run(command, poetry_env, cwd=project)
            assert done.returncode == 0, done.stdout + done.stderr
            site = next((project / ".venv" / "lib").glob("python3.*/site-packages"))
            assert installed(site) == INSTALLED
            pip = run(
                [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target",
                 str(tmp_path / f"pip-{round_}"), "--index-url", index_url, "split-app"],
                env,
            )  # fmt: skip
            assert pip.returncode == 0, pip.stdout + pip.stderr
            assert installed(tmp_path / f"pip-{round_}") == INSTALLED
            uv = run(
                [sys.executable, "-m", "uv", "pip", "install", "--no-cache", "--target",
                 str(tmp_path / f"uv-{round_}"), "--index-url", index_url, "split-app"],
                env,
            )  # fmt: skip
            assert uv.returncode == 0, uv.stdout + uv.stderr
            assert installed(tmp_path / f"uv-{round_}") == INSTALLED

        install_all("first")
        stop_server(upstream)
        install_all("second")
        assert f'url = "{index_url.rstrip("/")}"' in (project / "poetry.lock").read_text()
    finally:
        stop_server(mirror)
        stop_server(upstream)
