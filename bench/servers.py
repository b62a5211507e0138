"""The servers compared: keyless, pypiserver, devpi-server, and nginx (static files, the ceiling).

Each is started on 127.0.0.1 with its own data folder, seeded with the same wheels, and stopped
by its PID when the scenario is done.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from . import procs
from .dists import Wheel, upload_fields
from .env import KEYLESS_PYTHON, ROOT, nginx_binary, venv_bin

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from keyless.config import Settings

INDEX = "bench"
USER = "bench"
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway account on a local benchmark server
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "text/html"


def post_upload(
    client: httpx.Client,
    url: str,
    wheel: Wheel,
    auth: httpx.Auth,
    headers: dict[str, str] | None = None,
) -> None:
    digests = {
        "md5_digest": hashlib.md5(wheel.data, usedforsecurity=False).hexdigest(),
        "sha256_digest": wheel.sha256,
        "blake2_256_digest": hashlib.blake2b(wheel.data, digest_size=32).hexdigest(),
    }
    fields = upload_fields(wheel.name, wheel.version, wheel.requires, digests)
    answer = client.post(
        url,
        data=_as_dict(fields),
        files={"content": (wheel.filename, wheel.data)},
        auth=auth,
        headers=headers,
    )
    if answer.status_code not in (200, 201):
        raise RuntimeError(
            f"upload of {wheel.filename} to {url}: {answer.status_code} {answer.text[:300]}"
        )


def _as_dict(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    mapping: dict[str, list[str]] = defaultdict(list)
    for key, value in fields:
        mapping[key].append(value)
    return dict(mapping)


def upload_all(
    url: str,
    wheels: Sequence[Wheel],
    auth: httpx.Auth,
    parallel: int = 4,
    headers: dict[str, str] | None = None,
) -> None:
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda w: post_upload(client, url, w, auth, headers), wheels))


class Server:
    name = "?"
    process: subprocess.Popen[bytes] | None = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"

    def simple_url(self, project: str | None = None) -> str:
        raise NotImplementedError

    @property
    def upload_url(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None:
            procs.stop(self.process)
            self.process = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


# ------------------------------------------------------------------------------------ keyless


class Keyless(Server):
    name = "keyless"

    def __init__(self, folder: Path, extra_config: str = "", src: Path | None = None) -> None:
        super().__init__(folder)
        # The src/ folder the server runs from: None = BENCH_KEYLESS_SRC if set, else this
        # checkout's (scenario 8 runs an older tree next to it).
        self.src = src
        self.data = folder / "data"
        self.config = folder / "keyless.toml"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f'[indexes.{INDEX}]\nprofile = "pypi"\nmax-file-size = "1GiB"\n'
            f'max-project-size = "1000GiB"\n{extra_config}',
            encoding="utf-8",
        )
        self.token = ""
        # Scenario 11: `serve --workers N`, and the cores (`taskset -c`) the server may use.
        self.workers = 1
        self.cpus: str | None = None

    def _settings(self) -> Settings:
        from keyless.config import load_settings

        return load_settings(self.config, environ={}, overrides={"data": str(self.data)})

    def prepare(self, bulk: Iterable[Wheel] = ()) -> None:
        """Create the index, a user and an API token; write `bulk` straight into the store."""
        from keyless.index.accounts import Accounts
        from keyless.index.indexes import IndexAdmin
        from keyless.store.db import open_database

        settings = self._settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = open_database(settings.database)
        IndexAdmin(engine).ensure_indexes(settings.indexes, update_existing=True)
        Accounts(engine).create_user(USER, PASSWORD)
        token = Accounts(engine).create_token(USER, INDEX)
        self.token = token.token
        bulk = list(bulk)
        if bulk:
            seed_keyless_store(engine, settings.blob_dir, INDEX, USER, bulk, token.id)
        engine.dispose()

    def start(self) -> None:
        command = [
            *(["taskset", "-c", self.cpus] if self.cpus else []),
            str(KEYLESS_PYTHON),
            "-m",
            "keyless",
            "serve",
            "--config",
            str(self.config),
            "--data",
            str(self.data),
            "--port",
            str(self.port),
            # Only when asked: a tree from before `--workers` (--keyless-src) runs too.
            *(["--workers", str(self.workers)] if self.workers > 1 else []),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "0"}
        src = self.src or os.environ.get("BENCH_KEYLESS_SRC")
        if src:
            # Another source tree of keyless (e.g. a worktree of an older commit), for
            # before/after figures in one run of the harness.
            env["PYTHONPATH"] = str(src)
        self.process = procs.start(command, self.log, env=env, cwd=ROOT)
        procs.wait_http(f"{self.base}/_/health", self.process, self.log, ok=lambda s: s == 200)

    def upload(self, wheels: Sequence[Wheel], parallel: int = 4) -> None:
        upload_all(self.upload_url, wheels, httpx.BasicAuth("__token__", self.token), parallel)

    @property
    def upload_url(self) -> str:
        return f"{self.base}/{INDEX}/legacy/"

    def simple_url(self, project: str | None = None) -> str:
        return f"{self.base}/{INDEX}/simple/" + (f"{project}/" if project else "")


def seed_keyless_store(
    engine: Engine,
    blob_dir: Path,
    index_name: str,
    username: str,
    wheels: Sequence[Wheel],
    token_id: int,
) -> None:
    """Bulk seeding: blobs written into the content-addressed store, and rows through the
    index's own write path (`keyless.index.releases.add_files`, as uploads and promotions) in
    one transaction — the rows an upload would have made, minus per-file fsyncs and checks."""
    from sqlalchemy import select

    from keyless.index.accounts import Identity, now
    from keyless.index.releases import Event, NewFile, NewRelease, Target, add_files
    from keyless.store import db

    from .dists import metadata_text

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = blob_dir / "sha256" / digest[:2] / digest[2:4] / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(data)
        return digest

    moment = now()
    with db.writing(engine) as conn:
        index_id = conn.execute(
            select(db.indexes.c.id).where(db.indexes.c.name == index_name)
        ).scalar_one()
        user_id = conn.execute(
            select(db.users.c.id).where(db.users.c.username == username)
        ).scalar_one()
        actor = Identity(user_id, username, token_id, index_id, projects=None)
        projects: dict[str, Target] = {}
        for wheel in wheels:
            target = projects.setdefault(wheel.name, Target(index_id, wheel.name))
            meta = metadata_text(wheel.name, wheel.version, wheel.requires).encode()
            new_file = NewFile(
                filename=wheel.filename,
                packagetype="bdist_wheel",
                python_version="py3",
                sha256=put(wheel.data),
                md5=hashlib.md5(wheel.data, usedforsecurity=False).hexdigest(),
                blake2_256=hashlib.blake2b(wheel.data, digest_size=32).hexdigest(),
                size=len(wheel.data),
                requires_python=">=3.8",
                metadata_sha256=hashlib.sha256(meta).hexdigest(),
                metadata=meta,
            )
            release = NewRelease(
                version=wheel.version,
                requires_python=">=3.8",
                summary=f"benchmark package {wheel.name}",
                info={"name": wheel.name, "version": wheel.version},
            )
            event = Event("bench_seed", {"filename": wheel.filename, "version": wheel.version})
            added = add_files(conn, target, release, [new_file], actor, [event], moment=moment)
            target.id = added.project_id


# --------------------------------------------------------------------------------- pypiserver


class PypiServer(Server):
    name = "pypiserver"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.packages = folder / "packages"
        self.packages.mkdir(parents=True, exist_ok=True)

    def prepare(self, bulk: Iterable[Wheel] = ()) -> None:
        # pypiserver's storage is a plain folder of files: seeding is writing them there.
        for wheel in bulk:
            (self.packages / wheel.filename).write_bytes(wheel.data)

    def start(self) -> None:
        command = [
            str(venv_bin("pypiserver") / "pypi-server"),
            "run",
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-a",
            ".",
            "-P",
            ".",
            "--disable-fallback",
            "--server",
            "auto",
            "--log-stream",
            "none",
            str(self.packages),
        ]
        self.process = procs.start(command, self.log)
        procs.wait_http(f"{self.base}/health", self.process, self.log)

    def upload(self, wheels: Sequence[Wheel], parallel: int = 4) -> None:
        upload_all(self.upload_url, wheels, httpx.BasicAuth("bench", "x"), parallel)

    @property
    def upload_url(self) -> str:
        return f"{self.base}/"

    def simple_url(self, project: str | None = None) -> str:
        return f"{self.base}/simple/" + (f"{project}/" if project else "")


# -------------------------------------------------------------------------------------- devpi


class Devpi(Server):
    name = "devpi"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.serverdir = folder / "server"

    def prepare(self, bulk: Iterable[Wheel] = ()) -> None:
        if not (self.serverdir / ".nodeinfo").exists():
            subprocess.run(
                [
                    str(venv_bin("devpi") / "devpi-init"),
                    "--serverdir",
                    str(self.serverdir),
                    "--no-root-pypi",
                    "--root-passwd",
                    "root-pw",
                ],
                check=True,
                capture_output=True,
            )
        self._bulk = list(bulk)

    def start(self) -> None:
        command = [
            str(venv_bin("devpi") / "devpi-server"),
            "--serverdir",
            str(self.serverdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--offline-mode",
        ]
        self.process = procs.start(command, self.log)
        procs.wait_http(f"{self.base}/+api", self.process, self.log, ok=lambda s: s == 200)
        self._ensure_index()
        if getattr(self, "_bulk", None):
            self.upload(self._bulk, parallel=8)
            self._bulk = []

    def _ensure_index(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            headers = {"Accept": "application/json", "Content-Type": "application/json"}
            if client.get(f"/{USER}/{INDEX}", headers=headers).status_code == 200:
                return
            client.put(f"/{USER}", json={"password": PASSWORD}, headers=headers)
            login = client.post(
                "/+login", json={"user": USER, "password": PASSWORD}, headers=headers
            )
            login.raise_for_status()
            token = login.json()["result"]["password"]
            auth = base64.b64encode(f"{USER}:{token}".encode()).decode()
            made = client.put(
                f"/{USER}/{INDEX}",
                json={"type": "stage", "bases": [], "volatile": True},
                headers={**headers, "X-Devpi-Auth": auth},
            )
            if made.status_code not in (200, 201):
                raise RuntimeError(
                    f"devpi: creating {USER}/{INDEX}: {made.status_code} {made.text}"
                )

    def upload(self, wheels: Sequence[Wheel], parallel: int = 4) -> None:
        upload_all(self.upload_url, wheels, httpx.BasicAuth(USER, PASSWORD), parallel)

    @property
    def upload_url(self) -> str:
        return f"{self.base}/{USER}/{INDEX}/"

    def simple_url(self, project: str | None = None) -> str:
        return f"{self.base}/{USER}/{INDEX}/+simple/" + (f"{project}/" if project else "")


# -------------------------------------------------------------------------------------- nginx


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {folder}/access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {folder}/tmp;
    proxy_temp_path {folder}/tmp;
    fastcgi_temp_path {folder}/tmp;
    uwsgi_temp_path {folder}/tmp;
    scgi_temp_path {folder}/tmp;
    types {{ }}
    server {{
        listen 127.0.0.1:{port};
        root {folder}/www;
        location /html/ {{ default_type text/html; }}
        location /json/ {{ default_type application/vnd.pypi.simple.v1+json; }}
    }}
}}
"""


class Nginx(Server):
    """nginx serving, as static files, the very bytes keyless serves: the ceiling."""

    name = "nginx"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.www = folder / "www"
        self.workers = 1  # worker_processes
        self.cpus: str | None = None  # `taskset -c` (scenario 11)

    def prepare(self, pages: dict[str, bytes]) -> None:
        """`pages`: path under www (e.g. html/simple/x/index.html) -> bytes."""
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        for path, data in pages.items():
            target = self.www / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (self.folder / "nginx.conf").write_text(
            NGINX_CONF.format(folder=self.folder, port=self.port, workers=self.workers)
        )

    def start(self) -> None:
        command = [nginx_binary(), "-c", str(self.folder / "nginx.conf"), "-p", str(self.folder)]
        if self.cpus:
            command = ["taskset", "-c", self.cpus, *command]
        self.process = procs.start(command, self.log)
        procs.wait_http(f"{self.base}/", self.process, self.log)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


# The static read path (issue 12): keyless' `[static] folder` served by nginx with the
# project's own site config, which takes the simple page's representation from `Accept`.
STATIC_SITE = ROOT / "deploy" / "nginx" / "static.conf"
STATIC_MAIN = """
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {folder}/access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {folder}/tmp;
    proxy_temp_path {folder}/tmp;
    fastcgi_temp_path {folder}/tmp;
    uwsgi_temp_path {folder}/tmp;
    scgi_temp_path {folder}/tmp;
    include {folder}/static.conf;
}}
"""


class StaticNginx(Server):
    """nginx serving keyless' static tree with deploy/nginx/static.conf, at keyless' paths."""

    name = "static tree"

    def __init__(self, folder: Path, root: Path) -> None:
        super().__init__(folder)
        self.root = root

    def start(self) -> None:
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        site = STATIC_SITE.read_text(encoding="utf-8")
        site = site.replace("@LISTEN@", f"127.0.0.1:{self.port}")
        site = site.replace("@STATIC_ROOT@", str(self.root.resolve()))
        (self.folder / "static.conf").write_text(site, encoding="utf-8")
        (self.folder / "nginx.conf").write_text(STATIC_MAIN.format(folder=self.folder))
        command = [nginx_binary(), "-c", str(self.folder / "nginx.conf"), "-p", str(self.folder)]
        self.process = procs.start(command, self.log)
        procs.wait_http(f"{self.base}/{INDEX}/simple/", self.process, self.log)

    def simple_url(self, project: str | None = None) -> str:
        return f"{self.base}/{INDEX}/simple/" + (f"{project}/" if project else "")


def clean(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    time.sleep(0)
