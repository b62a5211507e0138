"""nginx as the load balancer in front of two `keyless serve` processes, as docs/deploy.md sets
it up: the config is deploy/nginx/keyless.conf itself, with the test's ports and files.

nginx (Debian's, installed by scripts/ensure-nginx.sh) runs as an ordinary process with a temp
config on a private port, ends TLS, and spreads requests over the two processes round-robin.
The two processes share their storage: the `backends` fixture decides what that is (one data
folder here; PostgreSQL and a bucket are another backend set for the same tests).
"""

from __future__ import annotations

import hashlib
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.ci.emulator import Emulator
from keyless.devcert import DevCert
from tests import nginx
from tests.builders import build_wheel
from tests.conftest import (
    AUDIENCE,
    LiveServer,
    client_env,
    free_port,
    make_project,
    make_tls_files,
    start_server,
    stop_server,
    trust,
    trusted_config,
)
from tests.index.test_clients import (
    make_venv,
    pip_install_target,
    run,
    twine_upload_to,
    uv_pip_install,
    write_dists,
)
from tests.index.test_project_admin import post
from tests.index.test_trusted_publishing import add_github_publisher, failure, job, mint
from tests.index.uploading import form_fields, upload

pytestmark = pytest.mark.clients

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "keyless.conf"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def site_config(upstreams: list[str], port: int, tls: DevCert) -> str:
    """deploy/nginx/keyless.conf with this test's addresses and certificate."""
    text = SITE.read_text(encoding="utf-8")
    replacements = {
        "server 127.0.0.1:8001 ": f"server {upstreams[0]} ",
        "server 127.0.0.1:8002 ": f"server {upstreams[1]} ",
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/ssl/keyless/cert.pem": str(tls.cert),
        "/etc/ssl/keyless/key.pem": str(tls.key),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{SITE} no longer has {old!r} once: update this test"
        text = text.replace(old, new)
    return text


@dataclass
class Nginx:
    url: str
    process: subprocess.Popen[bytes]
    folder: Path
    tls: DevCert

    def client(self, **options: Any) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.tls.ca))
        return httpx.Client(base_url=self.url, verify=verify, timeout=60, **options)

    def simple_url(self, index: str) -> str:
        return f"{self.url}/{index}/simple/"

    def upload_url(self, index: str) -> str:
        return f"{self.url}/{index}/legacy/"

    def log(self) -> str:
        return (self.folder / "error.log").read_text(errors="replace")


def start_nginx(folder: Path, upstreams: list[str], port: int, tls: DevCert) -> Nginx:
    folder.mkdir(parents=True, exist_ok=True)
    site = folder / "keyless.conf"
    site.write_text(site_config(upstreams, port, tls), encoding="utf-8")
    process = nginx.launch(folder, site, workers=2, access_log=True)
    proxy = Nginx(f"https://127.0.0.1:{port}", process, folder, tls)
    deadline = time.monotonic() + 30
    with proxy.client() as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{nginx.errors(folder)}")
            try:
                if client.get("/_/health").status_code == 200:
                    return proxy
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"nginx did not answer in 30 s:\n{proxy.log()}")
            time.sleep(0.1)


def stop_nginx(proxy: Nginx) -> None:
    nginx.stop(proxy.process)


@dataclass
class Deployment:
    nginx: Nginx
    one: LiveServer
    two: LiveServer


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory, emulator: Emulator, gitlab_ci: Emulator
) -> Callable[[Path, dict[str, str]], tuple[LiveServer, LiveServer]]:
    """How the two keyless processes are started on shared storage: the same data folder (its
    SQLite database and blob folder). Another backend set is another version of this."""

    def start(folder: Path, env: dict[str, str]) -> tuple[LiveServer, LiveServer]:
        config = trusted_config(emulator.issuer, gitlab_ci.issuer)
        one = start_server(folder / "one", config_text=config, env=env)
        two = start_server(folder / "two", config_text=config, env=env, data_dir=one.data_dir)
        return one, two

    return start


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    backends: Callable[[Path, dict[str, str]], tuple[LiveServer, LiveServer]],
) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("nginx-deployment")
    port = free_port()
    tls = make_tls_files(folder)
    # The URL clients use is nginx's (docs: set public-url to it).
    one, two = backends(folder, {"KEYLESS_PUBLIC_URL": f"https://127.0.0.1:{port}"})
    try:
        hosts = [one.url.removeprefix("http://"), two.url.removeprefix("http://")]
        proxy = start_nginx(folder / "nginx", hosts, port, tls)
    except BaseException:
        stop_server(one)
        stop_server(two)
        raise
    yield Deployment(proxy, one, two)
    stop_nginx(proxy)
    for server in (one, two):
        if server.process.poll() is None:
            stop_server(server)


def upload_counts(server: LiveServer) -> float:
    """Requests the upload route of this process answered (its /_/metrics)."""
    with server.client() as client:
        text = client.get("/_/metrics").text
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith('keyless_requests_total{route="upload"')
    )


def files_on(client: httpx.Client, project: str) -> dict[str, Any]:
    """{filename: yanked} of a project's simple page on `prod`."""
    answer = client.get(f"/prod/simple/{project}/", headers={"Accept": JSON_TYPE})
    assert answer.status_code == 200, answer.text
    return {f["filename"]: f["yanked"] for f in answer.json()["files"]}


def test_twine_and_uv_upload_and_pip_installs_through_nginx(
    deployment: Deployment, tmp_path: Path
) -> None:
    env = trust(client_env(tmp_path), deployment.nginx.tls.ca)
    token = deployment.one.token("nginx-owner", "prod")
    dists = write_dists(tmp_path / "twine", "nginx-twine", "1.0")
    url = deployment.nginx.upload_url("prod")
    twined = twine_upload_to(url, dists, env, "__token__", token)
    assert twined.returncode == 0, twined.stdout + twined.stderr
    uv_files = write_dists(tmp_path / "uv", "nginx-uv", "2.0")
    uv = [
        sys.executable,
        "-m",
        "uv",
        "publish",
        "--publish-url",
        deployment.nginx.upload_url("prod"),
    ]
    published = run([*uv, "--token", token, *map(str, uv_files)], env)
    assert published.returncode == 0, published.stdout + published.stderr

    target = tmp_path / "site"
    index = ["--index-url", deployment.nginx.simple_url("prod")]
    pip_install_target(target, env, *index, "nginx-twine", "nginx-uv")
    assert (target / "nginx_twine" / "__init__.py").read_text() == "VERSION = '1.0'\n"
    assert (target / "nginx_uv" / "__init__.py").read_text() == "VERSION = '2.0'\n"
    venv = make_venv(tmp_path)
    assert uv_pip_install(venv, env, *index, "nginx-uv==2.0").returncode == 0


def test_an_upload_through_one_is_listed_by_the_other_on_the_next_request(
    deployment: Deployment,
) -> None:
    token = deployment.one.token("nginx-next", "prod")
    with deployment.one.client() as one, deployment.two.client() as two:
        assert upload(one, "prod", token, *build_wheel("nginx-next", "1.0")).status_code == 200
        assert list(files_on(two, "nginx-next")) == ["nginx_next-1.0-py3-none-any.whl"]
        assert upload(one, "prod", token, *build_wheel("nginx-next", "1.1")).status_code == 200
        assert len(files_on(two, "nginx-next")) == 2  # the page the second had is dropped
        assert upload(two, "prod", token, *build_wheel("nginx-next", "1.2")).status_code == 200
        assert len(files_on(one, "nginx-next")) == 3


def test_twenty_identical_uploads_at_once_store_one_file(deployment: Deployment) -> None:
    token = deployment.one.token("nginx-race", "prod")
    filename, data = build_wheel("nginx-race", "1.0")
    before = upload_counts(deployment.one), upload_counts(deployment.two)
    clients = [deployment.nginx.client() for _ in range(20)]
    barrier = threading.Barrier(len(clients))
    codes: list[int | str] = []

    def send(client: httpx.Client) -> None:
        barrier.wait()
        try:
            codes.append(upload(client, "prod", token, filename, data).status_code)
        except httpx.HTTPError as exc:
            codes.append(repr(exc))

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for client in clients:
        client.close()
    assert codes == [200] * 20
    after = upload_counts(deployment.one), upload_counts(deployment.two)
    spread = (after[0] - before[0], after[1] - before[1])
    assert sum(spread) == 20, spread
    assert min(spread) > 0, spread  # both processes took some
    with deployment.nginx.client() as client:
        assert files_on(client, "nginx-race") == {filename: False}
        listed = client.get("/prod/simple/nginx-race/", headers={"Accept": JSON_TYPE}).json()
        assert client.get(listed["files"][0]["url"]).content == data
    with deployment.one.client() as one:
        assert one.get("/prod/pypi/nginx-race/json").json()["urls"][0]["filename"] == filename


def test_an_oidc_token_replayed_against_the_second_worker_is_refused(
    deployment: Deployment, emulator: Emulator
) -> None:
    with deployment.one.client() as one, deployment.two.client() as two:
        make_project(deployment.one, one, "nginx-minted")
        add_github_publisher(deployment.one, emulator, "nginx-minted", repository="nginx-minted")
        token = emulator.token(AUDIENCE, job(repo="octo-org/nginx-minted"))
        minted = mint(one, token)
        assert minted.status_code == 200, minted.text
        assert failure(mint(two, token))[0] == "invalid-reuse-token"
        with deployment.nginx.client() as proxied:
            assert failure(mint(proxied, token))[0] == "invalid-reuse-token"


def test_a_yank_through_one_shows_on_the_other_at_once(deployment: Deployment) -> None:
    token = deployment.one.token("nginx-yank", "prod")
    wheel = "nginx_yank-1.0-py3-none-any.whl"
    with deployment.one.client() as one, deployment.two.client() as two:
        assert upload(one, "prod", token, *build_wheel("nginx-yank", "1.0")).status_code == 200
        assert files_on(two, "nginx-yank") == {wheel: False}
        answer = post(one, "nginx-yank/releases/1.0/yank", token, {"reason": "bad"})
        assert answer.status_code == 200, answer.text
        assert files_on(two, "nginx-yank") == {wheel: "bad"}
        with deployment.nginx.client() as proxied:
            assert files_on(proxied, "nginx-yank") == {wheel: "bad"}


def slow_body(body: bytes, stop_after: threading.Event) -> Iterator[bytes]:
    """The body in small pieces, pausing half-way until `stop_after` is set."""
    half = len(body) // 2
    for start in range(0, half, 16 * 1024):
        yield body[start : min(start + 16 * 1024, half)]
    stop_after.wait(30)
    time.sleep(1)  # the worker is dead by now: the rest goes nowhere
    yield body[half:]


def test_killing_a_worker_mid_upload_loses_nothing_acknowledged(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Last in the module: it leaves one worker dead."""
    token = deployment.one.token("nginx-kill", "prod")
    acknowledged: dict[str, bytes] = {}
    with deployment.nginx.client() as client:
        for version in ("1.0", "1.1", "1.2", "1.3"):
            filename, data = build_wheel("nginx-kill", version)
            assert upload(client, "prod", token, filename, data).status_code == 200
            acknowledged[filename] = data

    # An upload into the first process, cut off half-way by its death (SIGKILL: no cleanup).
    filename, data = build_wheel("nginx-kill", "2.0", extra_files={"big.bin": os.urandom(1 << 20)})
    request = httpx.Request(
        "POST",
        f"{deployment.one.url}/prod/legacy/",
        data=dict_of(form_fields(filename, data)),
        files={"content": (filename, data, "application/octet-stream")},
    )
    body = request.read()
    halfway = threading.Event()
    outcome: list[Any] = []

    def send() -> None:
        with httpx.Client(timeout=60) as client:
            try:
                outcome.append(
                    client.post(
                        request.url,
                        content=slow_body(body, halfway),
                        headers={"Content-Type": request.headers["Content-Type"]},
                        auth=("__token__", token),
                    )
                )
            except httpx.HTTPError as exc:
                outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.5)  # half the body is in the first process
    deployment.one.process.send_signal(signal.SIGKILL)
    deployment.one.process.wait(timeout=10)
    halfway.set()
    sender.join(timeout=60)
    assert outcome, "the upload did not end"
    assert not isinstance(outcome[0], httpx.Response), outcome[0]  # no answer came

    with deployment.nginx.client() as client:
        # Nothing acknowledged is lost, byte for byte, and no half of the cut upload shows.
        page = client.get("/prod/simple/nginx-kill/", headers={"Accept": JSON_TYPE}).json()
        listed = {f["filename"]: f["url"] for f in page["files"]}
        assert set(listed) == set(acknowledged)
        for name, url in listed.items():
            assert (
                hashlib.sha256(client.get(url).content).digest()
                == hashlib.sha256(acknowledged[name]).digest()
            )
        # The client's retry goes through nginx, which sends it to the living process.
        retried = upload(client, "prod", token, filename, data)
        assert retried.status_code == 200, retried.text
        assert filename in files_on(client, "nginx-kill")
    assert deployment.two.process.poll() is None


def dict_of(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in fields:
        grouped.setdefault(key, []).append(value)
    return grouped
