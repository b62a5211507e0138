"""Small presentation helpers: sizes, times, safe links, the rendered description."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup

from ..accounts import as_utc
from ..rendering import Descriptions


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} bytes"  # pragma: no cover - the loop always returns


def _utc(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return as_utc(moment).astimezone(UTC)


def when(moment: datetime | str | None) -> str:
    return "" if moment is None else _utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def iso(moment: datetime | str | None) -> str:
    return "" if moment is None else _utc(moment).isoformat()


def unix_when(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return ""
    return when(datetime.fromtimestamp(seconds, UTC))


def short_sha(value: str | None) -> str:
    return (value or "")[:12]


def safe_url(value: object) -> str:
    """The URL if it is http(s), else "": values from tokens or metadata never become
    `javascript:` links."""
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return ""


def description_html(
    descriptions: Descriptions, text: str | None, content_type: str | None
) -> Markup:
    """The long description as HTML, the way PyPI renders it (blocking: call on a thread).

    Rendered in a worker process with a deadline (keyless.index.rendering), so a page can
    never hold the server. readme_renderer sanitizes its output (nh3 allow-list: no scripts,
    no event handlers, no javascript: links) and anything it cannot render in time is shown
    as escaped text, which is why — and the only place where — HTML is marked safe.
    """
    if not text:
        return Markup("")
    return Markup(descriptions.html(text, content_type))  # noqa: S704 - sanitized, see above


ACTION_LABELS = {
    "mint_token": "Trusted publisher token minted",
    "file_upload": "File uploaded",
    "add_publisher": "Trusted publisher added",
    "remove_publisher": "Trusted publisher removed",
    "add_pending_publisher": "Pending publisher added",
    "create_project_from_pending_publisher": "Project created by a pending publisher",
    "yank_release": "Release yanked",
    "unyank_release": "Release unyanked",
    "set_status": "Project status changed",
    "add_role": "Role granted",
    "promote_release": "Release promoted",
    "upload_session_create": "Upload session opened",
    "upload_session_publish": "Upload session published",
    "upload_session_cancel": "Upload session canceled",
}

# The history page's filters: a label and the journal actions it shows.
ACTION_FILTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mints": ("Token mints", ("mint_token",)),
    "uploads": (
        "Uploads",
        (
            "file_upload",
            "promote_release",
            "upload_session_create",
            "upload_session_publish",
            "upload_session_cancel",
        ),
    ),
    "publishers": (
        "Publisher changes",
        (
            "add_publisher",
            "remove_publisher",
            "add_pending_publisher",
            "create_project_from_pending_publisher",
        ),
    ),
    "yanks": ("Yanks", ("yank_release", "unyank_release")),
    "project": ("Status and roles", ("set_status", "add_role")),
}


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action.replace("_", " ").capitalize())


# What a page says after a change it redirected from (`?done=`); fixed texts, never echoed input.
DONE_MESSAGES = {
    "added": "The trusted publisher was added.",
    "removed": "The trusted publisher was removed; tokens minted from it no longer work.",
    # None for "yanked" and "archived": the page they lead to states it already, with the
    # reason, and saying it twice read as two events.
    "unyanked": "The release is no longer yanked.",
    "active": "The project is active again.",
    "revoked": "The token was revoked: it no longer works.",
    "pending-added": (
        "The pending publisher was added; its first trusted publish creates the project."
    ),
    "pending-removed": "The pending publisher was removed.",
    "user-added": "The user was added.",
    "index-added": "The index was created and serves at once.",
    "signed-out": "You are signed out.",
}
