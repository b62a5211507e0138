"""The release client installs light, and a keyless index serves it pinned by sha256.

A CI job that only publishes installs keyless without the server's libraries (they are the
`server` extra); the index serves the very client it runs at `/+client/`, with a requirements
file that real pip installs in `--require-hashes` mode. Each install goes into a fresh
virtualenv, from PyPI through the machine's pip/uv caches, and the installed client then
publishes to a live server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from keyless.cli.main import SERVER_LIBRARIES
from keyless.index.client_dist import client_wheel
from tests.conftest import CA_VARIABLES, LiveServer, client_env, start_server, stop_server

from .conftest import write_release

pytestmark = pytest.mark.clients

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "src/keyless/publish/locks/client.txt"


def install_env(tmp_path: Path) -> dict[str, str]:
    """A clean client environment that still uses the machine's pip and uv caches and reaches
    PyPI as the machine does (its CA settings: some networks see PyPI through a proxy)."""
    env = client_env(tmp_path)
    env.pop("UV_CACHE_DIR")
    env.update({name: os.environ[name] for name in CA_VARIABLES if name in os.environ})
    env["COLUMNS"] = "200"
    return env


def run(command: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def missing_server_libraries(python: Path, env: dict[str, str]) -> list[str]:
    """The server's modules the venv of `python` cannot import."""
    probe = (
        "import importlib.util, sys\n"
        "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    )
    return run([str(python), "-c", probe, *sorted(SERVER_LIBRARIES)], env).split()


def publish_and_check(keyless: Path, server: LiveServer, name: str, tmp_path: Path) -> None:
    """`keyless check` then `keyless publish` (token) of a fresh release, seen on the index."""
    env = install_env(tmp_path)
    env["KEYLESS_TOKEN"] = server.token(f"{name}-owner", "prod")
    folder = tmp_path / name
    # A Markdown README: `check` renders it with readme_renderer[md], a dependency of the client.
    readme = {"description": "# Demo\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"}
    write_release(
        folder / "dist", name, "1.0.0", description_content_type="text/markdown", **readme
    )
    checked = run([str(keyless), "check", "dist/*"], env, cwd=folder)
    assert checked.count(": PASSED") == 2, checked
    assert "0 error(s), 0 warning(s)" in checked, checked
    run([str(keyless), "publish", "--repository-url", server.upload_url("prod")], env, folder)
    with server.client() as http:
        page = http.get(
            f"/prod/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
    assert sorted(f["filename"] for f in page.json()["files"]) == sorted(
        p.name for p in (folder / "dist").iterdir()
    )


def refuses_to_serve(keyless: Path, env: dict[str, str], *args: str) -> str:
    """What a server command prints without the server extra (it must fail, in one line)."""
    done = subprocess.run(
        [str(keyless), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    return line


# --------------------------------------------------------------------- the light client


def test_the_wheel_without_extras_is_the_light_client(server: LiveServer, tmp_path: Path) -> None:
    env = install_env(tmp_path)
    built = tmp_path / "built"
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(built), str(ROOT)],
        env,
    )
    [wheel] = built.glob("keyless-*.whl")
    venv = tmp_path / "light"
    run([sys.executable, "-m", "uv", "venv", "--python", sys.executable, str(venv)], env)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "uv", "pip", "install", "--python", str(python), str(wheel)], env)

    assert missing_server_libraries(python, env) == sorted(SERVER_LIBRARIES)
    publish_and_check(venv / "bin" / "keyless", server, "light-client", tmp_path)
    serve = refuses_to_serve(venv / "bin" / "keyless", env, "serve", "--port", "1")
    assert serve.startswith("error: `keyless serve` needs the index server's libraries")
    assert serve.endswith("pip install 'keyless[server]'")
    emulator = refuses_to_serve(venv / "bin" / "keyless", env, "ci-emulator", "serve")
    assert "pip install 'keyless[server]'" in emulator


# -------------------------------------------------------------------- the served client


def test_pip_installs_the_served_client_with_require_hashes(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    described = http.get("/+client/").json()
    wheel = client_wheel.__wrapped__()  # built afresh here: the server's is the same bytes
    assert described["version"] == wheel.version
    assert described["wheel"]["sha256"] == wheel.sha256
    served = http.get(described["wheel"]["url"])
    assert hashlib.sha256(served.content).hexdigest() == wheel.sha256
    requirements = http.get(described["requirements"]["url"])
    assert hashlib.sha256(requirements.content).hexdigest() == described["requirements"]["sha256"]
    assert f"--hash=sha256:{wheel.sha256}" in requirements.text

    env = install_env(tmp_path)
    venv = tmp_path / "pip-venv"
    run([sys.executable, "-m", "venv", str(venv)], env)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--require-hashes"]
    run([*pip, "-r", described["requirements"]["url"]], env)

    keyless = venv / "bin" / "keyless"
    assert run([str(keyless), "--version"], env).strip() == f"keyless {wheel.version}"
    assert missing_server_libraries(python, env) == sorted(SERVER_LIBRARIES)
    publish_and_check(keyless, server, "served-client", tmp_path)


def test_another_version_of_the_client_is_a_404_naming_the_served_one(
    http: httpx.Client,
) -> None:
    version = http.get("/+client/").json()["version"]
    for path in (
        "/+client/0.0.1/requirements.txt",
        "/+client/0.0.1/keyless-0.0.1-py3-none-any.whl",
    ):
        answer = http.get(path)
        assert answer.status_code == 404
        assert f"this index serves keyless {version}, not 0.0.1" in answer.text


def test_the_client_lock_pins_exactly_the_base_dependencies() -> None:
    """The lock the index serves stays in step with pyproject (`make client-lock`), offline."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    pins: dict[str, str] = {}
    direct: set[str] = set()
    current = ""
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line.rstrip(" \\"))
            current = canonicalize_name(requirement.name)
            [spec] = requirement.specifier
            assert spec.operator == "==", line
            pins[current] = spec.version
        elif line.strip() in ("# via keyless (pyproject.toml)", "#   keyless (pyproject.toml)"):
            direct.add(current)
    assert direct == set(wanted)
    for name, requirement in wanted.items():
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    assert not set(pins) & {canonicalize_name(n) for n in ("starlette", "sqlalchemy", "jinja2")}


def test_metadata_the_lock_does_not_cover_is_a_503_saying_what_to_do(tmp_path: Path) -> None:
    """An installed keyless whose metadata needs what the lock does not pin (stale metadata,
    or a dependency added without `make client-lock`) serves no client pip would refuse."""
    stale = tmp_path / "stale" / "keyless-0.1.0.dist-info"
    stale.mkdir(parents=True)
    (stale / "METADATA").write_text(
        "Metadata-Version: 2.4\nName: keyless\nVersion: 0.1.0\n"
        "Requires-Dist: httpx>=0.27\nRequires-Dist: starlette>=0.47\n"
        'Requires-Dist: jinja2>=3.1; extra == "server"\n',
        encoding="utf-8",
    )
    path = os.pathsep.join([str(stale.parent), os.environ.get("PYTHONPATH", "")])
    live = start_server(tmp_path / "server", env={"PYTHONPATH": path})
    try:
        with live.client() as http:
            for url in ("/+client/", "/+client/0.1.0/requirements.txt"):
                answer = http.get(url)
                assert answer.status_code == 503
                assert "keyless 0.1.0 needs starlette, which the client lock" in answer.text
                assert "make client-lock" in answer.text
    finally:
        stop_server(live)
