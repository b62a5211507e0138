"""Debian's nginx for the tests: an ordinary process on a private port, in the foreground, with
all its files in the test's folder, started and stopped by its process id.

`launch` wraps one of the project's site files (deploy/nginx/*.conf, with the test's addresses
put in) in the main configuration nginx needs; tests/static_nginx.py and
tests/deploy/test_nginx_workers.py wait for it in their own way (a port, a health check).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

MAIN = """
{user}
worker_processes {workers};
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {access_log};
    client_body_temp_path {folder}/tmp/body;
    proxy_temp_path {folder}/tmp/proxy;
    fastcgi_temp_path {folder}/tmp/fastcgi;
    uwsgi_temp_path {folder}/tmp/uwsgi;
    scgi_temp_path {folder}/tmp/scgi;
    include {site};
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        # Missing is a failure, not a skip: `make test` installs it (scripts/ensure-nginx.sh).
        pytest.fail(
            "nginx is missing: run `bash scripts/ensure-nginx.sh` (or apt-get install nginx)"
        )
    return found


def launch(
    folder: Path, site: Path, *, workers: int = 1, access_log: bool = False
) -> subprocess.Popen[bytes]:
    """nginx with `site` included in its `http` block; its output goes to folder/nginx.out."""
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / "tmp" / name).mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers would switch to `nobody`, which can neither enter pytest's
    # folders nor read the blobs (readable by keyless' user only, as a deployment has them).
    user = "user root;" if os.geteuid() == 0 else ""
    main = folder / "nginx.conf"
    main.write_text(
        MAIN.format(
            user=user,
            workers=workers,
            folder=folder,
            site=site,
            access_log=f"{folder}/access.log" if access_log else "off",
        ),
        encoding="utf-8",
    )
    with (folder / "nginx.out").open("wb") as out:
        return subprocess.Popen(
            [nginx_binary(), "-p", str(folder), "-c", str(main)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # SIGTERM to the master: it stops its workers
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def errors(folder: Path) -> str:
    """What nginx said: its output and its error log."""
    return "\n".join(
        (folder / name).read_text(errors="replace")
        for name in ("nginx.out", "error.log")
        if (folder / name).exists()
    )
