"""Shared fixtures: a real keyless server on 127.0.0.1, driven over real HTTP(S)."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import Engine

from keyless.ci.emulator import Emulator
from keyless.config import StorageSettings, load_settings
from keyless.devcert import DevCert, create_dev_cert
from keyless.index.accounts import Accounts
from keyless.store.backends import open_blob_store
from keyless.store.blobs import BlobStore
from keyless.store.db import open_database
from tests import backends

if TYPE_CHECKING:
    from tests.pg import PostgreSQL

KIB = 1024

SERVER_CONFIG = """
[indexes.test]
profile = "pypi"

[indexes.prod]
profile = "pypi"

[indexes.private]
profile = "private"

[indexes.tiny]
profile = "private"
max-file-size = "64KiB"
max-project-size = "100KiB"
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=backends.BACKENDS,
        help="the backend set live servers run on: sqlite (SQLite + data folder, the default) "
        f"or postgresql (PostgreSQL + S3); also {backends.VARIABLE}",
    )


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--backend")
    if chosen:
        # An environment variable, so every process the tests start sees the same choice.
        os.environ[backends.VARIABLE] = chosen
    backends.current()  # a wrong value fails here, before any test


# Tests that measure time or memory against a bound, or kill a server again and again at
# random moments: `make test` runs them after the others, in one process (`-m serial`), so
# the other tests' servers (pytest-xdist runs several at once) do not eat into their margins.
# A module's path names all its tests, "path::name" one test.
SERIAL = (
    "tests/fuzz/test_crash_loop.py",
    "tests/index/test_upload_sessions_crash.py",
    "tests/index/test_transfer_memory.py",
    "tests/index/test_rendering.py",
    "tests/index/test_resources.py",
    "tests/index/test_mirror_upstreams.py::test_an_upstream_slower_than_its_timeout_is_a_504_naming_it",
    "tests/publish/test_upload.py::test_retry_after_is_honoured_then_the_upload_succeeds",
    "tests/deploy/test_nginx_workers.py::test_twenty_identical_uploads_at_once_store_one_file",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)
    if backends.on_postgresql():
        skip = pytest.mark.skip(reason="about the local files: not run on PostgreSQL + S3")
        for item in items:
            if item.get_closest_marker("local_only"):
                item.add_marker(skip)


# Every port free_port has handed out in this test process. A port is chosen before the
# process that will listen on it starts, so the kernel may offer the same closed port again
# in between (it did: nginx and a backend were both given 52055 in one CI run).
_HANDED_OUT: set[int] = set()

# ... and in the other test processes of this machine's user: pytest-xdist's workers (`make
# test` runs several) and a second pytest run at the same time each choose ports on their own.
# One file per port handed out, holding the id of the process it went to; a port whose process
# has exited is free again. The lock file makes "is it taken? take it" one step.
PORTS_DIR = Path(tempfile.gettempdir()) / f"keyless-test-ports-{os.getuid()}"


def free_port() -> int:
    """A port nothing listens on now and that no earlier call of this process, or of another
    live test process, returned."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT and _claim(port):
            _HANDED_OUT.add(port)
            return port


def _claim(port: int) -> bool:
    """Record `port` as this process's unless a live test process holds it already."""
    PORTS_DIR.mkdir(mode=0o700, exist_ok=True)
    with (PORTS_DIR / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        claim = PORTS_DIR / str(port)
        try:
            holder = int(claim.read_text(encoding="ascii"))
        except (FileNotFoundError, ValueError):
            holder = None
        if holder is not None and holder != os.getpid() and _alive(holder):
            return False
        claim.write_text(str(os.getpid()), encoding="ascii")
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def release_ports() -> None:
    """Free the ports this process holds (at the end of its session)."""
    for port in _HANDED_OUT:
        claim = PORTS_DIR / str(port)
        with contextlib.suppress(OSError, ValueError):
            if int(claim.read_text(encoding="ascii")) == os.getpid():
                claim.unlink()


def run_keyless(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m keyless ARGS` as a user types it (this process's environment unless `env`)."""
    return subprocess.run(
        [sys.executable, "-m", "keyless", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def git(repo: Path, *args: str) -> None:
    """`git ARGS` in `repo` as a committer with a name (none is configured on CI machines)."""
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
    )


def interruptible() -> None:
    """A `preexec_fn` for a child a test will interrupt (SIGINT, as Ctrl-C): the default
    disposition, unblocked. A child inherits an ignored or blocked SIGINT from the test
    process, and Python then never raises KeyboardInterrupt in it; two CI runs showed pytest-xdist
    workers in that state by the time these tests ran."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def client_env(tmp: Path) -> dict[str, str]:
    """An environment for pip/uv/twine that ignores this machine's own index settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "TWINE_")) and k not in CA_VARIABLES
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(tmp / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        KEYRING_PROVIDER="disabled",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    return env


# Variables through which clients pick their trusted CAs; a test decides them itself.
CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def trust(env: dict[str, str], ca: Path) -> dict[str, str]:
    """Make pip, uv, twine and httpx trust `ca`, as a user of a private CA would."""
    return {**env, "SSL_CERT_FILE": str(ca), "REQUESTS_CA_BUNDLE": str(ca)}


def make_tls_files(folder: Path) -> DevCert:
    """A throwaway CA and a certificate for 127.0.0.1/localhost, made as `keyless dev-cert` does."""
    return create_dev_cert(folder / "tls")


@dataclass
class LiveServer:
    """A `keyless serve` process and the handles tests need to use it."""

    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    tls: DevCert | None = None
    # Its PostgreSQL database, when the tests run on PostgreSQL + S3 (tests/backends.py).
    database_url: str | None = None
    storage: StorageSettings = field(default_factory=StorageSettings)
    _users: set[str] = field(default_factory=set)
    _engine: Engine | None = None

    @property
    def database(self) -> Path | str:
        """What `open_database` takes: the SQLite file, or the PostgreSQL URL."""
        return self.database_url or self.data_dir / "keyless.db"

    def database_bytes(self) -> bytes:
        """Everything the database holds, as stored: the SQLite files, or a PostgreSQL dump."""
        if self.database_url is None:
            return b"".join(p.read_bytes() for p in sorted(self.data_dir.glob("keyless.db*")))
        from tests.pg import dump

        return dump(self.database_url)

    def blobs(self) -> BlobStore:
        """The server's blob store (the folder, or its bucket), for the tests' own use."""
        return open_blob_store(self.storage, self.data_dir / "blobs")

    def engine(self) -> Engine:
        """One engine per server for the tests' own use (a pool each would add up)."""
        if self._engine is None:
            self._engine = open_database(self.database)
        return self._engine

    def simple_url(self, index: str) -> str:
        return f"{self.url}/{index}/simple/"

    def upload_url(self, index: str) -> str:
        return f"{self.url}/{index}/legacy/"

    def user(self, name: str) -> str:
        if name not in self._users:
            Accounts(self.engine()).create_user(name, "correct horse battery")
            self._users.add(name)
        return name

    def token(
        self,
        username: str,
        index: str,
        projects: list[str] | None = None,
        expires_in: dt.timedelta | None = None,
    ) -> str:
        self.user(username)
        return (
            Accounts(self.engine())
            .create_token(username, index, projects=projects, expires_in=expires_in)
            .token
        )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else True
        return httpx.Client(base_url=self.url, verify=verify, timeout=30)


def start_server(
    folder: Path,
    tls: DevCert | None = None,
    *,
    config_text: str = SERVER_CONFIG,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    data_dir: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> LiveServer:
    """`keyless serve` on a free port with its data in `folder/data`, once it answers.

    `prefix` runs the server through another command (e.g. `unshare` to give it a mount of
    its own), which must exec the rest of its arguments. `data_dir` serves another data folder
    (a second server process on the same data); `extra_args` are more `serve` options.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir or folder / "data"
    config = folder / "keyless.toml"
    config.write_text(config_text, encoding="utf-8")
    port = free_port()
    command = [
        *prefix,
        sys.executable,
        "-m",
        "keyless",
        "serve",
        "--config",
        str(config),
        "--data",
        str(data_dir),
        "--port",
        str(port),
        *extra_args,
    ]
    if tls:
        command += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    log_path = folder / "server.log"
    log = log_path.open("wb")
    # On PostgreSQL + S3 (tests/backends.py), a database and a bucket of its own, unless the
    # test names its own; a second server on the same data folder shares them, as a second
    # machine of one deployment would.
    backend_env = _backend_of_data.get(data_dir)
    if backend_env is None:
        backend_env = backends.server_environment(folder.name)  # before os.environ: adds to it
        _backend_of_data[data_dir] = backend_env
    server_env = {**os.environ, **backend_env, **(env or {})}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=server_env)
    scheme = "https" if tls else "http"
    server = LiveServer(
        url=f"{scheme}://127.0.0.1:{port}",
        data_dir=data_dir,
        log_path=log_path,
        process=process,
        tls=tls,
        database_url=server_env.get("KEYLESS_DATABASE_URL"),
        storage=load_settings(environ=_storage_variables(server_env)).storage,
    )
    deadline = time.monotonic() + 30
    with server.client() as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"keyless serve exited early:\n{server.log()}")
            try:
                if client.get("/_/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"keyless serve did not answer in 30 s:\n{server.log()}")
            time.sleep(0.1)
    return server


# The backend settings each data folder's first server was given (see `start_server`).
_backend_of_data: dict[Path, dict[str, str]] = {}


def _storage_variables(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k == "KEYLESS_BLOBS" or k.startswith("KEYLESS_S3_")}


def stop_server(server: LiveServer) -> None:
    if server._engine is not None:
        server._engine.dispose()
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One plain-http server for the session; tests use distinct project names."""
    live = start_server(tmp_path_factory.mktemp("server"))
    yield live
    stop_server(live)


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The same server behind real TLS, with a CA the clients are told to trust."""
    folder = tmp_path_factory.mktemp("tls-server")
    live = start_server(folder, tls=make_tls_files(folder))
    yield live
    stop_server(live)


AUDIENCE = "keyless"  # the server's Trusted Publishing audience in tests
TEST_AUDIENCE = "keyless-test"  # the `test` index's own audience (PEP 807)


def trusted_config(github_issuer: str, gitlab_issuer: str) -> str:
    """SERVER_CONFIG trusting two CI emulators (GitHub- and GitLab-shaped); `test` has its own
    audience, as TestPyPI is its own trust boundary next to PyPI."""
    config = SERVER_CONFIG.replace(
        '[indexes.test]\nprofile = "pypi"\n',
        f'[indexes.test]\nprofile = "pypi"\naudience = "{TEST_AUDIENCE}"\n',
    )
    config += f'\n[trusted-publishing]\naudience = "{AUDIENCE}"\n'
    config += f'\n[trusted-publishing.issuers]\n"{github_issuer}" = "github"\n'
    return config + f'"{gitlab_issuer}" = "gitlab"\n'


def start_trusted_server(folder: Path, github_issuer: str, gitlab_issuer: str) -> LiveServer:
    """A TLS server with `trusted_config`."""
    config = trusted_config(github_issuer, gitlab_issuer)
    return start_server(folder, tls=make_tls_files(folder), config_text=config)


def make_project(server: LiveServer, http: httpx.Client, name: str, index: str = "prod") -> str:
    """A project owned by `owner-<name>` (created by an API-token upload); the owner's token."""
    from tests.builders import build_sdist
    from tests.index.uploading import upload

    token = server.token(f"owner-{name}", index)
    answer = upload(http, index, token, *build_sdist(name, "0.0.1"))
    assert answer.status_code == 200, answer.text
    return token


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A local GitHub-shaped OIDC issuer (the CI emulator) for Trusted Publishing tests."""
    with Emulator(tmp_path_factory.mktemp("emulator-keys"), port=free_port()) as running:
        yield running


@pytest.fixture(scope="session")
def gitlab_ci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A second issuer, trusted as a self-managed GitLab instance."""
    with Emulator(tmp_path_factory.mktemp("gitlab-keys"), port=free_port()) as running:
        yield running


PUBLIC_URL = "https://pypi.example.com/keyless"


@pytest.fixture(scope="session")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server told it is reached at PUBLIC_URL: a proxy strips `/keyless` before us."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KEYLESS_PUBLIC_URL", PUBLIC_URL)
        live = start_server(tmp_path_factory.mktemp("proxied"))
    yield live
    stop_server(live)


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return client_env(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def _stop_shared_services() -> Iterator[None]:
    """Stops, at the session's end, the servers started on first use (tests/backends.py)."""
    yield
    from tests import backends

    backends.stop_shared()
    release_ports()


@pytest.fixture(scope="session")
def postgresql() -> PostgreSQL:
    """A real PostgreSQL server for the session (tests/pg.py); `new_database()` per test."""
    from tests.pg import shared_postgresql

    return shared_postgresql()
