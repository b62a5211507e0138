"""Debian's nginx as an ordinary process on a private port, serving keyless' static tree with
the project's own config (deploy/nginx/static.conf), stopped by its PID."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests import nginx
from tests.conftest import free_port

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "static.conf"


class StaticNginx:
    """nginx serving `root` (keyless' static folder) at `url`."""

    def __init__(self, folder: Path, root: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        site = CONFIG.read_text(encoding="utf-8")
        site = site.replace("@LISTEN@", f"127.0.0.1:{self.port}")
        site = site.replace("@STATIC_ROOT@", str(root.resolve()))
        (folder / "static.conf").write_text(site, encoding="utf-8")
        self.process = nginx.launch(folder, folder / "static.conf")
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
        return nginx.errors(self.folder)

    def stop(self) -> None:
        nginx.stop(self.process)
