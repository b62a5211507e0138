"""The workflow preview is valid YAML that matches the entry; descriptions render safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keyless.dists.readme import plain_html, render_description
from keyless.index.web.snippets import env_var_for, snippet
from keyless.index.web.views import safe_url
from keyless.publish.ambient import gitlab_token_variable
from keyless.publish.init import init_workflow
from tests.builders import CLIENT_SOURCE

yaml = pytest.importorskip("yaml")

UPLOAD = "https://pypi.example.com/prod/legacy/"


def load(kind: str, **values: str) -> Any:
    return yaml.safe_load(
        snippet(
            kind, values, upload_url=UPLOAD, audience="keyless", client_source=CLIENT_SOURCE
        ).text
    )


def test_github_job_asks_for_an_id_token_in_its_environment() -> None:
    workflow = load(
        "github",
        owner="octo",
        repository="demo",
        workflow="release.yml",
        environment="pypi",
        ref="refs/tags/v*",
    )
    job = workflow["jobs"]["publish"]
    assert job["permissions"] == {"id-token": "write"}  # at job level, this job only
    assert job["environment"]["name"] == "pypi"
    assert workflow[True] == {"push": {"tags": ["v*"]}}  # YAML 1.1 reads `on:` as True
    assert any(UPLOAD in step.get("run", "") for step in job["steps"])
    # Two jobs: the build (and its dependencies) runs without the permission to get a token.
    assert job["needs"] == ["build"]
    assert workflow["jobs"]["build"]["permissions"] == {"contents": "read"}
    assert workflow["permissions"] == {}


def test_github_preview_is_the_workflow_keyless_init_writes(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "demo"\n', encoding="utf-8")
    written = init_workflow(
        folder,
        indexes=[("prod", UPLOAD)],
        repository="octo/demo",
        client_source=CLIENT_SOURCE,
        write=False,
    )
    [init_text] = written.contents.values()
    init_jobs = yaml.safe_load(init_text)["jobs"]
    preview = load("github", owner="octo", repository="demo", environment="prod")
    assert preview["jobs"]["build"] == init_jobs["build"]
    assert preview["jobs"]["publish"]["steps"] == init_jobs["publish-prod"]["steps"]
    assert preview["jobs"]["publish"]["permissions"] == init_jobs["publish-prod"]["permissions"]


def test_github_without_environment_or_ref_publishes_on_release_tags() -> None:
    workflow = load("github", owner="octo", repository="demo", workflow="release.yml")
    assert "environment" not in workflow["jobs"]["publish"]
    assert workflow[True] == {"push": {"tags": ["v*"]}}  # as `keyless init` writes it
    branch = load("github", ref="refs/heads/main")
    assert branch[True]["push"]["branches"] == ["main"]


def test_github_reusable_workflow_is_called_with_the_permission() -> None:
    workflow = load(
        "github", reusable_workflow="org/shared/.github/workflows/publish.yml@refs/tags/v1"
    )
    job = workflow["jobs"]["publish"]
    assert job["uses"] == "org/shared/.github/workflows/publish.yml@refs/tags/v1"
    assert job["permissions"]["id-token"] == "write"


def test_gitlab_job_declares_its_id_token_for_the_audience() -> None:
    text = snippet(
        "gitlab",
        {"namespace": "group/sub", "project": "demo", "environment": "production"},
        upload_url=UPLOAD,
        audience="keyless-test",
        client_source=CLIENT_SOURCE,
    )
    pipeline = yaml.safe_load(text.text)
    job = pipeline["publish"]
    assert job["id_tokens"] == {"KEYLESS_TEST_ID_TOKEN": {"aud": "keyless-test"}}
    assert job["environment"] == "production"
    assert text.where == ".gitlab-ci.yml"
    assert env_var_for("pypi") == "PYPI_ID_TOKEN"


@pytest.mark.parametrize("audience", ["pypi", "keyless:prod", "https://x.example/aud", "1index"])
def test_the_gitlab_variable_is_where_keyless_publish_looks(audience: str) -> None:
    # A leading digit is replaced too: "1index" -> _INDEX_ID_TOKEN (was 1INDEX_ID_TOKEN).
    assert env_var_for(audience) == gitlab_token_variable(audience)


@pytest.mark.parametrize("kind", ["github", "gitlab", "google", "generic"])
@pytest.mark.parametrize(
    "typed",
    ["", "a: b", "'quoted' \"double\"", "#comment", "*alias", "- item", "true", "{x}", "v1\nx: 1"],
)
def test_any_half_typed_entry_still_gives_valid_yaml(kind: str, typed: str) -> None:
    values = dict.fromkeys(
        ("owner", "repository", "workflow", "environment", "namespace", "project", "email"),
        typed,
    )
    text = snippet(
        kind, values, upload_url=UPLOAD, audience="keyless", client_source=CLIENT_SOURCE
    ).text
    if kind != "generic":  # the generic preview is a shell step, not YAML
        yaml.safe_load(text)
    assert text.endswith("\n")


def test_descriptions_render_without_scripts() -> None:
    html = render_description(
        "# Title\n<script>alert(1)</script>\n"
        "<img src=x onerror=alert(1)>\n[x](javascript:alert(1))",
        "text/markdown",
    )
    assert html is not None
    assert "<h1" in html
    assert "<script" not in html
    assert "onerror" not in html
    assert 'href="javascript' not in html
    # reStructuredText that cannot render (raw HTML) is shown as escaped text.
    raw = ".. raw:: html\n\n   <script>x</script>\n"
    assert render_description(raw, None) is None
    assert "&lt;script&gt;" in plain_html(raw)
    assert "<script>" not in plain_html(raw)
    assert render_description("plain <b>", "text/plain") == "plain &lt;b&gt;"


def test_only_web_links_become_links() -> None:
    assert safe_url("https://github.com/o/r/commit/abc") == "https://github.com/o/r/commit/abc"
    assert safe_url("javascript:alert(1)") == ""
    assert safe_url(None) == ""
