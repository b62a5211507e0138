"""PEP 694 upload sessions ("Upload 2.0"): the index's side.

Implemented: PEP 694 as of python/peps commit f24540568 (peps/pep-0694.rst, 2026-07-29):
publishing sessions (create, status, extend, cancel, publish), file upload sessions with the
`http-post-bytes` mechanism (create, bytes, complete, status, delete) and the stage preview.

- `state.py`: the rows as read models, tokens, the effective status (an expired session
  answers as canceled), the refusal class.
- `access.py`: the rule every request of a session passes, against current rights.
- `sessions.py`: `UploadSessions`, the use case of publishing sessions; publishing goes through
  `releases.add_files` in one write transaction.
- `files.py`: `SessionFiles`, the use case of file upload sessions; a file passes the legacy
  upload's checks (`uploads.check_file`, `inspect_artifact`) with the legacy texts.
"""

from __future__ import annotations

from .files import SessionFiles
from .sessions import UploadSessions
from .state import FileState, SessionRefused, SessionState

__all__ = ["FileState", "SessionFiles", "SessionRefused", "SessionState", "UploadSessions"]
