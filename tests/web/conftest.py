"""Fixtures for the web UI: a TLS server that trusts the CI emulator, users, projects, a browser."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.ci.emulator import Emulator
from keyless.index.accounts import Accounts
from keyless.store.db import open_database
from tests.builders import build_sdist, build_wheel
from tests.conftest import (
    SERVER_CONFIG,
    LiveServer,
    make_tls_files,
    start_server,
    stop_server,
)
from tests.index.uploading import upload

PASSWORD = "correct horse battery"
HTML = {"Accept": "text/html"}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory, emulator: Emulator) -> Iterator[LiveServer]:
    """A TLS server (cookies must be Secure) that trusts the emulator as a GitHub issuer."""
    folder = tmp_path_factory.mktemp("web-server")
    config = SERVER_CONFIG + f'\n[trusted-publishing.issuers]\n"{emulator.issuer}" = "github"\n'
    live = start_server(folder, tls=make_tls_files(folder), config_text=config)
    yield live
    stop_server(live)


def make_admin(server: LiveServer, name: str) -> str:
    # An earlier test of this session may have made it already.
    with contextlib.suppress(ValueError):
        Accounts(open_database(server.database)).create_user(name, PASSWORD, is_admin=True)
    return name


def make_project(
    server: LiveServer,
    owner: str,
    name: str,
    versions: tuple[str, ...] = ("1.0.0",),
    metadata: dict[str, Any] | None = None,
) -> None:
    """`owner` owns project `name` with these releases (an sdist and a wheel each)."""
    token = server.token(owner, "prod")
    with server.client() as client:
        for version in versions:
            for filename, data in (
                build_sdist(name, version, metadata=metadata),
                build_wheel(name, version, metadata=metadata),
            ):
                answer = upload(client, "prod", token, filename, data)
                assert answer.status_code == 200, answer.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: httpx.Client, username: str, password: str = PASSWORD) -> str:
    """Sign `client` in through the form; returns the session's CSRF token."""
    form = client.get("/account/login", headers=HTML)
    answer = client.post(
        "/account/login",
        data={
            "csrf_token": csrf_of(form.text),
            "username": username,
            "password": password,
            "next": "/account/tokens",
        },
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/account/tokens", headers=HTML).text)


# Per module, not per session: Playwright's sync API keeps an asyncio loop running in the main
# thread while it lives, so a later test of another module that runs one of its own
# (`asyncio.run`, tests/store/test_blobs.py) would fail, depending on which tests a pytest-xdist
# worker happened to run before it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (`make test` installs it)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("chromium is missing: install Debian's chromium (scripts/ensure-chromium.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Any, ui_server: LiveServer) -> Iterator[Any]:
    # The server's certificate comes from a throwaway CA the browser does not know.
    ctx = browser.new_context(
        base_url=ui_server.url, ignore_https_errors=True, viewport={"width": 1280, "height": 900}
    )
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
