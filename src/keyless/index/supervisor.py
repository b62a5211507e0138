"""`keyless serve --workers N`: N server processes on one listening socket, kept running.

The supervisor binds the address itself and starts each worker as a new `keyless serve`
process (the same arguments) that serves the inherited socket (`--listen-fd`): the kernel
hands each new connection to one of the processes accepting on it. New processes, not forks:
a worker builds its own app, engine and threads from nothing, so nothing that is unsafe
across fork() (SQLite connections, locks held by threads) is ever shared. TLS is each
worker's own (the same certificate files).

It restarts a worker that dies, and stops all of them on SIGTERM or SIGINT (Ctrl-C in a
terminal also reaches the workers, which stop the way a single server does); a worker whose
supervisor died (SIGKILL, out of memory) stops too. Workers that
keep dying right after their start (a setting that cannot work, a database that refuses)
are not restarted forever: the supervisor stops and says so.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

# A worker that exits sooner than this after its start failed to start.
STARTUP_SECONDS = 5.0
# Failed starts in a row after which the supervisor gives up.
MAX_FAILED_STARTS = 5
# How long stopping workers get to finish their requests before they are killed.
STOP_SECONDS = 30.0
BACKLOG = 2048  # uvicorn's default


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    started: float


def listening_socket(host: str, port: int) -> socket.socket:
    """The address bound and listening, inheritable by the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


# Set in each worker's environment: the supervisor's process id.
SUPERVISOR_VARIABLE = "KEYLESS_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_supervisor() -> None:
    """In a worker: be sent SIGTERM when the supervisor dies, however it dies (a SIGKILL
    gives it no chance to stop its workers, which would keep serving, unsupervised)."""
    supervisor = os.environ.get(SUPERVISOR_VARIABLE, "")
    if not sys.platform.startswith("linux") or not supervisor.isdigit():
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(supervisor):  # it died before the line above
        sys.exit(0)


def worker_command(argv: Sequence[str], fd: int) -> list[str]:
    """`keyless serve` with these arguments, serving the socket `fd` as one worker."""
    return [sys.executable, "-m", "keyless", *argv, "--workers", "1", "--listen-fd", str(fd)]


def supervise(argv: Sequence[str], host: str, port: int, count: int) -> int:
    """Run `count` workers of `keyless serve argv` on host:port until told to stop.

    Returns the exit status: 0 when stopped by a signal, 1 when workers kept failing to start.
    """
    sock = listening_socket(host, port)
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    command = worker_command(argv, sock.fileno())
    environment = {**os.environ, SUPERVISOR_VARIABLE: str(os.getpid())}

    def start() -> Worker:
        process = subprocess.Popen(command, pass_fds=(sock.fileno(),), env=environment)
        return Worker(process, time.monotonic())

    workers = [start() for _ in range(count)]
    failed_starts = 0
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for slot, worker in enumerate(workers):
                code = worker.process.poll()
                if code is None or stopping:
                    continue
                lived = time.monotonic() - worker.started
                failed_starts = failed_starts + 1 if lived < STARTUP_SECONDS else 0
                if failed_starts >= MAX_FAILED_STARTS:
                    print(
                        f"keyless: workers exited {failed_starts} times in a row within "
                        f"{STARTUP_SECONDS:g} s of starting (last exit status {code}); "
                        "stopping. Their output above says why.",
                        file=sys.stderr,
                        flush=True,
                    )
                    stopping, status = True, 1
                    break
                print(
                    f"keyless: worker {worker.process.pid} exited (status {code}) after "
                    f"{lived:.0f} s; starting another",
                    file=sys.stderr,
                    flush=True,
                )
                workers[slot] = start()
    finally:
        _stop_all(workers)
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _stop_all(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
