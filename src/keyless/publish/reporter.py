"""How the library tells its caller what happens: a reporter interface, never the terminal.

The library calls a `Reporter`; the CLI supplies one that draws progress bars or prints CI
annotations, tests supply a `RecordingReporter`. Reporter methods may be called from the
upload worker threads, so implementations must be thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from keyless.publish.errors import PublishError

FileStatus = Literal["uploaded", "exists", "failed", "would-upload", "staged"]
# Statuses that leave the index holding exactly the local file (or, dry run, would; or, staged,
# will once its upload session is published).
SUCCESS_STATUSES: frozenset[str] = frozenset({"uploaded", "exists", "would-upload", "staged"})


@dataclass
class FileResult:
    """The outcome for one distribution file.

    ``status``: "uploaded"; "exists" (identical bytes were already on the index: success, no
    upload); "failed" (``error`` says why); "would-upload" (dry run); "staged" (in a PEP 694
    upload session, visible once it is published). ``url`` is where the index
    serves the file, when known.
    """

    filename: str
    status: str
    url: str | None
    sha256: str
    size: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS_STATUSES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Reporter(Protocol):
    """Receives everything the library has to say. Must be thread-safe."""

    def stage(self, title: str) -> None:
        """A new phase begins (e.g. "Checking 2 distributions")."""

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def error(self, error: PublishError) -> None: ...

    def mask(self, secret: str) -> None:
        """Never show `secret` again (GitHub: `::add-mask::`)."""

    def file_started(self, filename: str, size: int) -> None: ...

    def file_progress(self, filename: str, sent: int) -> None:
        """`sent` bytes of the file's body are on the wire (restarts at 0 on a retry)."""

    def file_done(self, result: FileResult) -> None: ...


class NullReporter:
    """Says nothing."""

    def stage(self, title: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def error(self, error: PublishError) -> None:
        pass

    def mask(self, secret: str) -> None:
        pass

    def file_started(self, filename: str, size: int) -> None:
        pass

    def file_progress(self, filename: str, sent: int) -> None:
        pass

    def file_done(self, result: FileResult) -> None:
        pass


class RecordingReporter:
    """Keeps every call as `(method, argument)` in `events`, in order; for tests."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def _add(self, kind: str, value: Any) -> None:
        with self._lock:
            self.events.append((kind, value))

    def stage(self, title: str) -> None:
        self._add("stage", title)

    def info(self, message: str) -> None:
        self._add("info", message)

    def warning(self, message: str) -> None:
        self._add("warning", message)

    def error(self, error: PublishError) -> None:
        self._add("error", error)

    def mask(self, secret: str) -> None:
        self._add("mask", secret)

    def file_started(self, filename: str, size: int) -> None:
        self._add("file_started", (filename, size))

    def file_progress(self, filename: str, sent: int) -> None:
        self._add("file_progress", (filename, sent))

    def file_done(self, result: FileResult) -> None:
        self._add("file_done", result)

    def of(self, kind: str) -> list[Any]:
        """The arguments of every call to `kind`, in order."""
        with self._lock:
            return [value for event, value in self.events if event == kind]
