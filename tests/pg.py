"""A real PostgreSQL server for the tests, from Debian's packages (scripts/ensure-postgresql.sh).

`start_postgresql` runs `initdb` and then `postgres` itself (no cluster manager, no service) in
a temporary folder, listening on a free port of 127.0.0.1 only, with password authentication,
so a wrong password is refused as in production. PostgreSQL refuses to run as root: when the
tests do, the server runs as the unprivileged `keyless-test` user the script creates (or
`nobody`), in a folder that user owns. It is stopped by its process id; each test or module
takes a database of its own (`PostgreSQL.new_database`), so tests stay independent.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from keyless.store.changes import host_signal_path
from tests.conftest import free_port

SUPERUSER = "keyless"
# Durability is not under test here: these make a test database as fast as memory.
FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def server_binaries() -> Path:
    """The newest bin/ folder of Debian's PostgreSQL packages; a clear failure when none."""
    root = os.environ.get("KEYLESS_PG_ROOT", "/usr/lib/postgresql")
    found = sorted(
        (Path(p).parent for p in glob.glob(f"{root}/*/bin/postgres")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError(
            f"PostgreSQL's server binaries are missing (no {root}/*/bin/postgres): run "
            "`bash scripts/ensure-postgresql.sh` as root, or `apt-get install postgresql`."
        )
    return found[-1]


def _run_as() -> pwd.struct_passwd | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("KEYLESS_PG_USER", "keyless-test"), "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no user to run PostgreSQL as: run scripts/ensure-postgresql.sh as root")


@dataclass
class PostgreSQL:
    host: str
    port: int
    password: str
    folder: Path
    process: subprocess.Popen[bytes]
    _names: set[str] = field(default_factory=set)
    _relaunch: Callable[[], subprocess.Popen[bytes]] = field(default=lambda: _not_set(), repr=False)

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql+psycopg://{SUPERUSER}:{secret}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            dbname=database,
            autocommit=True,
        )

    def new_database(self, hint: str = "test") -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"kl_{''.join(c for c in hint.lower() if c.isalnum())[:40]}_{secrets.token_hex(4)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a name made here, not given
        self._names.add(name)
        return self.url(name)

    def log(self) -> str:
        return (self.folder / "server.log").read_text(encoding="utf-8", errors="replace")

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited while starting:\n{self.log()}")
            try:
                self.connect().close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not answer in 60 s:\n{self.log()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (its data stays), as an outage or a restart does."""
        _stop(self.process)

    def start_again(self) -> None:
        """Start the stopped server on the same folder and port."""
        self.process = self._relaunch()
        self.wait_until_up()


def _as_user(user: pwd.struct_passwd | None, command: list[str]) -> list[str]:
    if user is None:
        return command
    # setpriv execs the command itself: the Popen's pid is the server's, so stopping it by pid
    # stops PostgreSQL (runuser or su would stay in between as a parent).
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--",
        *command,
    ]


@contextmanager
def start_postgresql() -> Iterator[PostgreSQL]:
    binaries = server_binaries()
    user = _run_as()
    # Not under pytest's tmp folder: that is private to root, and the server's user must reach
    # its own files.
    folder = Path(tempfile.mkdtemp(prefix="keyless-pg-"))
    password = secrets.token_hex(16)
    process: subprocess.Popen[bytes] | None = None
    server: PostgreSQL | None = None
    try:
        (folder / "pwfile").write_text(password + "\n", encoding="utf-8")
        if user is not None:
            os.chown(folder, user.pw_uid, user.pw_gid)
            os.chown(folder / "pwfile", user.pw_uid, user.pw_gid)
        initdb = [
            str(binaries / "initdb"),
            "-D",
            str(folder / "data"),
            "-U",
            SUPERUSER,
            f"--pwfile={folder / 'pwfile'}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        done = subprocess.run(
            _as_user(user, initdb), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        port = free_port()
        process = _launch(binaries, user, folder, port)
        server = PostgreSQL("127.0.0.1", port, password, folder, process)
        server._relaunch = lambda: _launch(binaries, user, folder, port)
        server.wait_until_up()
        yield server
    finally:
        if server is not None:
            _stop(server.process)  # the current one: a test may have started it again
            for name in {*server._names, "postgres"}:  # what keyless made per database, outside
                Path(host_signal_path(server.url(name))).unlink(missing_ok=True)
        elif process is not None:
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _not_set() -> subprocess.Popen[bytes]:
    raise RuntimeError("this PostgreSQL was not started by start_postgresql")


def _launch(
    binaries: Path, user: pwd.struct_passwd | None, folder: Path, port: int
) -> subprocess.Popen[bytes]:
    command = [
        str(binaries / "postgres"),
        "-D",
        str(folder / "data"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-k",
        str(folder),  # its Unix socket, in its own folder rather than /var/run/postgresql
        "-c",
        "max_connections=300",
        *FAST,
    ]
    with (folder / "server.log").open("ab") as log:
        if user is not None:
            os.chown(folder / "server.log", user.pw_uid, user.pw_gid)
        return subprocess.Popen(_as_user(user, command), stdout=log, stderr=subprocess.STDOUT)


def shared_postgresql() -> PostgreSQL:
    """The session's one server, started by whatever needs it first (the `postgresql` fixture,
    or `start_server` on the PostgreSQL backend set; tests/backends.py stops it)."""
    from tests.backends import shared

    return shared("postgresql", start_postgresql)


def dump(url: str) -> bytes:
    """`pg_dump` of the database a SQLAlchemy URL names: every row, as the server keeps it."""
    libpq_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    done = subprocess.run(
        [str(server_binaries() / "pg_dump"), "--data-only", f"--dbname={libpq_url}"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout
