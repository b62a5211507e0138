"""A kind of publisher is one module plus one registration in `keyless.oidc.providers.PROVIDERS`.

A toy provider (tests/toy_provider.py), registered by the test alone, shows up everywhere a
kind is offered or accepted: the settings (its default issuer trusted, its kind accepted for
configured issuers), the generic provider's refusals, the CLI's `keyless publisher add <kind>`
options, and the web form's tabs and fields on a live server. Nothing else was written for it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from collections.abc import Iterator

import pytest

from keyless.cli.main import main as keyless
from keyless.config import ConfigError, TrustedPublishingSettings, load_settings, parse_issuers
from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import PROVIDERS, provider_for_claims
from tests.conftest import LiveServer, make_tls_files, start_server, stop_server
from tests.toy_provider import TOY_ISSUER, ToyProvider
from tests.web.conftest import HTML, make_project, sign_in


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> ToyProvider:
    """The toy registered for this test only (monkeypatch takes it out again)."""
    provider = ToyProvider()
    monkeypatch.setitem(PROVIDERS, provider.kind, provider)
    return provider


def test_unregistered_the_toy_is_refused_everywhere() -> None:
    # The other tests would pass for nothing if the toy were known without its registration.
    assert "toy" not in PROVIDERS
    assert TOY_ISSUER not in TrustedPublishingSettings().trusted_issuers()
    with pytest.raises(ConfigError, match="has kind 'toy'; use one of github, gitlab"):
        parse_issuers("toy=https://toy.internal.test", "issuers")


def test_the_settings_take_the_kind_and_its_default_issuer(toy: ToyProvider) -> None:
    assert TrustedPublishingSettings().trusted_issuers()[TOY_ISSUER] == "toy"
    configured = load_settings(environ={"KEYLESS_TRUSTED_ISSUERS": "toy=https://toy.internal.test"})
    trusted = configured.trusted_publishing.trusted_issuers()
    assert trusted["https://toy.internal.test"] == "toy"
    assert trusted["https://token.actions.githubusercontent.com"] == "github"  # still there


def test_the_generic_provider_sends_the_toys_issuer_to_the_toy(toy: ToyProvider) -> None:
    with pytest.raises(PublisherConfigError) as caught:
        PROVIDERS["generic"].validate_config({"issuer": TOY_ISSUER, "subject": "x"})
    assert caught.value.errors["issuer"] == "use a Toy CI publisher for this issuer"
    assert provider_for_claims({"iss": TOY_ISSUER, "team": "red"}) is toy


def keyless_output(*argv: str) -> tuple[int, str]:
    """`keyless ARGV…` in this process (where the toy is registered): exit status, stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            status = keyless(list(argv))
        except SystemExit as exc:  # --help, or a parser error
            status = int(exc.code or 0)
    return status, out.getvalue()


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`keyless serve` (TLS: session cookies are Secure) with the toy registered in it."""
    folder = tmp_path_factory.mktemp("toy-server")
    live = start_server(
        folder, tls=make_tls_files(folder), prefix=(sys.executable, "-m", "tests.toy_provider")
    )
    yield live
    stop_server(live)


def test_the_cli_offers_the_kind_with_its_fields(toy: ToyProvider, toy_server: LiveServer) -> None:
    data = str(toy_server.data_dir)
    status, text = keyless_output(
        "publisher", "add", "--index", "prod", "--pending", "x", "toy", "-h"
    )
    assert status == 0
    assert "--team FIELD_TEAM" in text
    assert "The team whose builds may publish." in text
    status, text = keyless_output(
        "publisher", "add", "--index", "prod", "--pending", "toy-cli-lib", "--json",
        "toy", "--team", "blue", "--data", data,
    )  # fmt: skip
    assert status == 0, text
    assert json.loads(text)["summary"] == "Toy team blue"


def test_the_web_form_has_a_tab_and_the_fields_of_the_kind(toy_server: LiveServer) -> None:
    make_project(toy_server, "tess", "toy-web-lib")
    page = "/prod/project/toy-web-lib/settings/publishing"
    with toy_server.client() as client:
        csrf = sign_in(client, "tess")
        form = client.get(f"{page}?provider=toy", headers=HTML)
        assert form.status_code == 200, form.text
        assert re.search(r">\s*Toy\s*<", form.text), "no tab for the toy"
        assert "Toy team" in form.text
        added = client.post(
            page, data={"csrf_token": csrf, "kind": "toy", "team": "red", "action": "add"}
        )
        assert added.status_code == 303, added.text
        listed = client.get(page, headers=HTML)
        assert "Toy team red" in listed.text
