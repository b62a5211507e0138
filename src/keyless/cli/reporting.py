"""Terminal reporters for `keyless.publish`: the only place that draws or prints for it.

- a TTY outside CI: rich progress bars, one per file plus a total;
- anywhere else: plain lines (logs, pipes);
- GitHub Actions: plain lines plus `::add-mask::` for secrets, `::group::` per stage and
  `::error::` annotations on failure;
- GitLab CI: plain lines in collapsible sections (`section_start` / `section_end`).

Every line passes through `scrub`, which replaces masked secrets with `***`, so even a
message that quotes a token by accident does not leak it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from keyless.publish.errors import PublishError
from keyless.publish.reporter import FileResult

_STATUS_WORDS = {
    "uploaded": "uploaded",
    "exists": "exists",
    "would-upload": "would upload",
    "staged": "staged",
    "failed": "FAILED",
}
_MIN_SECRET = 6  # shorter "secrets" would scrub ordinary words out of every message


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


class PlainReporter:
    """Plain lines on `stream` (stderr by default): for logs and pipes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.RLock()
        self._secrets: list[str] = []

    # ------------------------------------------------------------------ helpers

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def write(self, line: str, stream: IO[str] | None = None) -> None:
        with self._lock:
            target = stream or self.stream
            target.write(self.scrub(line) + "\n")
            target.flush()

    def close(self) -> None:
        """End whatever is open (sections, progress display)."""

    # ---------------------------------------------------------------- Reporter

    def stage(self, title: str) -> None:
        self.write(f"==> {title}")

    def info(self, message: str) -> None:
        self.write(f"    {message}")

    def warning(self, message: str) -> None:
        self.write(f"warning: {message}")

    def error(self, error: PublishError) -> None:
        self.write(f"error: {error.message}")
        if error.hint:
            hint = error.hint.replace("\n", "\n      ")
            self.write(f"hint: {hint}")
        for key, value in error.context.items():
            if key in ("file", "url"):
                self.write(f"  {key}: {value}")

    def mask(self, secret: str) -> None:
        with self._lock:
            if len(secret) >= _MIN_SECRET and secret not in self._secrets:
                self._secrets.append(secret)
                # Longest first, so a token containing another is replaced whole.
                self._secrets.sort(key=len, reverse=True)

    def file_started(self, filename: str, size: int) -> None:
        self.write(f"    uploading {filename} ({human_size(size)})")

    def file_progress(self, filename: str, sent: int) -> None:
        pass  # a log gets no progress noise

    def file_done(self, result: FileResult) -> None:
        self.write(self.describe(result))

    @staticmethod
    def describe(result: FileResult) -> str:
        word = _STATUS_WORDS.get(result.status, result.status)
        line = f"  {word:<12} {result.filename}"
        if result.status == "exists":
            line += " (identical file already on the index)"
        if result.url:
            line += f"  {result.url}"
        if result.error:
            line += f"\n               {result.error}"
        return line


def _github_escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_escape_property(text: str) -> str:
    return _github_escape_data(text).replace(":", "%3A").replace(",", "%2C")


class GitHubReporter(PlainReporter):
    """Plain lines plus GitHub Actions workflow commands, all on one stream (stdout, where the
    runner reads commands, unless it carries the JSON result): lines on two streams would be
    interleaved out of order and fall outside their groups.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream or sys.stdout)
        self._group_open = False

    def _command(self, line: str) -> None:
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def mask(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            # Unscrubbed on purpose: the runner must see the value to mask it.
            self._command(f"::add-mask::{secret}")
        super().mask(secret)

    def stage(self, title: str) -> None:
        with self._lock:
            if self._group_open:
                self._command("::endgroup::")
            self._command(f"::group::{self.scrub(title)}")
            self._group_open = True

    def close(self) -> None:
        with self._lock:
            if self._group_open:
                self._command("::endgroup::")
                self._group_open = False

    def error(self, error: PublishError) -> None:
        super().error(error)
        text = error.message + (f"\n{error.hint}" if error.hint else "")
        title = "keyless publish"
        if "file" in error.context:
            title += f": {os.path.basename(error.context['file'])}"
        self._annotate(title, text)

    def file_done(self, result: FileResult) -> None:
        super().file_done(result)
        if result.status == "failed":
            self._annotate(f"keyless publish: {result.filename}", result.error or "failed")

    def _annotate(self, title: str, text: str) -> None:
        self._command(
            f"::error title={_github_escape_property(self.scrub(title))}::"
            f"{_github_escape_data(self.scrub(text))}"
        )


class GitLabReporter(PlainReporter):
    """Plain lines in GitLab's collapsible log sections, one per stage, on one stream."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream or sys.stdout)
        self._section: str | None = None
        self._count = 0

    def stage(self, title: str) -> None:
        with self._lock:
            self._end_section()
            self._count += 1
            name = f"keyless_publish_{self._count}"
            self._section = name
            self.write(
                f"\x1b[0Ksection_start:{int(time.time())}:{name}[collapsed=false]\r\x1b[0K"
                f"==> {title}"
            )

    def _end_section(self) -> None:
        if self._section is not None:
            self.write(f"\x1b[0Ksection_end:{int(time.time())}:{self._section}\r\x1b[0K")
            self._section = None

    def close(self) -> None:
        with self._lock:
            self._end_section()

    def error(self, error: PublishError) -> None:
        with self._lock:
            # Errors outside any collapsed section, in red, so they are seen.
            self._end_section()
            self.write(f"\x1b[31;1merror: {error.message}\x1b[0m")
            if error.hint:
                self.write("hint: " + error.hint.replace("\n", "\n      "))


class RichReporter(PlainReporter):
    """Progress bars (per file and total) on an interactive terminal."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(file=self.stream, highlight=False)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(compact=True),
            console=self.console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._sent: dict[str, int] = {}
        self._total: TaskID | None = None
        self._total_size = 0
        self._started = False

    def write(self, line: str, stream: IO[str] | None = None) -> None:
        from rich.markup import escape

        with self._lock:
            self.console.print(escape(self.scrub(line)))

    def _style(self, line: str, style: str) -> None:
        from rich.markup import escape

        with self._lock:
            self.console.print(f"[{style}]{escape(self.scrub(line))}[/{style}]")

    def stage(self, title: str) -> None:
        self._style(f"==> {title}", "bold")

    def warning(self, message: str) -> None:
        self._style(f"warning: {message}", "yellow")

    def error(self, error: PublishError) -> None:
        self._style(f"error: {error.message}", "bold red")
        if error.hint:
            self._style("hint: " + error.hint.replace("\n", "\n      "), "red")

    def file_started(self, filename: str, size: int) -> None:
        with self._lock:
            if self._total is None:
                self.progress.start()
                self._started = True
                self._total = self.progress.add_task("total", total=0)
            self._tasks[filename] = self.progress.add_task(filename, total=size)
            self._sent[filename] = 0
            self._total_size += size
            self.progress.update(self._total, total=self._total_size)

    def file_progress(self, filename: str, sent: int) -> None:
        with self._lock:
            task = self._tasks.get(filename)
            if task is None:
                return
            self.progress.update(task, completed=sent)
            self._sent[filename] = sent
            if self._total is not None:
                self.progress.update(self._total, completed=sum(self._sent.values()))

    def file_done(self, result: FileResult) -> None:
        with self._lock:
            task = self._tasks.get(result.filename)
            if task is not None:
                self.progress.update(task, completed=result.size, visible=False)
                self._sent[result.filename] = result.size
                if self._total is not None:
                    self.progress.update(self._total, completed=sum(self._sent.values()))
        style = {"failed": "red", "exists": "cyan", "uploaded": "green"}.get(result.status, "")
        line = self.describe(result)
        if style:
            self._style(line, style)
        else:
            self.write(line)

    def close(self) -> None:
        with self._lock:
            if self._started:
                self.progress.stop()
                self._started = False


def in_ci(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("CI")) or any(
        environ.get(name) for name in ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI")
    )


def make_reporter(
    environ: Mapping[str, str] | None = None,
    *,
    stream: IO[str] | None = None,
    stdout_is_data: bool = False,
) -> PlainReporter:
    """The reporter that suits where we run (see the module docstring).

    `stdout_is_data`: stdout carries a machine-readable result, so nothing else goes there.
    """
    env = os.environ if environ is None else environ
    # A CI log is one stream: use stdout there (GitHub reads its commands from it), unless
    # stdout carries data. Elsewhere messages go to stderr, keeping stdout for results.
    ci_stream = stream or (sys.stderr if stdout_is_data else sys.stdout)
    if env.get("GITHUB_ACTIONS") == "true":
        return GitHubReporter(ci_stream)
    if env.get("GITLAB_CI") == "true":
        return GitLabReporter(ci_stream)
    out = stream or sys.stderr
    if _is_tty(out) and not in_ci(env) and env.get("TERM") != "dumb":
        return RichReporter(out)
    return PlainReporter(out)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """`text` without terminal escape sequences (for tests and log files)."""
    return _ANSI.sub("", text)
