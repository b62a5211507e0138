"""Small things a user of the web pages meets (issue 11): the help page error texts link to,
the favicon, confirmation before yanking or archiving, single notices, whole workflow snippets,
expired tokens shown as expired. Over HTTP and in the real browser.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from keyless.index.help import TOPICS, local_links
from tests.builders import build_wheel
from tests.conftest import LiveServer, client_env, trust
from tests.index.test_clients import twine_upload_to
from tests.index.uploading import upload

from .conftest import HTML, PASSWORD, make_project, screenshot, sign_in
from .test_browser import post_status
from .test_browser import sign_in as browser_sign_in

# --------------------------------------------------------------------------- help and links


def test_the_help_page_has_a_section_for_every_topic(ui_server: LiveServer) -> None:
    with ui_server.client() as client:
        answer = client.get("/help/", headers=HTML)
    assert answer.status_code == 200
    for topic in TOPICS:
        assert f'id="{topic.anchor}"' in answer.text, topic.anchor


def test_upload_errors_link_to_this_servers_help_page(ui_server: LiveServer) -> None:
    """twine prints the reason phrase, uv the JSON message: both carry a link that works."""
    make_project(ui_server, "helga", "helga-lib")
    token = ui_server.token("helga", "prod")
    filename, data = build_wheel("helga-lib", "1.0.0", metadata={"summary": "changed bytes"})
    with ui_server.client() as client:
        refused = upload(client, "prod", token, filename, data)
        assert refused.status_code == 400, refused.text
        assert "pypi.org" not in refused.text
        assert refused.reason_phrase.startswith("File already exists")
        links = re.findall(r"https?://\S+#[\w-]+", refused.reason_phrase)
        assert links == [f"{ui_server.url}/help/#file-name-reuse"], refused.reason_phrase
        page = client.get(links[0].split("#")[0], headers=HTML)
        assert page.status_code == 200
        assert 'id="file-name-reuse"' in page.text


def test_a_password_upload_is_told_to_use_a_token_in_plain_words(
    ui_server: LiveServer, tmp_path: Any
) -> None:
    """twine with a user name and password: the hint it prints is readable and links to help."""
    ui_server.user("paul")
    filename, data = build_wheel("paul-lib", "1.0.0")
    wheel = tmp_path / filename
    wheel.write_bytes(data)
    assert ui_server.tls is not None
    env = trust(client_env(tmp_path), ui_server.tls.ca)
    twine = twine_upload_to(ui_server.upload_url("prod"), [wheel], env, "paul", PASSWORD)
    output = twine.stdout + twine.stderr
    assert twine.returncode != 0
    flat = " ".join(output.split())
    assert "it starts with 'keyless-'" in flat, output
    assert "keyless- )" not in flat
    assert f"{ui_server.url}/help/#api-tokens" in flat, output


# --------------------------------------------------------------------------- favicon


def test_the_favicon_is_an_icon(ui_server: LiveServer, context: Any) -> None:
    with ui_server.client() as client:
        answer = client.get("/favicon.ico")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/x-icon"
    page = context.new_page()
    page.goto("/help/")
    # The browser decodes it: an <img> of it gets its 16x16 size.
    size = page.evaluate(
        """async () => {
            const img = new Image();
            img.src = '/favicon.ico';
            await img.decode();
            return [img.naturalWidth, img.naturalHeight];
        }"""
    )
    assert size == [16, 16]


# --------------------------------------------------------------------------- tokens


def test_an_expired_token_shows_as_expired_on_the_tokens_page(ui_server: LiveServer) -> None:
    ui_server.token("tess", "prod", expires_in=dt.timedelta(seconds=-60))
    ui_server.token("tess", "prod", expires_in=dt.timedelta(days=30))
    with ui_server.client() as client:
        sign_in(client, "tess")
        listing = client.get("/account/tokens", headers=HTML).text
    rows = re.findall(r'<tr id="token-\d+"[^>]*>.*?</tr>', listing, re.DOTALL)
    assert len(rows) == 2
    expired, live = rows
    assert 'class="expired"' in expired
    assert "expired " in expired
    assert "Revoke" not in expired
    assert "expired" not in live
    assert "Revoke" in live


# --------------------------------------------------------------------------- yank and archive


def test_yank_needs_the_version_typed_and_archive_the_project_name(
    ui_server: LiveServer,
) -> None:
    """Without JavaScript (plain form posts): a post without the typed confirmation changes
    nothing, and says what to type."""
    make_project(ui_server, "carla", "careful-lib")
    with ui_server.client() as client:
        csrf = sign_in(client, "carla")
        for path, data in (
            ("/prod/project/careful-lib/1.0.0/yank", {"reason": "oops"}),
            ("/prod/project/careful-lib/1.0.0/yank", {"confirm": "1.0"}),
            ("/prod/project/careful-lib/status", {"status": "archived"}),
            ("/prod/project/careful-lib/status", {"status": "archived", "confirm": "careful"}),
        ):
            refused = client.post(path, data={"csrf_token": csrf, **data})
            assert refused.status_code == 400, (path, data)
            assert "Nothing was changed" in refused.text
        release = client.get("/prod/pypi/careful-lib/1.0.0/json").json()
        assert release["info"]["yanked"] is False
        page = client.get("/prod/project/careful-lib/", headers=HTML).text
        assert "This project is archived" not in page
        # The project name matches as names do: case and separators aside.
        done = client.post(
            "/prod/project/careful-lib/status",
            data={"csrf_token": csrf, "status": "archived", "confirm": "Careful_Lib"},
        )
        assert done.status_code == 303


@pytest.mark.parametrize("javascript", [True, False])
def test_yank_and_archive_in_the_browser_ask_first_and_say_it_once(
    browser: Any, ui_server: LiveServer, javascript: bool
) -> None:
    project = f"brunolib-js-{str(javascript).lower()}"
    make_project(ui_server, "bruno", project)
    context = browser.new_context(
        base_url=ui_server.url, ignore_https_errors=True, java_script_enabled=javascript
    )
    context.set_default_timeout(15_000)
    try:
        _yank_and_archive(context.new_page(), project)
    finally:
        context.close()


def _yank_and_archive(page: Any, project: str) -> None:
    browser_sign_in(page, "bruno")
    page.goto(f"/prod/project/{project}/1.0.0/")
    # One click on Yank does nothing: the browser asks for the version first.
    page.get_by_role("button", name="Yank 1.0.0").click()
    expect(page.locator("p.yanked")).to_have_count(0)
    assert page.evaluate("document.querySelector('#yank-confirm').validity.valueMissing")
    page.get_by_label("Type the version 1.0.0 to confirm").fill("1.0.0")
    assert post_status(page, page.get_by_role("button", name="Yank 1.0.0").click) == 303
    expect(page.locator("p.yanked")).to_have_count(1)

    page.goto(f"/prod/project/{project}/")
    page.get_by_role("button", name="Archive the project").click()
    expect(page.get_by_text("is archived")).to_have_count(0)
    page.get_by_label(f"Type the project name {project} to confirm").fill(project)
    assert post_status(page, page.get_by_role("button", name="Archive the project").click) == 303
    # The page says it once, not once for the change and once for the state.
    expect(page.locator(".notice", has_text="archived")).to_have_count(1)
    screenshot(page, f"{project}-archived")


# --------------------------------------------------------------------------- snippets

# Every <pre> on the page, and whether its whole text can be read: it fits its own box (long
# lines wrap), and no box around it cuts it off.
PRE_REACH = """
() => [...document.querySelectorAll('pre')].map((pre) => {
  const box = pre.getBoundingClientRect();
  let cutBy = null;
  for (let up = pre.parentElement; up && up !== document.documentElement; up = up.parentElement) {
    const style = getComputedStyle(up);
    if (style.overflowX !== 'visible' || style.overflowY !== 'visible') {
      const outer = up.getBoundingClientRect();
      const out = box.left < outer.left - 1 || box.right > outer.right + 1;
      if (out) cutBy = up.className || up.tagName;
    }
  }
  return {
    text: pre.textContent.slice(0, 40),
    fits: pre.scrollWidth <= pre.clientWidth + 1,
    cutBy,
    inView: box.left >= 0 && box.right <= document.documentElement.clientWidth + 1,
  };
})
"""


@pytest.mark.parametrize("width", [1280, 390])
def test_workflow_snippets_can_be_read_whole(
    browser: Any, ui_server: LiveServer, width: int
) -> None:
    project = f"snippet-lib-{width}"
    make_project(ui_server, "sonia", project)
    long_name = "a-repository-with-a-rather-long-name-for-wrapping-" + "x" * 40
    with ui_server.client() as client:
        csrf = sign_in(client, "sonia")
        added = client.post(
            f"/prod/project/{project}/settings/publishing",
            data={
                "csrf_token": csrf,
                "kind": "github",
                "owner": "octo-org",
                "repository": long_name,
                "workflow": "release-" + "y" * 60 + ".yml",
                "environment": "pypi",
            },
        )
        assert added.status_code in (200, 303), added.text
    ctx = browser.new_context(
        base_url=ui_server.url, ignore_https_errors=True, viewport={"width": width, "height": 900}
    )
    try:
        page = ctx.new_page()
        browser_sign_in(page, "sonia")
        page.goto(f"/prod/project/{project}/settings/publishing")
        expect(page.locator("li.publisher")).to_have_count(1)
        for summary in page.locator("details > summary").all():
            summary.click()
        reach = page.evaluate(PRE_REACH)
        assert len(reach) >= 2, reach  # the publisher's workflow and the form's preview
        for pre in reach:
            # Wrapped, not scrolled: a scrolled box hides the ends of long lines (the
            # repository, the upload URL) behind a scrollbar many systems do not even show.
            assert pre["fits"], pre
            assert pre["cutBy"] is None, pre
            assert pre["inView"], pre
        screenshot(page, f"publishing-snippets-{width}")
    finally:
        ctx.close()


def test_an_upload_with_an_expired_token_is_refused(ui_server: LiveServer) -> None:
    """What 'expired' on the tokens page means: the server refuses it."""
    token = ui_server.token("tess", "prod", expires_in=dt.timedelta(seconds=-60))
    filename, data = build_wheel("tess-lib", "1.0.0")
    with ui_server.client() as client:
        answer = upload(client, "prod", token, filename, data)
    assert answer.status_code == 403
    assert "expired" in answer.text


def test_every_pypi_help_link_in_the_servers_texts_has_a_topic_here() -> None:
    """A text that gains a link to another PyPI help page must get a topic on /help/ too."""
    source = Path(__file__).resolve().parents[2] / "src" / "keyless"
    links = set()
    for path in [*(source / "index").rglob("*.py"), *(source / "dists").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        links |= set(re.findall(r"https://(?:docs\.)?pypi\.org/[\w/#-]*[\w-]", text))
        if 'HELP = "https://pypi.org/help/"' in text:
            links |= {f"https://pypi.org/help/#{a}" for a in re.findall(r"\{HELP\}#([\w-]+)", text)}
    links -= {"https://pypi.org/help"}  # HELP itself, the base the f-strings complete
    assert links  # the scan finds the texts' links
    for link in sorted(links):
        assert local_links(link, "https://here.test").startswith("https://here.test/help/#"), link
