"""Descriptions are rendered bounded in size, time and memory, without holding the server.

Before, a README was rendered inside the server under the GIL: 100 KB of repeated Markdown
headings took 20 s, and no other request was answered meanwhile. These servers have small
limits, so hostile descriptions are refused quickly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from keyless.store import db
from tests.builders import build_wheel
from tests.conftest import SERVER_CONFIG, LiveServer, start_server, stop_server

from .uploading import upload

RENDER_TIMEOUT = 1  # seconds, [limits] render-timeout of the server below
MAX_DESCRIPTION = 256 * 1024
LIMITS = f"""
[limits]
render-timeout = {RENDER_TIMEOUT}
max-description-size = "256KiB"
render-workers = 2
"""
# The shape: ~100 KB of repeated Markdown headings, quadratic to render. Measured in
# one process with readme_renderer 44 (comrak) on the shared 2-core test machine: 20,000 bytes
# 1.4 s, these 100,000 bytes 88 s (`m.render("# a\n" * 25000)` after
# `import readme_renderer.markdown as m`); the issue measured 20 s.
SLOW_MARKDOWN = "# a\n" * 25_000
README = """# Demo

A *normal* README, with `code`, [a link](https://example.com) and a table.

| a | b |
|---|---|
| 1 | 2 |

```python
print("hello")
```
"""
# Bound for a health check answered while a description renders: generous for a loaded 2-core
# machine (measured: 11 ms at most); rendered in the server, it waited for the whole render
# (past httpx's 30 s timeout).
HEALTH_BOUND = 1.0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(
        tmp_path_factory.mktemp("render-limits"), config_text=SERVER_CONFIG + LIMITS
    )
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def token(limited: LiveServer) -> str:
    return limited.token("render-owner", "prod")


@pytest.fixture
def limited_http(limited: LiveServer) -> Iterator[httpx.Client]:
    with limited.client() as client:
        yield client


def wheel(name: str, description: str, content_type: str = "text/markdown") -> tuple[str, bytes]:
    return build_wheel(
        name,
        "1.0",
        metadata={"description": description, "description_content_type": content_type},
    )


def while_running(
    work: Callable[[], httpx.Response], client: httpx.Client
) -> tuple[httpx.Response, float, list[float]]:
    """Run `work` on a thread; meanwhile time /_/health requests back to back.

    Returns work's answer, how long it took, and the health checks' latencies.
    """
    answer: list[httpx.Response] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: answer.append(work()))
    thread.start()
    latencies: list[float] = []
    while thread.is_alive():
        sent = time.monotonic()
        assert client.get("/_/health").status_code == 200
        latencies.append(time.monotonic() - sent)
        time.sleep(0.05)
    thread.join()
    return answer[0], time.monotonic() - started, latencies


def not_stored(client: httpx.Client, project: str) -> None:
    assert client.get(f"/prod/simple/{project}/").status_code == 404
    assert client.get(f"/prod/pypi/{project}/json").status_code == 404


def test_a_description_that_renders_too_slowly_is_refused_and_the_server_keeps_answering(
    limited: LiveServer, token: str
) -> None:
    filename, data = wheel("slow-readme", SLOW_MARKDOWN)
    with limited.client() as client, limited.client() as uploader:
        refused, took, latencies = while_running(
            lambda: upload(uploader, "prod", token, filename, data), client
        )
        assert refused.status_code == 400, refused.text
        assert "The description failed to render within 1 second" in refused.text
        # The deadline, plus waiting for a worker that may still be starting.
        assert took < RENDER_TIMEOUT + 5, took
        assert len(latencies) >= 3, latencies  # health checks were sent during the render
        assert max(latencies) < HEALTH_BOUND, latencies
        not_stored(client, "slow-readme")

        # The same description again is refused from the cache: it is not rendered again.
        sent = time.monotonic()
        again = upload(uploader, "prod", token, filename, data)
        assert again.status_code == 400
        assert "The description failed to render within 1 second" in again.text
        assert time.monotonic() - sent < RENDER_TIMEOUT

        # The killed worker was replaced: a normal README renders again.
        assert upload(uploader, "prod", token, *wheel("after-slow", README)).status_code == 200


def test_a_description_over_the_size_limit_is_refused_before_rendering(
    token: str, limited_http: httpx.Client
) -> None:
    http = limited_http
    # Slow to render as well: refused at once with the size message, so it was not rendered.
    description = SLOW_MARKDOWN.replace("# a", "# z") * 3
    assert len(description) > MAX_DESCRIPTION
    filename, data = wheel("big-readme", description)
    sent = time.monotonic()
    refused = upload(http, "prod", token, filename, data)
    assert time.monotonic() - sent < RENDER_TIMEOUT
    assert refused.status_code == 400, refused.text
    size = len(description.encode())
    assert f"The description is {size / 1024:.1f} KiB ({size:,} bytes)" in refused.text
    assert "this server accepts descriptions of at most 256.0 KiB" in refused.text
    assert "Shorten the README" in refused.text
    not_stored(http, "big-readme")


def test_a_normal_readme_renders_on_upload_and_on_its_page(
    token: str, limited_http: httpx.Client
) -> None:
    http = limited_http
    assert upload(http, "prod", token, *wheel("normal-readme", README)).status_code == 200
    page = http.get("/prod/project/normal-readme/", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert '<h1 id="user-content-demo">Demo' in page.text
    assert "<em>normal</em>" in page.text
    assert "<table>" in page.text


def test_a_stored_description_too_slow_to_render_does_not_hold_its_page_or_the_server(
    limited: LiveServer, token: str
) -> None:
    """A release stored before the server had limits: its page shows the text unrendered."""
    with limited.client() as client, limited.client() as viewer:
        assert upload(client, "prod", token, *wheel("old-readme", README)).status_code == 200
        slow = SLOW_MARKDOWN.replace("# a", "# b")  # not in the server's cache
        with db.writing(limited.engine()) as conn:
            project = select(db.projects.c.id).where(db.projects.c.name == "old-readme")
            release = conn.execute(
                select(db.releases.c.id, db.releases.c.info).where(
                    db.releases.c.project_id == project.scalar_subquery()
                )
            ).one()
            conn.execute(
                update(db.releases)
                .where(db.releases.c.id == release.id)
                .values(info={**release.info, "description": slow})
            )
        page, took, latencies = while_running(
            lambda: viewer.get("/prod/project/old-readme/", headers={"accept": "text/html"}),
            client,
        )
        assert page.status_code == 200
        assert "# b<br># b<br>" in page.text  # escaped text, not rendered headings
        assert took < RENDER_TIMEOUT + 5, took
        assert max(latencies) < HEALTH_BOUND, latencies


def test_slow_and_normal_uploads_at_once_repeatedly(limited: LiveServer, token: str) -> None:
    """20 trials of two slow and two normal uploads released together (the normal ones with
    one README, as a release's wheels): each slow one is refused, each normal one waits for a
    worker if both are busy and is stored, and the pool is back to its two workers (killed
    ones replaced, none leaked)."""
    slow = SLOW_MARKDOWN[: len(SLOW_MARKDOWN) // 2]  # 50 KB: still many times the deadline

    def send(barrier: threading.Barrier, file: tuple[str, bytes]) -> httpx.Response:
        with limited.client() as client:
            barrier.wait()
            return upload(client, "prod", token, *file)

    for trial in range(20):
        # Every description new to the server: none is answered from its cache.
        files = {
            f"race-slow-{trial}-{n}": wheel(
                f"race-slow-{trial}-{n}", slow.replace("# a", f"# {trial}-{n}")
            )
            for n in range(2)
        }
        readme = f"{README}\nTrial {trial}.\n"
        files |= {f"race-ok-{trial}-{n}": wheel(f"race-ok-{trial}-{n}", readme) for n in range(2)}
        barrier = threading.Barrier(len(files))
        with ThreadPoolExecutor(len(files)) as pool:
            sent = {name: pool.submit(send, barrier, file) for name, file in files.items()}
        answers = {name: future.result() for name, future in sent.items()}
        for name, answer in answers.items():
            if "slow" in name:
                assert answer.status_code == 400, (trial, name, answer.text)
                assert "failed to render within 1 second" in answer.text
            else:
                assert answer.status_code == 200, (trial, name, answer.text)
        assert len(render_workers(limited.process.pid)) == 2, trial


MEMORY_LIMITS = """
[limits]
render-timeout = 60
render-memory = "96MiB"
render-workers = 1
"""


def test_a_description_that_needs_too_much_memory_is_refused(tmp_path: Path) -> None:
    # ~830 KB of reStructuredText list items: 18 s and 200 MB to render, without a cap.
    rst = "".join(f"* item {i} with *emphasis* and ``code``\n" for i in range(20_000))
    live = start_server(tmp_path, config_text=SERVER_CONFIG + MEMORY_LIMITS)
    try:
        token = live.token("memory-owner", "prod")
        with live.client() as client:
            refused = upload(client, "prod", token, *wheel("big-rst", rst, "text/x-rst"))
            assert refused.status_code == 400, refused.text
            assert "The description failed to render" in refused.text
            # "within 96 MiB of memory"; or, should a renderer abort rather than raise
            # MemoryError, "stopped while rendering it (it may need more than 96 MiB ...)".
            assert "96 MiB of memory" in refused.text
            not_stored(client, "big-rst")
            # The worker that hit the cap was replaced.
            assert upload(client, "prod", token, *wheel("small-rst", "Title\n=====\n")).is_success
    finally:
        stop_server(live)


def render_workers(server_pid: int) -> list[int]:
    """The PIDs of the server's render worker processes (its children running them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server_pid and b"keyless.index.render_worker" in command:
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited, not yet reaped by whoever inherited it


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("stop", ["terminate", "kill"])
def test_no_render_worker_outlives_the_server(tmp_path: Path, stop: str) -> None:
    """Stopped (SIGTERM) or killed (SIGKILL): the workers end with the server."""
    live = start_server(tmp_path, config_text=SERVER_CONFIG + LIMITS)
    try:
        token = live.token("orphan-owner", "prod")
        with live.client() as client:
            assert upload(client, "prod", token, *wheel("orphan-check", README)).is_success
        workers = render_workers(live.process.pid)
        assert len(workers) == 2, workers
        # One killed from outside while idle is replaced, and uploads go on.
        os.kill(workers[0], signal.SIGKILL)
        with live.client() as client:
            for n in range(3):
                answer = upload(client, "prod", token, *wheel(f"orphan-{n}", f"# {n}\n"))
                assert answer.is_success, answer.text
        workers = render_workers(live.process.pid)
        assert len(workers) == 2, workers
    finally:
        if stop == "terminate":
            stop_server(live)
        else:
            live.process.kill()
            live.process.wait()
    assert wait_until(lambda: all(gone(pid) for pid in workers), 10), [
        pid for pid in workers if not gone(pid)
    ]
