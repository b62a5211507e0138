"""Release notifications: a generic JSON webhook, a Slack-compatible webhook, and email (SMTP).

Configured in pyproject.toml and/or the environment (the environment adds webhooks and
overrides email fields, so CI secrets can hold what must not be committed):

    [tool.keyless.notify]
    webhook = "https://ci.example.com/hooks/release"      # or a list of URLs
    slack = "https://hooks.slack.com/services/…"          # better: KEYLESS_NOTIFY_SLACK

    [tool.keyless.notify.email]
    to = ["team@example.com"]
    from = "release@example.com"
    smtp = "smtp.example.com:587"
    starttls = true

    KEYLESS_NOTIFY_WEBHOOK, KEYLESS_NOTIFY_SLACK        URLs (several: separated by spaces/commas)
    KEYLESS_NOTIFY_WEBHOOK_SECRET                       signs the generic webhook's body (HMAC)
    KEYLESS_NOTIFY_EMAIL, KEYLESS_NOTIFY_EMAIL_FROM     recipients (comma-separated), sender
    KEYLESS_SMTP_HOST, KEYLESS_SMTP_PORT                the SMTP server
    KEYLESS_SMTP_STARTTLS, KEYLESS_SMTP_SSL             1/true/yes to use STARTTLS / implicit TLS
    KEYLESS_SMTP_USERNAME, KEYLESS_SMTP_PASSWORD        login (environment only, never pyproject)

Secrets never reach the reporter: webhook URLs are shown as scheme://host only, and the SMTP
password is neither shown nor kept in any repr. Sending never raises: a notification that
fails is a warning, not a failed release.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import httpx

from keyless.publish.errors import PublishError
from keyless.publish.reporter import Reporter

TIMEOUT = 15.0
SLACK_TEXT_LIMIT = 2900  # Slack refuses a section text over 3000 characters
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class EmailConfig:
    """Where and how to send the release email. The password only ever comes from the
    environment and is left out of `repr`."""

    to: tuple[str, ...]
    sender: str
    host: str
    port: int
    starttls: bool = False
    use_ssl: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NotifyConfig:
    webhooks: tuple[str, ...] = ()
    slack: tuple[str, ...] = ()
    email: EmailConfig | None = None

    @property
    def empty(self) -> bool:
        return not (self.webhooks or self.slack or self.email)

    def describe(self) -> list[str]:
        """The channels, secrets left out: for "will notify …" lines."""
        lines = [f"webhook {safe_url(url)}" for url in self.webhooks]
        lines += [f"slack {safe_url(url)}" for url in self.slack]
        if self.email:
            lines.append(
                f"email to {', '.join(self.email.to)} via {self.email.host}:{self.email.port}"
            )
        return lines


@dataclass(frozen=True)
class ReleaseEvent:
    """What a notification says about a release (success or failure)."""

    succeeded: bool
    project: str
    version: str
    index: str  # where the release went (success) or was going (failure): a URL
    files: tuple[Mapping[str, Any], ...] = ()  # {"filename", "sha256", "size", "url"}
    stage: str | None = None  # the stage that failed
    error: str | None = None
    notes: str | None = None
    url: str | None = None  # the release's page or JSON on the index
    # When the release went through a PEP 694 upload session on the index: its final status,
    # "published", or "canceled" (nothing of the release was ever visible).
    session: str | None = None

    @property
    def name(self) -> str:
        return "release.succeeded" if self.succeeded else "release.failed"

    def summary(self) -> str:
        if self.succeeded:
            text = f"{self.project} {self.version} released to {self.index}"
            return text + (" (upload session published)" if self.session else "")
        text = f"{self.project} {self.version} release failed at stage '{self.stage}'"
        if self.session == "canceled":
            text += " (upload session canceled: nothing was published)"
        elif self.session:
            text += f" (upload session {self.session})"
        return text


@dataclass(frozen=True)
class Delivery:
    """The outcome of one notification; `target` never contains a secret."""

    channel: str  # "webhook" | "slack" | "email"
    target: str
    ok: bool
    error: str | None = None


def safe_url(url: str) -> str:
    """scheme://host[:port]/… — a webhook URL's path and query are often its secret."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/…"


# ------------------------------------------------------------------ configuration


def _urls(value: object, where: str) -> list[str]:
    if value is None:
        return []
    items = _SPLIT.split(value.strip()) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise PublishError(f"{where} must be a URL or a list of URLs.")
    urls = [i for i in items if i]
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https"):
            raise PublishError(
                f"{where}: {safe_url(url) if '://' in url else repr(url)} is not an http(s) URL."
            )
    return urls


def _flag(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise PublishError(f"{where} must be true or false, not {value!r}.")


def _host_port(text: str, where: str) -> tuple[str, int | None]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        return text.strip(), None
    if not port.isdigit():
        raise PublishError(f"{where} must be host or host:port, not {text!r}.")
    return host.strip("[]"), int(port)


def _email(table: Mapping[str, Any], environ: Mapping[str, str]) -> EmailConfig | None:
    where = "[tool.keyless.notify] email"
    if "password" in table:
        raise PublishError(
            f"{where} must not hold a password: set KEYLESS_SMTP_PASSWORD in the environment "
            "(a CI secret) instead."
        )
    to_value: object = environ.get("KEYLESS_NOTIFY_EMAIL") or table.get("to")
    if to_value is None:
        return None
    to = _SPLIT.split(to_value.strip()) if isinstance(to_value, str) else to_value
    if not isinstance(to, list | tuple) or not all(isinstance(a, str) and "@" in a for a in to):
        raise PublishError(f"{where}.to must be a list of email addresses.")
    sender = environ.get("KEYLESS_NOTIFY_EMAIL_FROM") or table.get("from")
    if not isinstance(sender, str) or "@" not in sender:
        raise PublishError(
            f'{where}: set the sender with from = "release@…" or KEYLESS_NOTIFY_EMAIL_FROM.'
        )
    smtp = environ.get("KEYLESS_SMTP_HOST") or table.get("smtp") or table.get("host")
    if not isinstance(smtp, str) or not smtp.strip():
        raise PublishError(
            f'{where}: set the SMTP server with smtp = "host:port" or KEYLESS_SMTP_HOST.'
        )
    host, port = _host_port(smtp, f"{where}.smtp")
    port_value: object = environ.get("KEYLESS_SMTP_PORT") or table.get("port") or port
    starttls = _flag(environ.get("KEYLESS_SMTP_STARTTLS", table.get("starttls", False)), "starttls")
    use_ssl = _flag(environ.get("KEYLESS_SMTP_SSL", table.get("ssl", False)), "ssl")
    if port_value is None:
        port_value = 465 if use_ssl else 587 if starttls else 25
    try:
        port_number = int(str(port_value))
    except ValueError:
        raise PublishError(
            f"{where}: the SMTP port must be a number, not {port_value!r}."
        ) from None
    username = environ.get("KEYLESS_SMTP_USERNAME") or table.get("username")
    password = environ.get("KEYLESS_SMTP_PASSWORD")
    return EmailConfig(
        to=tuple(to),
        sender=sender,
        host=host,
        port=port_number,
        starttls=starttls,
        use_ssl=use_ssl,
        username=str(username) if username else None,
        password=password or None,
    )


def load_notify_config(table: Mapping[str, Any] | None, environ: Mapping[str, str]) -> NotifyConfig:
    """The channels from `[tool.keyless.notify]` (`table`, may be None) and the environment.

    Raises PublishError naming the setting that is malformed.
    """
    table = table or {}
    if not isinstance(table, Mapping):
        raise PublishError("[tool.keyless.notify] must be a table.")
    unknown = set(table) - {"webhook", "slack", "email"}
    if unknown:
        raise PublishError(
            f"[tool.keyless.notify]: unknown setting(s) {', '.join(sorted(unknown))}; "
            "use webhook, slack and email."
        )
    webhooks = _urls(table.get("webhook"), "[tool.keyless.notify] webhook")
    webhooks += _urls(environ.get("KEYLESS_NOTIFY_WEBHOOK"), "KEYLESS_NOTIFY_WEBHOOK")
    slack = _urls(table.get("slack"), "[tool.keyless.notify] slack")
    slack += _urls(environ.get("KEYLESS_NOTIFY_SLACK"), "KEYLESS_NOTIFY_SLACK")
    email_table = table.get("email") or {}
    if not isinstance(email_table, Mapping):
        raise PublishError("[tool.keyless.notify] email must be a table.")
    return NotifyConfig(
        webhooks=tuple(dict.fromkeys(webhooks)),
        slack=tuple(dict.fromkeys(slack)),
        email=_email(email_table, environ),
    )


# ------------------------------------------------------------------ messages


def webhook_payload(event: ReleaseEvent) -> dict[str, Any]:
    """The generic webhook's JSON body."""
    return {
        "event": event.name,
        "project": event.project,
        "version": event.version,
        "index": event.index,
        "files": [dict(f) for f in event.files],
        "stage": event.stage,
        "error": event.error,
        "notes": event.notes,
        "url": event.url,
        "session": event.session,
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def slack_payload(event: ReleaseEvent) -> dict[str, Any]:
    """A Slack incoming-webhook body (`text` for notifications, `blocks` for the message)."""
    icon = ":white_check_mark:" if event.succeeded else ":x:"
    title = f"{icon} {event.summary()}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
    ]
    fields = [
        {"type": "mrkdwn", "text": f"*Project*\n{event.project}"},
        {"type": "mrkdwn", "text": f"*Version*\n{event.version}"},
        {"type": "mrkdwn", "text": f"*Index*\n{event.index}"},
    ]
    if not event.succeeded:
        fields.append({"type": "mrkdwn", "text": f"*Stage*\n{event.stage}"})
    blocks.append({"type": "section", "fields": fields})
    if event.error:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Error*\n```" + _clip(event.error, SLACK_TEXT_LIMIT - 20) + "```",
                },
            }
        )
    if event.notes:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Release notes*\n" + _clip(event.notes, SLACK_TEXT_LIMIT - 20),
                },
            }
        )
    if event.files:
        names = ", ".join(f"`{f['filename']}`" for f in event.files)
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(names, 2900)}]}
        )
    if event.url:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"<{event.url}|{event.url}>"}}
        )
    text = title if not event.error else f"{title}: {_clip(event.error, 500)}"
    return {"text": text, "blocks": blocks}


def email_message(event: ReleaseEvent, config: EmailConfig) -> EmailMessage:
    """The release email (plain text)."""
    message = EmailMessage()
    status = "released" if event.succeeded else "FAILED"
    message["Subject"] = f"[keyless] {event.project} {event.version} {status}"
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain="keyless.invalid")
    lines = [event.summary() + ".", ""]
    lines += [f"Project: {event.project}", f"Version: {event.version}", f"Index:   {event.index}"]
    if event.url:
        lines.append(f"URL:     {event.url}")
    if not event.succeeded:
        lines += [f"Stage:   {event.stage}", "", "Error:", event.error or "(none given)"]
    if event.files:
        lines += ["", "Files:"]
        lines += [f"  {f['filename']}  sha256={f.get('sha256', '?')}" for f in event.files]
    if event.notes:
        lines += ["", "Release notes:", "", event.notes]
    message.set_content("\n".join(lines) + "\n")
    return message


# ------------------------------------------------------------------ sending


def _post(
    http: httpx.Client, url: str, body: bytes, headers: Mapping[str, str], attempts: int = 2
) -> str | None:
    """POST; None on a 2xx, else what went wrong (never the URL: it may be the secret)."""
    problem = "not sent"
    for _ in range(attempts):
        try:
            answer = http.post(url, content=body, headers=dict(headers), timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {_scrub(str(exc), url)}"
            continue
        if 200 <= answer.status_code < 300:
            return None
        problem = f"HTTP {answer.status_code}"
        if answer.status_code < 500 and answer.status_code != 429:
            break
    return problem


def _scrub(text: str, url: str) -> str:
    return text.replace(url, safe_url(url))


def send_email(event: ReleaseEvent, config: EmailConfig, environ: Mapping[str, str]) -> None:
    """Send the release email. Raises OSError/smtplib.SMTPException when it cannot be sent."""
    cafile = environ.get("SSL_CERT_FILE") or None
    context = ssl.create_default_context(cafile=cafile)
    message = email_message(event, config)
    smtp: smtplib.SMTP
    if config.use_ssl:
        smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=TIMEOUT, context=context)
    else:
        smtp = smtplib.SMTP(config.host, config.port, timeout=TIMEOUT)
    with smtp:
        if config.starttls and not config.use_ssl:
            smtp.starttls(context=context)
        if config.username and config.password:
            smtp.login(config.username, config.password)
        smtp.send_message(message)


def notify(
    event: ReleaseEvent,
    config: NotifyConfig,
    *,
    http: httpx.Client,
    reporter: Reporter,
    environ: Mapping[str, str],
) -> list[Delivery]:
    """Send `event` on every configured channel; never raises.

    Each failure is reported as a warning (secrets left out) and returned as a Delivery.
    """
    deliveries: list[Delivery] = []
    body = json.dumps(webhook_payload(event), sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "keyless-release"}
    secret = environ.get("KEYLESS_NOTIFY_WEBHOOK_SECRET")
    if secret:
        reporter.mask(secret)
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        headers["X-Keyless-Signature"] = f"sha256={digest}"
    sends: list[tuple[str, str, bytes, Mapping[str, str]]] = [
        ("webhook", url, body, {**headers, "X-Keyless-Event": event.name})
        for url in config.webhooks
    ]
    slack_body = json.dumps(slack_payload(event)).encode("utf-8")
    sends += [
        ("slack", url, slack_body, {"Content-Type": "application/json"}) for url in config.slack
    ]
    for channel, url, content, channel_headers in sends:
        problem = _post(http, url, content, channel_headers)
        deliveries.append(Delivery(channel, safe_url(url), problem is None, problem))
    if config.email is not None:
        target = f"{', '.join(config.email.to)} via {config.email.host}:{config.email.port}"
        if config.email.password:
            reporter.mask(config.email.password)
        try:
            send_email(event, config.email, environ)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            text = str(exc)
            if config.email.password:
                text = text.replace(config.email.password, "***")
            deliveries.append(Delivery("email", target, False, f"{type(exc).__name__}: {text}"))
        else:
            deliveries.append(Delivery("email", target, True))
    for delivery in deliveries:
        if delivery.ok:
            reporter.info(f"notified {delivery.channel} {delivery.target}")
        else:
            reporter.warning(
                f"could not notify {delivery.channel} {delivery.target}: {delivery.error} "
                "(the release itself is not affected)"
            )
    return deliveries


def files_of(results: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """Notification file entries from FileResult-like objects (filename, sha256, size, url)."""
    return tuple(
        {
            "filename": r.filename,
            "sha256": r.sha256,
            "size": r.size,
            "url": r.url,
        }
        for r in results
    )
