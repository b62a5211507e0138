"""Notifications against a local webhook receiver and a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from keyless.publish.errors import PublishError
from keyless.publish.notify import (
    NotifyConfig,
    ReleaseEvent,
    load_notify_config,
    notify,
    safe_url,
    slack_payload,
    webhook_payload,
)
from keyless.publish.reporter import RecordingReporter
from tests.conftest import free_port

FILES = (
    {
        "filename": "demo-1.2.0-py3-none-any.whl",
        "sha256": "a" * 64,
        "size": 1234,
        "url": "https://idx.example/files/aaa/demo-1.2.0-py3-none-any.whl",
    },
    {
        "filename": "demo-1.2.0.tar.gz",
        "sha256": "b" * 64,
        "size": 999,
        "url": "https://idx.example/files/bbb/demo-1.2.0.tar.gz",
    },
)
SUCCESS = ReleaseEvent(
    succeeded=True,
    project="demo",
    version="1.2.0",
    index="https://idx.example/prod/simple/",
    files=FILES,
    notes="### Added\n\n- Promotion.",
    url="https://idx.example/prod/pypi/demo/1.2.0/json",
)
FAILURE = ReleaseEvent(
    succeeded=False,
    project="demo",
    version="1.2.0",
    index="https://idx.example/prod/simple/",
    files=FILES,
    stage="install-test",
    error="the smoke command exited with 1",
)


# ------------------------------------------------------------------ a webhook receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A tiny HTTP server on 127.0.0.1 that records every POST."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            state.requests.append(
                Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            self.send_response(state.status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------ an SMTP server


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append((envelope, email.message_from_bytes(content)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


# ------------------------------------------------------------------ tests


def test_webhook_and_slack_receive_the_exact_content(receiver: Receiver) -> None:
    config = NotifyConfig(
        webhooks=(f"{receiver.url}/generic",), slack=(f"{receiver.url}/services/T0/B0/SECRET",)
    )
    reporter = RecordingReporter()
    with httpx.Client() as http:
        deliveries = notify(
            SUCCESS,
            config,
            http=http,
            reporter=reporter,
            environ={"KEYLESS_NOTIFY_WEBHOOK_SECRET": "hook-secret"},
        )

    assert [d.ok for d in deliveries] == [True, True]
    generic, slack = receiver.requests
    assert generic.path == "/generic"
    assert generic.json() == {
        "event": "release.succeeded",
        "project": "demo",
        "version": "1.2.0",
        "index": "https://idx.example/prod/simple/",
        "files": [dict(f) for f in FILES],
        "stage": None,
        "error": None,
        "notes": "### Added\n\n- Promotion.",
        "url": "https://idx.example/prod/pypi/demo/1.2.0/json",
        "session": None,  # not released through a PEP 694 upload session
    }
    assert generic.headers["x-keyless-event"] == "release.succeeded"
    expected = hmac.new(b"hook-secret", generic.body, hashlib.sha256).hexdigest()
    assert generic.headers["x-keyless-signature"] == f"sha256={expected}"

    body = slack.json()
    assert (
        body["text"] == ":white_check_mark: demo 1.2.0 released to https://idx.example/prod/simple/"
    )
    texts = json.dumps(body["blocks"])
    assert "Promotion." in texts
    assert "demo-1.2.0.tar.gz" in texts
    assert all(block["type"] in ("section", "context") for block in body["blocks"])

    # Nothing secret in what the reporter was told: the Slack path is the secret.
    said = json.dumps([str(v) for _, v in reporter.events])
    assert "SECRET" not in said
    assert "hook-secret" in reporter.of("mask")
    assert reporter.of("warning") == []


def test_failure_names_the_stage_and_error(receiver: Receiver) -> None:
    config = NotifyConfig(webhooks=(receiver.url + "/",), slack=(receiver.url + "/slack",))
    with httpx.Client() as http:
        notify(FAILURE, config, http=http, reporter=RecordingReporter(), environ={})
    generic, slack = receiver.requests
    payload = generic.json()
    assert payload["event"] == "release.failed"
    assert payload["stage"] == "install-test"
    assert payload["error"] == "the smoke command exited with 1"
    assert [f["filename"] for f in payload["files"]] == [f["filename"] for f in FILES]
    assert slack.json()["text"] == (
        ":x: demo 1.2.0 release failed at stage 'install-test': the smoke command exited with 1"
    )
    assert "*Stage*\\ninstall-test" in json.dumps(slack.json()["blocks"])


def test_a_failing_notification_is_a_warning(receiver: Receiver) -> None:
    receiver.status = 500
    dead = f"http://127.0.0.1:{free_port()}/token-in-path"
    config = NotifyConfig(webhooks=(receiver.url + "/down", dead))
    reporter = RecordingReporter()
    with httpx.Client() as http:
        deliveries = notify(SUCCESS, config, http=http, reporter=reporter, environ={})
    assert [d.ok for d in deliveries] == [False, False]
    assert deliveries[0].error == "HTTP 500"
    assert len(receiver.requests) == 2  # a 5xx is tried once more
    warnings = reporter.of("warning")
    assert len(warnings) == 2
    assert all("the release itself is not affected" in w for w in warnings)
    assert not any("token-in-path" in w for w in warnings)


def test_email_arrives_with_the_content(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    config = load_notify_config(
        {
            "email": {
                "to": ["team@example.com", "lead@example.com"],
                "from": "rel@example.com",
                "smtp": f"127.0.0.1:{port}",
            }
        },
        {},
    )
    reporter = RecordingReporter()
    with httpx.Client() as http:
        deliveries = notify(FAILURE, config, http=http, reporter=reporter, environ={})
    assert [d.ok for d in deliveries] == [True], deliveries
    envelope, message = inbox.messages[0]
    assert envelope.mail_from == "rel@example.com"
    assert envelope.rcpt_tos == ["team@example.com", "lead@example.com"]
    assert message["Subject"] == "[keyless] demo 1.2.0 FAILED"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert "Stage:   install-test" in text
    assert "the smoke command exited with 1" in text
    assert "demo-1.2.0-py3-none-any.whl" in text
    assert f"sha256={'a' * 64}" in text

    with httpx.Client() as http:
        notify(SUCCESS, config, http=http, reporter=reporter, environ={})
    _, released = inbox.messages[1]
    assert released["Subject"] == "[keyless] demo 1.2.0 released"
    payload = released.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert "- Promotion." in payload.decode()


def test_unreachable_smtp_is_a_warning() -> None:
    config = load_notify_config(
        {},
        {
            "KEYLESS_NOTIFY_EMAIL": "a@example.com",
            "KEYLESS_NOTIFY_EMAIL_FROM": "b@example.com",
            "KEYLESS_SMTP_HOST": "127.0.0.1",
            "KEYLESS_SMTP_PORT": str(free_port()),
            "KEYLESS_SMTP_USERNAME": "bot",
            "KEYLESS_SMTP_PASSWORD": "smtp-password",
        },
    )
    reporter = RecordingReporter()
    with httpx.Client() as http:
        deliveries = notify(SUCCESS, config, http=http, reporter=reporter, environ={})
    assert not deliveries[0].ok
    assert "smtp-password" in reporter.of("mask")
    assert "smtp-password" not in repr(config)
    assert "smtp-password" not in json.dumps(reporter.of("warning"))


def test_configuration_from_pyproject_and_environment() -> None:
    config = load_notify_config(
        {
            "webhook": ["https://a.example/hook", "https://b.example/hook"],
            "slack": "https://hooks.slack.com/services/X",
            "email": {
                "to": ["t@example.com"],
                "from": "f@example.com",
                "smtp": "mail.example",
                "starttls": True,
            },
        },
        {
            "KEYLESS_NOTIFY_WEBHOOK": "https://c.example/hook, https://a.example/hook",
            "KEYLESS_SMTP_PORT": "2525",
            "KEYLESS_SMTP_PASSWORD": "pw",
            "KEYLESS_SMTP_USERNAME": "user",
        },
    )
    assert config.webhooks == (
        "https://a.example/hook",
        "https://b.example/hook",
        "https://c.example/hook",
    )
    assert config.slack == ("https://hooks.slack.com/services/X",)
    assert config.email is not None
    assert (config.email.host, config.email.port, config.email.starttls) == (
        "mail.example",
        2525,
        True,
    )
    assert (config.email.username, config.email.password) == ("user", "pw")
    assert config.describe()[3] == "slack https://hooks.slack.com/…"
    assert load_notify_config(None, {}).empty
    default_port = load_notify_config(
        {
            "email": {
                "to": ["t@example.com"],
                "from": "f@example.com",
                "smtp": "m.example",
                "starttls": True,
            }
        },
        {},
    )
    assert default_port.email is not None
    assert default_port.email.port == 587


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"webhook": "ftp://x"}, "not an http"),
        ({"webhook": 3}, "a URL or a list of URLs"),
        (
            {
                "email": {
                    "to": ["t@example.com"],
                    "from": "f@example.com",
                    "smtp": "m",
                    "password": "x",
                }
            },
            "must not hold a password",
        ),
        ({"email": {"to": ["t@example.com"], "smtp": "m"}}, "set the sender"),
        ({"email": {"to": ["t@example.com"], "from": "f@example.com"}}, "set the SMTP server"),
        ({"email": {"to": "nobody"}}, "list of email addresses"),
        ({"teams": "https://x"}, "unknown setting"),
    ],
)
def test_malformed_configuration(table: dict[str, Any], message: str) -> None:
    with pytest.raises(PublishError, match=message):
        load_notify_config(table, {})


def test_payload_builders_are_pure() -> None:
    assert webhook_payload(FAILURE)["event"] == "release.failed"
    long_notes = ReleaseEvent(True, "demo", "1.0", "x", notes="n" * 10_000)
    for block in slack_payload(long_notes)["blocks"]:
        if "text" in block and isinstance(block["text"], dict):
            assert len(block["text"]["text"]) <= 3000
    assert safe_url("https://hooks.slack.com/services/T/B/x?y=1") == "https://hooks.slack.com/…"
