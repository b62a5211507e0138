"""The static read path: keyless keeps its pages, .metadata files and distributions in a folder
(`[static] folder`), and Debian's nginx serving ONLY that folder with deploy/nginx/static.conf
answers pip and uv as keyless would.

Each test drives keyless over HTTP (uploads, yanks, status) and reads the result through nginx.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer, client_env, start_server, stop_server
from tests.static_nginx import StaticNginx
from tests.web.conftest import make_admin, sign_in

from .uploading import upload

# The tree links each distribution to its blob in the folder, which nginx then serves; with
# the blobs in a bucket it holds none (nginx sends /files/ to keyless, as static.conf says),
# and tests/store/test_static_bucket.py covers the tree kept in a bucket.
pytestmark = pytest.mark.local_only

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
# What pip 24 and uv send for a simple page (both list JSON first).
PIP_ACCEPT = f"{JSON_TYPE}, {HTML_TYPE}; q=0.1, text/html; q=0.01"
ACCEPTS = {
    "pip": PIP_ACCEPT,
    "json only": JSON_TYPE,
    "pep 691 html": HTML_TYPE,
    "browser": "text/html,application/xhtml+xml,*/*;q=0.8",
    "none": None,
}
# The bound of "shows within a second" (issue 12), polled every 10 ms.
WITHIN = 1.0


class Site:
    def __init__(self, keyless: LiveServer, nginx: StaticNginx, static: Path) -> None:
        self.keyless = keyless
        self.nginx = nginx
        self.static = static
        self.dynamic = keyless.client()
        self.served = httpx.Client(base_url=nginx.url, timeout=30)
        self.delays: dict[str, float] = {}

    def token(self, project: str) -> str:
        return self.keyless.token(f"owner-{project}", "prod")

    def upload(self, token: str, filename: str, data: bytes) -> float:
        answer = upload(self.dynamic, "prod", token, filename, data)
        assert answer.status_code == 200, answer.text
        return time.monotonic()

    def owner_post(self, token: str, path: str, body: dict[str, str]) -> float:
        answer = self.dynamic.post(
            f"/prod/api/projects/{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        return time.monotonic()

    def wait_for(self, what: str, since: float, seen: Callable[[], bool]) -> float:
        """Poll nginx until `seen()`, at most WITHIN seconds after `since`; the delay."""
        while True:
            if seen():
                delay = time.monotonic() - since
                self.delays[what] = delay
                print(f"static tree: {what} seen through nginx after {delay * 1000:.0f} ms")
                return delay
            if time.monotonic() - since > WITHIN:
                pytest.fail(f"{what}: not served by nginx within {WITHIN} s")
            time.sleep(0.01)

    def json_page(self, path: str) -> dict[str, Any] | None:
        answer = self.served.get(path, headers={"Accept": JSON_TYPE})
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        return document

    def assert_same_pages(self, path: str) -> None:
        """nginx answers `path` with keyless' bytes and Content-Type for every Accept."""
        for label, accept in ACCEPTS.items():
            headers = {"Accept": accept} if accept else {}
            ours = self.dynamic.get(path, headers=headers)
            theirs = self.served.get(path, headers=headers)
            assert ours.status_code == theirs.status_code == 200, (label, theirs.text)
            assert theirs.content == ours.content, label
            assert theirs.headers["content-type"] == ours.headers["content-type"], label
            assert theirs.headers["vary"] == "Accept", label
            assert theirs.headers["cache-control"] == ours.headers["cache-control"], label
            # A conditional request of a cached page costs no body.
            again = self.served.get(
                path, headers={**headers, "If-None-Match": theirs.headers["etag"]}
            )
            assert again.status_code == 304, label


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("static-site")
    static = folder / "static"
    keyless = start_server(folder / "keyless", env={"KEYLESS_STATIC_FOLDER": str(static)})
    nginx: StaticNginx | None = None
    try:
        nginx = StaticNginx(folder / "nginx", static)
        made = Site(keyless, nginx, static)
        yield made
        made.dynamic.close()
        made.served.close()
    finally:
        if nginx is not None:
            nginx.stop()
        stop_server(keyless)


def file_urls(page: dict[str, Any] | None) -> dict[str, str]:
    return {f["filename"]: f["url"] for f in (page or {}).get("files", [])}


def test_an_upload_is_served_by_nginx_within_a_second_byte_for_byte(site: Site) -> None:
    token = site.token("static-alpha")
    wheel = build_wheel("static-alpha", "1.0")
    since = site.upload(token, *wheel)
    site.wait_for(
        "upload", since, lambda: wheel[0] in file_urls(site.json_page("/prod/simple/static-alpha/"))
    )
    sdist = build_sdist("static-alpha", "1.0")
    site.upload(token, *sdist)
    site.wait_for(
        "second upload",
        time.monotonic(),
        lambda: sdist[0] in file_urls(site.json_page("/prod/simple/static-alpha/")),
    )
    site.assert_same_pages("/prod/simple/static-alpha/")
    site.assert_same_pages("/prod/simple/")
    site.assert_same_pages("/test/simple/")  # an index without projects has its list too

    page = site.json_page("/prod/simple/static-alpha/")
    assert page is not None
    for entry in page["files"]:
        # The page's own URLs, fetched from nginx: the distribution and its PEP 658 metadata.
        served = site.served.get(entry["url"])
        assert served.status_code == 200, entry["url"]
        assert served.content == site.dynamic.get(entry["url"]).content
        assert served.headers["content-type"] == "application/octet-stream"
        if entry["core-metadata"]:
            metadata = site.served.get(entry["url"] + ".metadata")
            assert metadata.status_code == 200
            assert metadata.content == site.dynamic.get(entry["url"] + ".metadata").content
            assert metadata.headers["content-type"] == "text/plain; charset=utf-8"
    assert site.served.get("/prod/simple/no-such-project/").status_code == 404
    # Only the tree: uploads and the APIs are keyless' own.
    assert site.served.get("/prod/legacy/").status_code == 404
    assert site.served.get("/_json/prod/simple/").status_code == 404


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_pip_and_uv_install_through_nginx(site: Site, tmp_path: Path, tool: str) -> None:
    name = f"static-install-{tool}"
    token = site.token(name)
    # A dependency, so the client reads two pages and resolves through the tree alone.
    dep = build_wheel(f"{name}-dep", "2.0")
    dep_token = site.keyless.token(f"owner-{name}-dep", "prod")
    site.upload(dep_token, *dep)
    app = build_wheel(name, "1.0", metadata={"requires_dist": [f"{name}-dep>=2"]})
    since = site.upload(token, *app)
    site.wait_for(
        f"{tool} upload",
        since,
        lambda: app[0] in file_urls(site.json_page(f"/prod/simple/{name}/")),
    )
    target = tmp_path / "target"
    index = f"{site.nginx.url}/prod/simple/"
    if tool == "pip":
        command = [sys.executable, "-m", "pip", "install", "--no-cache-dir"]
    else:
        command = [sys.executable, "-m", "uv", "pip", "install", "--no-cache"]
        command += ["--python", sys.executable]
    command += ["--target", str(target), "--index-url", index, f"{name}==1.0"]
    done = subprocess.run(
        command, env=client_env(tmp_path), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    installed = {p.name for p in target.iterdir()}
    module = name.replace("-", "_")
    assert {f"{module}-1.0.dist-info", f"{module}_dep-2.0.dist-info"} <= installed


def test_a_yank_is_served_within_a_second(site: Site) -> None:
    token = site.token("static-yank")
    site.upload(token, *build_wheel("static-yank", "1.0"))
    since = site.owner_post(token, "static-yank/releases/1.0/yank", {"reason": "broken"})

    def yanked() -> bool:
        page = site.json_page("/prod/simple/static-yank/")
        return page is not None and [f["yanked"] for f in page["files"]] == ["broken"]

    site.wait_for("yank", since, yanked)
    site.assert_same_pages("/prod/simple/static-yank/")


def test_a_quarantined_project_disappears_from_the_tree(site: Site, tmp_path: Path) -> None:
    token = site.token("static-quarantine")
    wheel = build_wheel("static-quarantine", "1.0")
    since = site.upload(token, *wheel)
    site.wait_for(
        "upload before quarantine",
        since,
        lambda: wheel[0] in file_urls(site.json_page("/prod/simple/static-quarantine/")),
    )
    url = file_urls(site.json_page("/prod/simple/static-quarantine/"))[wheel[0]]
    assert site.served.get(url).status_code == 200
    since = site.owner_post(token, "static-quarantine/status", {"status": "quarantined"})

    def gone() -> bool:
        return not file_urls(site.json_page("/prod/simple/static-quarantine/"))

    site.wait_for("quarantine", since, gone)
    # PEP 792: its files are neither listed nor offered; the page says why, as keyless' does.
    site.assert_same_pages("/prod/simple/static-quarantine/")
    assert site.served.get(url).status_code == 404
    assert site.served.get(url + ".metadata").status_code == 404
    page = site.json_page("/prod/simple/static-quarantine/")
    assert page is not None
    assert page["project-status"]["status"] == "quarantined"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--no-cache-dir"),
            *("--target", str(tmp_path / "t"), "--index-url", f"{site.nginx.url}/prod/simple/"),
            "static-quarantine",
        ],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "No matching distribution" in done.stderr

    since = site.owner_post(token, "static-quarantine/status", {"status": "active"})
    site.wait_for("back from quarantine", since, lambda: not gone())
    assert site.served.get(url).status_code == 200


def test_static_rebuild_writes_the_tree_whole_and_removes_strays(site: Site) -> None:
    token = site.token("static-rebuild")
    wheel = build_wheel("static-rebuild", "1.0")
    since = site.upload(token, *wheel)
    site.wait_for(
        "upload before rebuild",
        since,
        lambda: wheel[0] in file_urls(site.json_page("/prod/simple/static-rebuild/")),
    )
    page = site.static / "prod" / "simple" / "static-rebuild" / "index.json"
    page.unlink()
    stray = site.static / "prod" / "simple" / "not-a-project" / "index.html"
    stray.parent.mkdir(parents=True)
    stray.write_text("left behind")
    forged = site.static / "files" / ("0" * 64) / "forged-1.0-py3-none-any.whl"
    forged.parent.mkdir(parents=True)
    forged.write_bytes(b"not a distribution any project offers")

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keyless",
            "static",
            "rebuild",
            "--data",
            str(site.keyless.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 removed" in done.stdout, done.stdout
    assert not stray.exists()
    assert not stray.parent.exists()
    assert not forged.exists()
    assert page.exists()
    site.assert_same_pages("/prod/simple/static-rebuild/")


def test_static_rebuild_without_a_folder_says_what_to_set(tmp_path: Path) -> None:
    server = start_server(tmp_path / "plain")
    stop_server(server)
    done = subprocess.run(
        [sys.executable, "-m", "keyless", "static", "rebuild", "--data", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "KEYLESS_STATIC_FOLDER" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_an_index_made_in_the_web_ui_is_in_the_tree_at_once(site: Site) -> None:
    with site.keyless.client() as admin:
        csrf = sign_in(admin, make_admin(site.keyless, "static-admin"))
        made = admin.post(
            "/admin/indexes", data={"csrf_token": csrf, "name": "static-new", "profile": "pypi"}
        )
        assert made.status_code == 303, made.text
    since = time.monotonic()
    site.wait_for("new index", since, lambda: site.json_page("/static-new/simple/") is not None)
    site.assert_same_pages("/static-new/simple/")


def test_the_server_writes_its_tree_whole_when_it_starts(tmp_path: Path) -> None:
    static = tmp_path / "static"
    stray = static / "prod" / "simple" / "gone" / "index.html"
    stray.parent.mkdir(parents=True)
    stray.write_text("a project from before a restore")
    server = start_server(tmp_path / "keyless", env={"KEYLESS_STATIC_FOLDER": str(static)})
    try:
        deadline = time.monotonic() + 10
        while stray.exists() or not (static / "prod" / "simple" / "index.json").exists():
            assert time.monotonic() < deadline, "no rebuild at start: " + str(
                sorted(p.relative_to(static).as_posix() for p in static.rglob("*"))
            )
            time.sleep(0.02)
        with server.client() as client:
            listing = client.get("/prod/simple/", headers={"Accept": JSON_TYPE}).content
        assert (static / "prod" / "simple" / "index.json").read_bytes() == listing
    finally:
        stop_server(server)


def test_a_promotion_is_served_and_a_file_stays_while_one_index_still_offers_it(
    site: Site,
) -> None:
    name = "static-promo"
    test_token = site.keyless.token(f"owner-{name}", "test")
    wheel = build_wheel(name, "1.0")
    answer = upload(site.dynamic, "test", test_token, *wheel)
    assert answer.status_code == 200, answer.text
    prod_token = site.keyless.token(f"owner-{name}", "prod")
    promoted = site.dynamic.post(
        f"/test/api/projects/{name}/releases/1.0/promote",
        json={"to": "prod"},
        headers={"Authorization": f"Bearer {prod_token}", "Accept": "application/json"},
    )
    assert promoted.status_code == 200, promoted.text
    since = time.monotonic()
    site.wait_for(
        "promotion", since, lambda: wheel[0] in file_urls(site.json_page(f"/prod/simple/{name}/"))
    )
    site.assert_same_pages(f"/prod/simple/{name}/")
    url = file_urls(site.json_page(f"/prod/simple/{name}/"))[wheel[0]]

    # Quarantined on `test`, the same bytes are still offered by `prod` at the same URL.
    quarantined = site.dynamic.post(
        f"/test/api/projects/{name}/status",
        json={"status": "quarantined"},
        headers={"Authorization": f"Bearer {test_token}", "Accept": "application/json"},
    )
    assert quarantined.status_code == 200, quarantined.text
    since = time.monotonic()
    site.wait_for(
        "quarantine on one index",
        since,
        lambda: not file_urls(site.json_page(f"/test/simple/{name}/")),
    )
    site.assert_same_pages(f"/test/simple/{name}/")
    assert site.served.get(url).status_code == site.dynamic.get(url).status_code == 200
