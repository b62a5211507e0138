"""The acceptance path with the real clients people use: twine, uv and pip against a live server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer, trust

pytestmark = pytest.mark.clients


def run(
    command: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def write_dists(folder: Path, name: str, version: str, module: str | None = None) -> list[Path]:
    """A wheel (with an importable module) and an sdist of `name` `version` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    module = module or name.replace("-", "_")
    code = f"VERSION = {version!r}\n".encode()
    paths = []
    for filename, data in (
        build_wheel(name, version, extra_files={f"{module}/__init__.py": code}),
        build_sdist(name, version),
    ):
        path = folder / filename
        path.write_bytes(data)
        paths.append(path)
    return paths


# twine 6.2+ refuses --skip-existing for every index but pypi.org, so that flag is exercised
# with the newest twine that still sends it anywhere (kept inside .venv, built once).
SKIP_EXISTING_TWINE = "twine==6.1.0"


@pytest.fixture(scope="session")
def twine_61() -> Path:
    venv = Path(sys.prefix) / "twine-6.1"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "twine").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", SKIP_EXISTING_TWINE], check=True
        )
    return python


def twine_upload_to(
    url: str,
    files: list[Path],
    env: dict[str, str],
    user: str,
    password: str,
    *extra: str,
    python: Path | str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """`twine upload` of `files` to the upload URL `url` as `user`, non-interactive."""
    command = [
        *(str(python), "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"),
        *("--repository-url", url, "-u", user, "-p", password, *extra, *map(str, files)),
    ]
    return run(command, env)


def twine_upload(
    server: LiveServer,
    index: str,
    token: str,
    files: list[Path],
    env: dict[str, str],
    *extra: str,
    python: Path | str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """`twine upload` to `server`'s `index` with an API token."""
    return twine_upload_to(
        server.upload_url(index), files, env, "__token__", token, *extra, python=python
    )


def uv_pip_install(venv: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    python = str(venv / "bin" / "python")
    return run([sys.executable, "-m", "uv", "pip", "install", "--python", python, *args], env)


def make_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv


def pip_install(index_url: str, tmp_path: Path, env: dict[str, str], *wanted: str) -> str:
    """pip installs `wanted` from `index_url` into a new venv; returns what it installed."""
    venv = make_venv(tmp_path)
    done = run(
        [
            *(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"),
            *("--no-cache-dir", "--index-url", index_url, *wanted),
        ],
        env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return next(x for x in done.stdout.splitlines() if x.startswith("Successfully installed"))


def pip_install_target(target: Path, env: dict[str, str], *args: str) -> None:
    """`pip install --target target *args` with no cache; asserts that it worked."""
    done = run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target), *args],
        env,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_twine_upload_then_pip_install_over_tls(
    tls_server: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    assert tls_server.tls is not None
    env = trust(env, tls_server.tls.ca)
    token = tls_server.token("tls-owner", "prod")
    files = write_dists(tmp_path / "dist", "tls-demo", "1.0.0")

    uploaded = twine_upload(tls_server, "prod", token, files, env)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr

    target = tmp_path / "site"
    pip_install_target(target, env, "--index-url", tls_server.simple_url("prod"), "tls-demo")
    assert (target / "tls_demo" / "__init__.py").read_text() == "VERSION = '1.0.0'\n"
    # The access log saw the upload but never the token.
    assert "POST /prod/legacy/" in tls_server.log()
    assert token not in tls_server.log()


def test_uv_publish_with_token_then_uv_pip_install(
    server: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    token = server.token("uv-owner", "prod")
    files = write_dists(tmp_path / "dist", "uv-demo", "2.1")

    published = run(
        [
            sys.executable,
            "-m",
            "uv",
            "publish",
            "--publish-url",
            server.upload_url("prod"),
            "--token",
            token,
            *map(str, files),
        ],
        env,
    )
    assert published.returncode == 0, published.stdout + published.stderr

    venv = make_venv(tmp_path)
    installed = uv_pip_install(venv, env, "--index-url", server.simple_url("prod"), "uv-demo==2.1")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    check = run([str(venv / "bin" / "python"), "-c", "import uv_demo; print(uv_demo.VERSION)"], env)
    assert check.stdout.strip() == "2.1"


def test_twine_and_uv_upload_to_the_url_without_its_trailing_slash(
    server: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    token = server.token("slashless-owner", "prod")
    slashless = server.upload_url("prod").rstrip("/")
    twine_files = write_dists(tmp_path / "twine", "slashless-twine", "1.0")
    twine = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--repository-url"]
    credentials = ["-u", "__token__", "-p", token]
    uploaded = run([*twine, slashless, *credentials, *map(str, twine_files)], env)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    uv_files = write_dists(tmp_path / "uv", "slashless-uv", "1.0")
    uv = [sys.executable, "-m", "uv", "publish", "--publish-url", slashless, "--token", token]
    published = run([*uv, *map(str, uv_files)], env)
    assert published.returncode == 0, published.stdout + published.stderr
    with server.client() as http:
        for name, files in (("slashless-twine", twine_files), ("slashless-uv", uv_files)):
            page = http.get(f"/prod/simple/{name}/")
            assert page.status_code == 200
            assert all(path.name in page.text for path in files)


def test_pip_and_uv_read_the_html_pages(
    server: LiveServer, tmp_path: Path, env: dict[str, str]
) -> None:
    """--find-links makes pip and uv parse our HTML project page instead of the JSON one."""
    token = server.token("html-owner", "prod")
    files = write_dists(tmp_path / "dist", "html-demo", "0.3")
    assert twine_upload(server, "prod", token, files, env).returncode == 0
    page = f"{server.simple_url('prod')}html-demo/"

    target = tmp_path / "pip-site"
    pip_install_target(target, env, "--no-index", "--find-links", page, "html-demo")
    assert (target / "html_demo" / "__init__.py").exists()

    venv = make_venv(tmp_path)
    by_uv = uv_pip_install(venv, env, "--no-index", "--find-links", page, "html-demo")
    assert by_uv.returncode == 0, by_uv.stdout + by_uv.stderr


def test_twine_rerun_and_skip_existing_and_changed_bytes(
    server: LiveServer, tmp_path: Path, env: dict[str, str], twine_61: Path
) -> None:
    token = server.token("rerun-owner", "prod")
    files = write_dists(tmp_path / "dist", "rerun-demo", "1.0")
    assert twine_upload(server, "prod", token, files, env).returncode == 0

    # Re-running a release job: identical bytes are a success, with or without --skip-existing.
    again = twine_upload(server, "prod", token, files, env)
    assert again.returncode == 0, again.stdout + again.stderr
    skipped = twine_upload(server, "prod", token, files, env, "--skip-existing", python=twine_61)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr

    # Same filename, different bytes: a loud failure that --skip-existing recognises.
    changed = write_dists(tmp_path / "changed", "rerun-demo", "1.0", module="rerun_demo_changed")
    expected = "File already exists ('rerun_demo-1.0-py3-none-any.whl', with blake2_256 hash"
    # Without --verbose twine prints the status code and the reason phrase, not the body:
    # the message rides in the reason phrase, as on PyPI.
    for python in (sys.executable, twine_61):
        refused = twine_upload(server, "prod", token, changed[:1], env, python=python)
        assert refused.returncode != 0
        assert expected in " ".join((refused.stdout + refused.stderr).split())
    skipped = twine_upload(
        server, "prod", token, changed[:1], env, "--skip-existing", python=twine_61
    )
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "Skipping" in skipped.stdout + skipped.stderr


def test_pip_skips_a_yanked_release_unless_pinned(
    server: LiveServer, tmp_path: Path, env: dict[str, str], http: httpx.Client
) -> None:
    token = server.token("yank-owner", "prod")
    for version in ("1.0", "2.0"):
        files = write_dists(tmp_path / version, "yank-demo", version)
        assert twine_upload(server, "prod", token, files, env).returncode == 0
    answer = http.post(
        "/prod/api/projects/yank-demo/releases/2.0/yank",
        json={"reason": "broken on Windows"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text

    def download(spec: str) -> list[str]:
        dest = tmp_path / f"dl-{spec}"
        result = run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-cache-dir",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--dest",
                str(dest),
                "--index-url",
                server.simple_url("prod"),
                spec,
            ],
            env,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return sorted(p.name for p in dest.iterdir())

    assert download("yank-demo") == ["yank_demo-1.0-py3-none-any.whl"]
    assert download("yank-demo==2.0") == ["yank_demo-2.0-py3-none-any.whl"]


def test_no_accept_header_gets_html(
    server: LiveServer, tmp_path: Path, env: dict[str, str], http: httpx.Client
) -> None:
    """hatch and Renovate fetch without Accept and parse HTML."""
    token = server.token("noaccept-owner", "prod")
    assert (
        twine_upload(
            server, "prod", token, write_dists(tmp_path, "noaccept-demo", "1.0"), env
        ).returncode
        == 0
    )
    answer = httpx.get(f"{server.simple_url('prod')}noaccept-demo/", headers={"Accept": ""})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "noaccept_demo-1.0.tar.gz</a>" in answer.text
