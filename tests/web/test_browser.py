"""The web UI in a real browser (headless Chromium driven by Playwright), against a TLS server.

Each test opens its own browser context (its own cookies); screenshots of the key pages go to
test-output/screenshots/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from keyless.ci.emulator import Emulator, JobClaims
from tests.builders import build_sdist, build_wheel
from tests.conftest import LiveServer, client_env, trust

from .conftest import PASSWORD, make_admin, make_project, screenshot

SHA = "0123456789abcdef0123456789abcdef01234567"
SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
# Every visible form control without an accessible label (a <label for> or aria-label).
UNLABELLED = """
() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label'))
  .map((e) => e.name || e.id)
"""


def sign_in(page: Any, username: str) -> None:
    page.goto("/account/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()


def post_status(page: Any, click: Any) -> int:
    """Click something that submits a form; the status of the POST's answer."""
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        click()
    page.wait_for_load_state()
    return int(answer.value.status)


# --------------------------------------------------------------------------- publishers


def test_add_fix_list_publish_and_remove_a_github_publisher(
    context: Any, ui_server: LiveServer, emulator: Emulator, tmp_path: Path
) -> None:
    make_project(ui_server, "alice", "webdemo", versions=("0.1.0",))
    page = context.new_page()
    sign_in(page, "alice")
    page.goto("/prod/project/webdemo/settings/publishing")
    screenshot(page, "publishing-empty")
    assert page.evaluate(UNLABELLED) == []

    # A workflow without .yml: refused, with the message next to that field.
    page.locator("#f-owner").fill("octo-org")
    page.locator("#f-repository").fill("webdemo")
    page.locator("#f-workflow").fill("release")
    page.locator("#f-environment").fill("pypi")
    page.locator("#f-issuer").fill(emulator.issuer)
    status = post_status(page, page.get_by_role("button", name="Add publisher").click)
    assert status == 400
    error = page.locator("#field-workflow .field-error")
    expect(error).to_have_text("must end with .yml or .yaml")
    expect(page.locator("#f-workflow")).to_have_attribute("aria-invalid", "true")
    described = page.locator("#f-workflow").get_attribute("aria-describedby") or ""
    assert "f-workflow-error" in described.split()
    expect(page.locator("#field-owner .field-error")).to_have_count(0)
    expect(page.locator("#f-workflow")).to_have_value("release")  # typed values are kept
    screenshot(page, "publishing-field-error")

    # The preview follows the typing (progressive JS asks the server for the snippet).
    page.locator("#f-workflow").fill("release.yml")
    page.locator("#f-ref").fill("refs/tags/v*")
    expect(page.locator("#snippet")).to_contain_text('tags: ["v*"]')
    expect(page.locator("#snippet")).to_contain_text("name: pypi  # must match the publisher")
    expect(page.locator("#snippet")).to_contain_text("id-token: write")
    status = post_status(page, page.get_by_role("button", name="Add publisher").click)
    assert status == 303
    expect(page.get_by_text("The trusted publisher was added.")).to_be_visible()
    listed = page.locator("li.publisher")
    expect(listed).to_have_count(1)
    expect(listed.first).to_contain_text(
        "GitHub octo-org/webdemo, workflow release.yml, environment pypi, refs refs/tags/v*"
    )
    screenshot(page, "publishing-listed")

    # A trusted publish from the matching job (uv, under the CI emulator) ...
    dist = tmp_path / "dist"
    dist.mkdir()
    for filename, data in (build_wheel("webdemo", "1.0.0"), build_sdist("webdemo", "1.0.0")):
        (dist / filename).write_bytes(data)
    assert ui_server.tls is not None
    job = JobClaims(
        repo="octo-org/webdemo",
        workflow="release.yml",
        ref="refs/tags/v1.0.0",
        sha=SHA,
        environment="pypi",
        owner_id=4242,
    )
    published = emulator.run(
        [
            *(sys.executable, "-m", "uv", "publish", "--trusted-publishing", "always"),
            *("--publish-url", ui_server.upload_url("prod"), *map(str, dist.iterdir())),
        ],
        job,
        env=trust(client_env(tmp_path), ui_server.tls.ca),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert published.returncode == 0, published.stdout + published.stderr

    # ... is in the security history, linked to its commit.
    page.goto("/prod/project/webdemo/history")
    mint = page.locator("li.event-mint_token").first
    expect(mint).to_contain_text("Trusted publisher token minted")
    commit = mint.locator("a.commit-link")
    expect(commit).to_have_text(SHA)
    assert (commit.get_attribute("href") or "").endswith(f"/octo-org/webdemo/commit/{SHA}")
    uploads = page.locator("li.event-file_upload")
    expect(uploads.filter(has_text="trusted publisher GitHub octo-org/webdemo")).to_have_count(2)
    expect(uploads.filter(has_text="API token #")).to_have_count(2)  # 0.1.0, by alice's token
    expect(page.locator("li.event-add_publisher")).to_have_count(1)
    screenshot(page, "security-history")
    page.get_by_label("Show").select_option("mints")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("li.event-file_upload")).to_have_count(0)
    expect(page.locator("li.event-mint_token")).to_have_count(1)

    # The project page says how each file got there.
    page.goto("/prod/project/webdemo/")
    expect(page.locator("h1")).to_contain_text("webdemo 1.0.0")
    expect(page.get_by_text("Uploaded via trusted publisher")).to_have_count(2)
    first_commit = page.locator("td.provenance a.commit-link").first
    assert (first_commit.get_attribute("href") or "").endswith(f"/commit/{SHA}")
    screenshot(page, "project-trusted-publisher")

    # Remove it: gone from the list, and the removal is in the history.
    page.goto("/prod/project/webdemo/settings/publishing")
    status = post_status(
        page, page.get_by_role("button", name=re.compile("^Remove publisher")).click
    )
    assert status == 303
    expect(page.get_by_text("The trusted publisher was removed")).to_be_visible()
    expect(page.locator("li.publisher")).to_have_count(0)
    page.goto("/prod/project/webdemo/history?action=publishers")
    expect(page.locator("li.event-remove_publisher")).to_have_count(1)


def test_publishing_works_without_javascript(browser: Any, ui_server: LiveServer) -> None:
    make_project(ui_server, "nojs", "nojs-demo")
    ctx = browser.new_context(
        base_url=ui_server.url, ignore_https_errors=True, java_script_enabled=False
    )
    try:
        page = ctx.new_page()
        sign_in(page, "nojs")
        page.goto("/prod/project/nojs-demo/settings/publishing?provider=gitlab")
        page.locator("#f-namespace").fill("group")
        page.locator("#f-project").fill("nojs")
        page.locator("#f-workflow_filepath").fill(".gitlab-ci.yml")
        page.locator("#f-environment").fill("production")
        assert post_status(page, page.get_by_role("button", name="Preview workflow").click) == 200
        expect(page.locator("#snippet")).to_contain_text("name: production")
        expect(page.locator("#snippet")).to_contain_text("KEYLESS_ID_TOKEN")
        assert post_status(page, page.get_by_role("button", name="Add publisher").click) == 303
        expect(page.locator("li.publisher")).to_contain_text("GitLab group/nojs")
    finally:
        ctx.close()


# --------------------------------------------------------------------------- yank


def test_yank_and_unyank_a_release_and_the_simple_api_follows(
    context: Any, ui_server: LiveServer
) -> None:
    make_project(ui_server, "yanker", "yankdemo", versions=("1.0.0", "1.1.0"))
    page = context.new_page()
    sign_in(page, "yanker")
    page.goto("/prod/project/yankdemo/1.0.0/")
    page.get_by_label("Reason for yanking 1.0.0").fill("broken build")
    page.get_by_label("Type the version 1.0.0 to confirm").fill("1.0.0")
    assert post_status(page, page.get_by_role("button", name="Yank 1.0.0").click) == 303
    expect(page.locator("p.yanked")).to_contain_text("Reason: broken build")
    expect(page.get_by_role("button", name="Unyank 1.0.0")).to_be_visible()
    screenshot(page, "release-yanked")

    with ui_server.client() as client:
        files = client.get("/prod/simple/yankdemo/", headers=SIMPLE_JSON).json()["files"]
        yanked = {f["filename"]: f["yanked"] for f in files}
        assert {name: value for name, value in yanked.items() if "1.0.0" in name} == {
            "yankdemo-1.0.0.tar.gz": "broken build",
            "yankdemo-1.0.0-py3-none-any.whl": "broken build",
        }
        assert all(value is False for name, value in yanked.items() if "1.1.0" in name)
        html = client.get("/prod/simple/yankdemo/").text
        assert html.count('data-yanked="broken build"') == 2
        release = client.get("/prod/pypi/yankdemo/1.0.0/json").json()
        assert release["info"]["yanked"] is True

    assert post_status(page, page.get_by_role("button", name="Unyank 1.0.0").click) == 303
    expect(page.locator("p.yanked")).to_have_count(0)
    with ui_server.client() as client:
        files = client.get("/prod/simple/yankdemo/", headers=SIMPLE_JSON).json()["files"]
        assert all(f["yanked"] is False for f in files)


def test_archive_and_unarchive_from_the_project_page(context: Any, ui_server: LiveServer) -> None:
    make_project(ui_server, "archivist", "oldlib")
    page = context.new_page()
    sign_in(page, "archivist")
    page.goto("/prod/project/oldlib/")
    page.get_by_label("Reason for archiving (optional)").fill("superseded by newlib")
    page.get_by_label("Type the project name oldlib to confirm").fill("oldlib")
    assert post_status(page, page.get_by_role("button", name="Archive the project").click) == 303
    expect(page.get_by_text("This project is archived")).to_contain_text("superseded by newlib")
    assert post_status(page, page.get_by_role("button", name="Unarchive the project").click) == 303
    expect(page.get_by_text("This project is archived")).to_have_count(0)


# --------------------------------------------------------------------------- refusals


def test_a_form_post_without_its_csrf_token_is_refused(context: Any, ui_server: LiveServer) -> None:
    make_project(ui_server, "carol", "csrfdemo")
    page = context.new_page()
    sign_in(page, "carol")
    page.goto("/prod/project/csrfdemo/settings/publishing")
    page.locator("#f-owner").fill("carol")
    page.locator("#f-repository").fill("csrfdemo")
    page.locator("#f-workflow").fill("release.yml")
    # What a forged cross-site form would send: everything but the token.
    page.evaluate("document.querySelector('#publisher-form input[name=csrf_token]').remove()")
    assert post_status(page, page.get_by_role("button", name="Add publisher").click) == 403
    expect(page.locator("h1")).to_have_text("Request refused")
    expect(page.get_by_role("alert")).to_contain_text("security token (CSRF) is missing")
    screenshot(page, "csrf-refused")
    page.goto("/prod/project/csrfdemo/settings/publishing")
    expect(page.locator("li.publisher")).to_have_count(0)
    # The same with a request made with the browser's cookies but no token.
    answer = context.request.post(
        "/prod/project/csrfdemo/status", form={"status": "archived"}, max_redirects=0
    )
    assert answer.status == 403


def test_another_users_project_settings_are_refused(context: Any, ui_server: LiveServer) -> None:
    make_project(ui_server, "bob", "bobproj")
    make_project(ui_server, "mallory", "mallory-lib")
    page = context.new_page()
    sign_in(page, "mallory")
    for path in ("/prod/project/bobproj/settings/publishing", "/prod/project/bobproj/history"):
        answer = page.goto(path)
        assert answer is not None
        assert answer.status == 403
        expect(page.locator("h1")).to_have_text("Not an owner")
        expect(page.get_by_role("alert")).to_contain_text("Only owners of 'bobproj'")
    screenshot(page, "not-an-owner")
    page.goto("/prod/project/bobproj/")
    expect(page.get_by_text("Manage (owner)")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Yank"))).to_have_count(0)


# --------------------------------------------------------------------------- other pages


def test_tokens_page_shows_a_new_token_once(context: Any, ui_server: LiveServer) -> None:
    ui_server.user("dora")
    page = context.new_page()
    sign_in(page, "dora")
    page.goto("/account/tokens")
    assert page.evaluate(UNLABELLED) == []
    page.get_by_label("Description").fill("laptop uploads")
    page.get_by_label("Index").select_option("test")
    page.get_by_label("Expires after").select_option("90")
    assert post_status(page, page.get_by_role("button", name="Create token").click) == 200
    secret = page.get_by_label("New API token").input_value()
    assert secret.startswith("keyless-")
    screenshot(page, "token-created")
    page.goto("/account/tokens")
    assert secret not in page.content()
    expect(page.locator("table.tokens")).to_contain_text("laptop uploads")
    assert (
        post_status(page, page.get_by_role("button", name=re.compile("^Revoke token")).click) == 303
    )
    expect(page.get_by_text("The token was revoked")).to_be_visible()


def test_landing_index_and_admin_pages(context: Any, ui_server: LiveServer) -> None:
    make_project(ui_server, "erin", "searchable-lib")
    page = context.new_page()
    page.goto("/")
    expect(page.locator("h1")).to_have_text("Python package indexes")
    page.get_by_label("Search projects on every index").fill("searchable")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="searchable-lib")).to_be_visible()
    screenshot(page, "landing-search")
    page.goto("/prod/")
    expect(page.get_by_role("link", name="searchable-lib")).to_be_visible()
    screenshot(page, "index-prod")
    page.goto("/prod/project/searchable-lib/")
    screenshot(page, "project")

    sign_in(page, make_admin(ui_server, "web-admin"))
    page.goto("/admin/indexes")
    expect(page.locator("table.data")).to_contain_text("prod")
    screenshot(page, "admin-indexes")
    page.goto("/admin/users")
    page.get_by_label("User name").fill("frank")
    page.get_by_label("Password").fill("a long enough password")
    assert post_status(page, page.get_by_role("button", name="Add user").click) == 303
    expect(page.locator("table.data")).to_contain_text("frank")
    screenshot(page, "admin-users")
    page.goto("/account/publishing")
    assert page.evaluate(UNLABELLED) == []
    screenshot(page, "pending-publishers")


def test_pages_are_readable_on_a_phone(browser: Any, ui_server: LiveServer) -> None:
    make_project(ui_server, "phoebe", "phone-lib")
    ctx = browser.new_context(
        base_url=ui_server.url,
        ignore_https_errors=True,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = ctx.new_page()
        sign_in(page, "phoebe")
        for path, name in (
            ("/prod/project/phone-lib/", "phone-project"),
            ("/prod/project/phone-lib/settings/publishing", "phone-publishing"),
            ("/prod/project/phone-lib/history", "phone-history"),
        ):
            page.goto(path)
            # Nothing wider than the screen: no sideways scrolling to read a page.
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, (path, overflow)
            screenshot(page, name)
    finally:
        ctx.close()
