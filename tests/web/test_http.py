"""The web UI over HTTP: headers, cookies, CSRF, sign-in limits, and 4xx (never 5xx) errors."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pytest
from sqlalchemy import update

from keyless.store import db
from keyless.store.db import open_database
from tests.conftest import LiveServer

from .conftest import HTML, PASSWORD, csrf_of, make_admin, make_project, sign_in

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


@pytest.fixture(scope="module")
def projects(ui_server: LiveServer) -> None:
    make_project(
        ui_server,
        "hana",
        "hana-lib",
        metadata={
            "summary": "Hana's library",
            "description": "# Hana\n\n<script>alert('x')</script>\n\n[bad](javascript:alert(1))",
            "description_content_type": "text/markdown",
        },
    )
    make_project(ui_server, "ivo", "ivo-lib")


@pytest.fixture
def anonymous(ui_server: LiveServer, projects: None) -> Iterator[httpx.Client]:
    with ui_server.client() as client:
        yield client


@pytest.fixture
def hana(ui_server: LiveServer, projects: None) -> Iterator[tuple[httpx.Client, str]]:
    with ui_server.client() as client:
        yield client, sign_in(client, "hana")


def cookie_attributes(answer: httpx.Response, name: str) -> dict[str, str]:
    for header in answer.headers.get_list("set-cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        if name in parsed:
            morsel = parsed[name]
            flags = {key: str(morsel[key]) for key in morsel if morsel[key]}
            # SimpleCookie keeps valueless flags as True; normalise to present/absent.
            flags.update({flag: "yes" for flag in ("secure", "httponly") if morsel[flag]})
            return flags
    raise AssertionError(f"no Set-Cookie for {name}: {answer.headers.get_list('set-cookie')}")


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "path",
    ["/", "/prod/", "/prod/project/hana-lib/", "/prod/project/hana-lib/1.0.0/", "/account/login"],
)
def test_ui_pages_carry_the_security_headers(anonymous: httpx.Client, path: str) -> None:
    answer = anonymous.get(path, headers=HTML)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    # No inline script or style for the CSP to block: the page must not depend on any.
    assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text)
    assert " style=" not in answer.text
    assert "<style" not in answer.text


def test_error_pages_carry_them_too(anonymous: httpx.Client) -> None:
    answer = anonymous.get("/prod/project/no-such-project/", headers=HTML)
    assert answer.status_code == 404
    assert answer.headers["content-security-policy"] == CSP


def test_package_apis_get_no_ui_headers(anonymous: httpx.Client) -> None:
    simple = anonymous.get("/prod/simple/hana-lib/")
    assert simple.status_code == 200
    url = re.search(r'href="([^"#]+)', simple.text)
    assert url
    for answer in (
        simple,
        anonymous.get("/prod/simple/"),
        anonymous.get("/prod/pypi/hana-lib/json"),
        anonymous.get(url.group(1)),
        anonymous.get("/"),  # API clients keep the JSON landing
    ):
        assert answer.status_code == 200, answer.url
        for header in ("content-security-policy", "x-frame-options", "referrer-policy"):
            assert header not in answer.headers, (answer.url, header)
    assert anonymous.get("/").json()["service"] == "keyless"


def test_static_files_are_served_with_nosniff(anonymous: httpx.Client) -> None:
    css = anonymous.get("/static/keyless.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"
    assert (
        anonymous.get("/static/keyless.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )


# --------------------------------------------------------------------------- cookies and sessions


def test_session_cookie_is_httponly_samesite_and_secure_under_tls(anonymous: httpx.Client) -> None:
    form = anonymous.get("/account/login", headers=HTML)
    anonymous_csrf = cookie_attributes(form, "keyless_csrf")
    assert {"secure", "httponly"} <= anonymous_csrf.keys()
    answer = anonymous.post(
        "/account/login",
        data={"csrf_token": csrf_of(form.text), "username": "hana", "password": PASSWORD},
    )
    assert answer.status_code == 303
    flags = cookie_attributes(answer, "keyless_session")
    assert flags["secure"] == "yes"
    assert flags["httponly"] == "yes"
    assert flags["samesite"].lower() == "lax"
    assert flags["path"] == "/"
    assert int(flags["max-age"]) <= 12 * 3600


def test_cookies_are_not_secure_over_plain_http(server: LiveServer) -> None:
    # Over plain http a Secure cookie would never come back: the flag follows the scheme.
    server.user("plain-http-user")
    with server.client() as client:
        form = client.get("/account/login", headers=HTML)
        assert "secure" not in cookie_attributes(form, "keyless_csrf")
        answer = client.post(
            "/account/login",
            data={
                "csrf_token": csrf_of(form.text),
                "username": "plain-http-user",
                "password": PASSWORD,
            },
        )
        assert answer.status_code == 303, answer.text
        flags = cookie_attributes(answer, "keyless_session")
        assert "secure" not in flags
        assert flags["httponly"] == "yes"


def test_the_session_id_is_stored_hashed(ui_server: LiveServer, projects: None) -> None:
    with ui_server.client() as client:
        sign_in(client, "hana")
        session_id = client.cookies["keyless_session"]
    with open_database(ui_server.database).connect() as conn:
        stored = list(conn.execute(db.web_sessions.select()).mappings())
    assert stored
    assert all(session_id not in str(dict(row)) for row in stored)


def test_sign_out_ends_the_session(hana: tuple[httpx.Client, str]) -> None:
    client, csrf = hana
    old = client.cookies["keyless_session"]
    answer = client.post("/account/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303
    client.cookies.set("keyless_session", old)  # a stolen copy of the cookie is worthless now
    assert client.get("/account/tokens", headers=HTML).status_code == 303


def test_an_expired_session_asks_to_sign_in_again(
    ui_server: LiveServer, hana: tuple[httpx.Client, str]
) -> None:
    client, _ = hana
    assert client.get("/account/tokens", headers=HTML).status_code == 200
    engine = open_database(ui_server.database)
    with engine.begin() as conn:
        conn.execute(update(db.web_sessions).values(expires=db_time_past()))
    answer = client.get("/account/tokens", headers=HTML)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account/login?next=%2Faccount%2Ftokens"


def db_time_past() -> object:
    import datetime as dt

    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def test_sign_in_never_redirects_off_site(ui_server: LiveServer, projects: None) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        with ui_server.client() as client:
            form = client.get("/account/login", headers=HTML)
            answer = client.post(
                "/account/login",
                data={
                    "csrf_token": csrf_of(form.text),
                    "username": "hana",
                    "password": PASSWORD,
                    "next": target,
                },
            )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"


def test_wrong_password_is_a_400_that_says_so(anonymous: httpx.Client) -> None:
    form = anonymous.get("/account/login", headers=HTML)
    answer = anonymous.post(
        "/account/login",
        data={"csrf_token": csrf_of(form.text), "username": "hana", "password": "nope nope"},
    )
    assert answer.status_code == 400
    assert "Wrong user name or password." in answer.text
    assert "keyless_session" not in answer.headers.get("set-cookie", "")


def test_repeated_failed_sign_ins_are_slowed_down(
    ui_server: LiveServer, anonymous: httpx.Client
) -> None:
    ui_server.user("guessed")
    form = anonymous.get("/account/login", headers=HTML)
    token = csrf_of(form.text)

    def attempt(password: str) -> httpx.Response:
        return anonymous.post(
            "/account/login",
            data={"csrf_token": token, "username": "guessed", "password": password},
        )

    assert [attempt(f"wrong {n}").status_code for n in range(5)] == [400] * 5
    refused = attempt(PASSWORD)  # even the right password waits now
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.text
    assert int(refused.headers["retry-after"]) > 0
    # Another user on the same address is not locked out by these failures.
    with ui_server.client() as other:
        sign_in(other, "hana")


# --------------------------------------------------------------------------- CSRF


def test_posts_without_the_csrf_token_are_refused(hana: tuple[httpx.Client, str]) -> None:
    client, csrf = hana
    target = "/prod/project/hana-lib/1.0.0/yank"
    for form in ({"reason": "x"}, {"reason": "x", "csrf_token": "forged"}):
        answer = client.post(target, data=form)
        assert answer.status_code == 403
        assert "security token (CSRF) is missing or out of date" in answer.text
        assert answer.headers["content-security-policy"] == CSP
    assert "Yanked." not in client.get("/prod/project/hana-lib/1.0.0/", headers=HTML).text
    # The right token for the session is accepted (and the yank is undone again).
    confirmed = {"csrf_token": csrf, "reason": "x", "confirm": "1.0.0"}
    assert client.post(target, data=confirmed).status_code == 303
    assert (
        client.post("/prod/project/hana-lib/1.0.0/unyank", data={"csrf_token": csrf}).status_code
        == 303
    )


def test_a_csrf_token_of_another_session_is_refused(
    ui_server: LiveServer, hana: tuple[httpx.Client, str]
) -> None:
    client, _ = hana
    with ui_server.client() as other:
        foreign = sign_in(other, "hana")
    answer = client.post("/account/tokens", data={"csrf_token": foreign, "index": "prod"})
    assert answer.status_code == 403


def test_sign_in_needs_the_form_cookie(ui_server: LiveServer, projects: None) -> None:
    with ui_server.client() as client:
        form = client.get("/account/login", headers=HTML)
        token = csrf_of(form.text)
        client.cookies.clear()
        answer = client.post(
            "/account/login", data={"csrf_token": token, "username": "hana", "password": PASSWORD}
        )
    assert answer.status_code == 403


# --------------------------------------------------------------------------- access


def test_signed_out_visitors_are_sent_to_sign_in(anonymous: httpx.Client) -> None:
    answer = anonymous.get("/prod/project/hana-lib/settings/publishing", headers=HTML)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/account/login?next=")
    post = anonymous.post("/prod/project/hana-lib/1.0.0/yank", data={"csrf_token": "x"})
    assert post.status_code == 403


def test_another_users_project_settings_are_refused(hana: tuple[httpx.Client, str]) -> None:
    client, csrf = hana
    for path in (
        "/prod/project/ivo-lib/settings/publishing",
        "/prod/project/ivo-lib/history",
    ):
        answer = client.get(path, headers=HTML)
        assert answer.status_code == 403, path
        assert "Only owners of 'ivo-lib'" in html.unescape(answer.text)
    for path, form in (
        ("/prod/project/ivo-lib/1.0.0/yank", {"reason": "mine now"}),
        ("/prod/project/ivo-lib/status", {"status": "archived"}),
        ("/prod/project/ivo-lib/settings/publishing", {"kind": "github", "owner": "o"}),
        ("/prod/project/ivo-lib/settings/publishing/1/remove", {}),
    ):
        assert client.post(path, data={"csrf_token": csrf, **form}).status_code == 403, path
    page = client.get("/prod/project/ivo-lib/", headers=HTML).text
    assert "Manage (owner)" not in page
    assert "Yanked." not in page


def test_admin_pages_are_for_admins_only(
    ui_server: LiveServer, hana: tuple[httpx.Client, str]
) -> None:
    client, csrf = hana
    assert client.get("/admin/users", headers=HTML).status_code == 403
    assert (
        client.post("/admin/users", data={"csrf_token": csrf, "username": "x"}).status_code == 403
    )
    with ui_server.client() as admin:
        admin_csrf = sign_in(admin, make_admin(ui_server, "root-admin"))
        assert admin.get("/admin/indexes", headers=HTML).status_code == 200
        bad = admin.post(
            "/admin/users", data={"csrf_token": admin_csrf, "username": "new-user", "password": "x"}
        )
        assert bad.status_code == 400
        assert "at least 8 characters" in bad.text
        made = admin.post(
            "/admin/indexes",
            data={"csrf_token": admin_csrf, "name": "staging-ui", "profile": "private"},
        )
        assert made.status_code == 303
    # The new index serves at once.
    assert client.get("/staging-ui/simple/").status_code == 200


# --------------------------------------------------------------------------- errors are 4xx


def test_ui_errors_are_4xx_pages_with_a_message(hana: tuple[httpx.Client, str]) -> None:
    client, csrf = hana
    cases = [
        ("GET", "/nowhere/", None, 404, "no index named 'nowhere'"),
        ("GET", "/prod/project/missing-lib/", None, 404, "no project named 'missing-lib'"),
        ("GET", "/prod/project/hana-lib/9.9/", None, 404, "has no release '9.9'"),
        (
            "GET",
            "/prod/project/hana-lib/settings/publishing?provider=jenkins",
            None,
            404,
            "Unknown publisher kind 'jenkins'",
        ),
        ("GET", "/prod/project/hana-lib/history?action=everything", None, 400, "Unknown filter"),
        ("POST", "/prod/project/hana-lib/9.9/yank", {"confirm": "9.9"}, 404, "no release '9.9'"),
        (
            "POST",
            "/prod/project/hana-lib/not-a-version/yank",
            {"confirm": "not-a-version"},
            400,
            "not a valid version",
        ),
        ("POST", "/prod/project/hana-lib/status", {"status": "quarantined"}, 400, "Choose"),
        (
            "POST",
            "/prod/project/hana-lib/settings/publishing/abc/remove",
            {},
            404,
            "not a publisher id",
        ),
        (
            "POST",
            "/prod/project/hana-lib/settings/publishing/999999/remove",
            {},
            404,
            "has no publisher #999999",
        ),
        ("POST", "/account/tokens/999999/revoke", {}, 404, "no active API token #999999"),
        ("POST", "/account/publishing/999999/remove", {}, 404, "no pending publisher #999999"),
        ("POST", "/account/tokens", {"index": "nope"}, 400, "Choose an index."),
        ("POST", "/account/tokens", {"index": "prod", "projects": "ok -bad-"}, 400, "-bad-"),
    ]
    for method, path, form, status, message in cases:
        if method == "GET":
            answer = client.get(path, headers=HTML)
        else:
            answer = client.post(path, data={"csrf_token": csrf, **(form or {})})
        assert answer.status_code == status, (path, answer.status_code, answer.text[:300])
        assert message in html.unescape(answer.text), (path, answer.text[:2000])
        assert answer.headers["content-type"].startswith("text/html")


def test_numbers_in_urls_are_ascii_digits_or_ignored(hana: tuple[httpx.Client, str]) -> None:
    # '²' passes str.isdigit but int() refuses it: these once answered 500.
    client, csrf = hana
    for path in ("/prod/?page=%C2%B2", "/prod/project/hana-lib/history?before=%C2%B2"):
        assert client.get(path, headers=HTML).status_code == 200, path
    for path, message in (
        ("/account/tokens/%C2%B2/revoke", "no active API token #²"),
        ("/account/publishing/%C2%B2/remove", "no pending publisher #²"),
        ("/prod/project/hana-lib/settings/publishing/%C2%B2/remove", "not a publisher id"),
    ):
        answer = client.post(path, data={"csrf_token": csrf})
        assert answer.status_code == 404, (path, answer.text[:300])
        assert message in html.unescape(answer.text), path


def test_forms_must_be_small_urlencoded_forms(hana: tuple[httpx.Client, str]) -> None:
    client, csrf = hana
    target = "/prod/project/hana-lib/status"
    as_json = client.post(target, json={"csrf_token": csrf, "status": "archived"})
    assert as_json.status_code == 415
    huge = client.post(target, data={"csrf_token": csrf, "reason": "x" * 70_000})
    assert huge.status_code == 413
    broken = client.post(
        target,
        content=b"csrf_token=\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert broken.status_code == 400


def test_a_bad_publisher_entry_is_a_400_with_the_message_next_to_the_field(
    hana: tuple[httpx.Client, str],
) -> None:
    client, csrf = hana
    answer = client.post(
        "/prod/project/hana-lib/settings/publishing",
        data={
            "csrf_token": csrf,
            "kind": "github",
            "owner": "-bad-",
            "repository": "demo",
            "workflow": "release",
            "action": "add",
        },
    )
    assert answer.status_code == 400
    workflow = re.search(
        r'<div class="field has-error" id="field-workflow">(.*?)</div>', answer.text, re.S
    )
    assert workflow, answer.text
    assert 'aria-invalid="true"' in workflow.group(1)
    assert "must end with .yml or .yaml" in workflow.group(1)
    owner = re.search(r'id="field-owner">(.*?)</div>', answer.text, re.S)
    assert owner
    assert "not a GitHub user or organization name" in owner.group(1)
    # What was typed stays in the form, and nothing was added.
    assert 'value="release"' in answer.text
    assert 'id="no-publishers"' in answer.text


def test_untrusted_issuer_is_reported_on_the_issuer_field(hana: tuple[httpx.Client, str]) -> None:
    client, csrf = hana
    answer = client.post(
        "/prod/project/hana-lib/settings/publishing",
        data={
            "csrf_token": csrf,
            "kind": "gitlab",
            "namespace": "group",
            "project": "demo",
            "workflow_filepath": ".gitlab-ci.yml",
            "issuer": "https://gitlab.example.com",
        },
    )
    assert answer.status_code == 400
    issuer = re.search(r'id="field-issuer">(.*?)</div>', answer.text, re.S)
    assert issuer
    assert "does not trust" in issuer.group(1)


# --------------------------------------------------------------------------- pages


def test_project_page_shows_files_hashes_and_install_lines(anonymous: httpx.Client) -> None:
    page = anonymous.get("/prod/project/hana-lib/", headers=HTML).text
    simple = anonymous.get(
        "/prod/simple/hana-lib/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()
    for entry in simple["files"]:
        assert entry["filename"] in page
        assert entry["hashes"]["sha256"] in page
        assert f"{entry['size']} bytes" in page
    assert "pip install --index-url" in page
    assert "/prod/simple/ hana-lib" in page
    assert "Hana&#39;s library" in page


def test_descriptions_are_rendered_and_sanitized(anonymous: httpx.Client) -> None:
    page = anonymous.get("/prod/project/hana-lib/", headers=HTML).text
    assert '<h1 id="user-content-hana">' in page  # rendered markdown
    assert "<script>alert" not in page
    assert "javascript:" not in page


def test_search_finds_projects_by_name(anonymous: httpx.Client) -> None:
    found = anonymous.get("/prod/?q=Hana_Lib", headers=HTML).text
    assert "/prod/project/hana-lib/" in found
    assert "/prod/project/ivo-lib/" not in found
    everywhere = anonymous.get("/?q=ivo", headers=HTML).text
    assert "/prod/project/ivo-lib/" in everywhere
    assert "No project" in anonymous.get("/prod/?q=%25", headers=HTML).text


def test_noncanonical_project_urls_redirect(anonymous: httpx.Client) -> None:
    answer = anonymous.get("/prod/project/Hana_Lib/", headers=HTML)
    assert answer.status_code == 301
    assert answer.headers["location"] == "/prod/project/hana-lib/"


def test_a_new_token_is_shown_once_and_can_be_revoked(
    ui_server: LiveServer, hana: tuple[httpx.Client, str]
) -> None:
    client, csrf = hana
    created = client.post(
        "/account/tokens",
        data={
            "csrf_token": csrf,
            "index": "prod",
            "projects": "hana-lib",
            "expires": "7",
            "description": "ci token",
        },
    )
    assert created.status_code == 200
    token = re.search(r'value="(keyless-[A-Za-z0-9_-]+)"', created.text)
    assert token, created.text
    secret = token.group(1)
    assert "shown only this once" in created.text
    listing = client.get("/account/tokens", headers=HTML).text
    assert secret not in listing
    token_id = re.findall(r'id="token-(\d+)"', listing)[-1]
    with ui_server.client() as api:
        works = api.get("/prod/api/projects/hana-lib/audit", auth=("__token__", secret))
        assert works.status_code == 200
        revoked = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})
        assert revoked.status_code == 303
        assert (
            api.get("/prod/api/projects/hana-lib/audit", auth=("__token__", secret)).status_code
            == 403
        )
    # Nobody can revoke another user's token.
    ui_server.token("ivo", "prod")
    with ui_server.client() as other:
        sign_in(other, "ivo")
        ivo_tokens = other.get("/account/tokens", headers=HTML).text
    ivo_id = re.findall(r'id="token-(\d+)"', ivo_tokens)[-1]
    refused = client.post(f"/account/tokens/{ivo_id}/revoke", data={"csrf_token": csrf})
    assert refused.status_code == 404


def test_pending_publishers_from_the_account_page(hana: tuple[httpx.Client, str]) -> None:
    client, csrf = hana
    fields = {
        "csrf_token": csrf,
        "kind": "github",
        "index": "prod",
        "owner": "hana",
        "repository": "future",
        "workflow": "release.yml",
    }
    taken = client.post("/account/publishing", data={**fields, "project": "hana-lib"})
    assert taken.status_code == 409
    assert "already exists" in taken.text
    added = client.post("/account/publishing", data={**fields, "project": "hana-future"})
    assert added.status_code == 303
    listing = client.get("/account/publishing", headers=HTML).text
    assert "hana-future" in listing
    pending_id = re.search(r'id="pending-(\d+)"', listing)
    assert pending_id
    removed = client.post(
        f"/account/publishing/{pending_id.group(1)}/remove", data={"csrf_token": csrf}
    )
    assert removed.status_code == 303
    assert "hana-future" not in client.get("/account/publishing", headers=HTML).text


def test_workflow_preview_follows_the_entry(anonymous: httpx.Client) -> None:
    answer = anonymous.get(
        "/account/publishing/preview",
        params={"index": "prod", "kind": "github", "owner": "octo", "environment": "pypi"},
    )
    assert answer.status_code == 200
    assert "name: pypi  # must match the publisher" in answer.text
    assert "id-token: write" in answer.text
    assert answer.headers["content-security-policy"] == CSP
