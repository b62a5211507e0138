"""Debian's nginx as an ordinary process on a private port, serving keyless' static tree with
the project's own config (deploy/nginx/static.conf), stopped by its PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "static.conf"

MAIN = """
{user}
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {folder}/tmp;
    proxy_temp_path {folder}/tmp;
    fastcgi_temp_path {folder}/tmp;
    uwsgi_temp_path {folder}/tmp;
    scgi_temp_path {folder}/tmp;
    include {folder}/static.conf;
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        # Missing is a failure, not a skip: `make test` installs it (scripts/ensure-nginx.sh).
        pytest.fail(
            "nginx is missing: run `bash scripts/ensure-nginx.sh` (or apt-get install nginx)"
        )
    return found


class StaticNginx:
    """nginx serving `root` (keyless' static folder) at `url`."""

    def __init__(self, folder: Path, root: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        site = CONFIG.read_text(encoding="utf-8")
        site = site.replace("@LISTEN@", f"127.0.0.1:{self.port}")
        site = site.replace("@STATIC_ROOT@", str(root.resolve()))
        (folder / "static.conf").write_text(site, encoding="utf-8")
        # As root, nginx's workers would become `nobody`; they run as keyless' user instead,
        # as the config's comment asks of a deployment (the blobs are readable by it only).
        user = "user root;" if os.geteuid() == 0 else ""
        (folder / "nginx.conf").write_text(MAIN.format(user=user, folder=folder), encoding="utf-8")
        command = [nginx_binary(), "-c", str(folder / "nginx.conf"), "-p", str(folder)]
        self.log = (folder / "nginx.out").open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.errors()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not listen in 10 s:\n{self.errors()}") from None
                time.sleep(0.05)

    def errors(self) -> str:
        parts = []
        for name in ("nginx.out", "error.log"):
            path = self.folder / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM to the master: it stops its workers
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
