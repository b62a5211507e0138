"""Who may act on a session: checked on every request, against current rights.

The legacy upload's rule (`uploads.check_permission`), read inside the request's own
transaction with the token as it is now (`uploads.current_uploader`): a token revoked or a
trusted publisher removed since the session began is refused (403) on its next request. Any
identity allowed to upload to the project may act on its session — a second trusted publisher
linked to the project joins the session a first one opened (PEP 694 allows several). A session
for a project that does not exist yet belongs to the user who opened it: the name is theirs
until the session ends.
"""

from __future__ import annotations

from typing import Any

from packaging.utils import NormalizedName
from sqlalchemy import Connection

from ..accounts import Identity
from ..indexes import IndexInfo
from ..projects import ProjectRow, find_project
from ..uploads import UploadRejected, check_permission, current_uploader
from .state import SessionRefused


def refused(exc: UploadRejected) -> SessionRefused:
    """The legacy upload's refusal, as a session's (same text, same status)."""
    return SessionRefused(exc.message, exc.status)


def for_index(identity: Identity, index: IndexInfo) -> None:
    if not identity.allows_index(index.id):
        raise SessionRefused(
            f"This API token is for another index, not '{index.name}'. "
            "Create a token for this index with `keyless token create`.",
            403,
        )


def current_project(conn: Connection, index: IndexInfo, name: NormalizedName) -> ProjectRow | None:
    row = find_project(conn, index.id, name)
    return None if row is None else ProjectRow.of(row)


def authorize(
    conn: Connection, identity: Identity, index: IndexInfo, session: Any
) -> tuple[Identity, ProjectRow | None]:
    """The identity as it is now, allowed to act on `session`; raises SessionRefused (403)."""
    try:
        current = current_uploader(conn, identity)
        for_index(current, index)
        name = NormalizedName(session.normalized_name)
        project = current_project(conn, index, name)
        if project is None and (current.user_id is None or current.user_id != session.user_id):
            raise SessionRefused(
                f"This upload session creates the project '{session.name}', which is reserved "
                "for the user who opened it; other identities may join it once the project "
                "exists.",
                403,
            )
        check_permission(conn, current, index, project, name)
    except UploadRejected as exc:
        raise refused(exc) from None
    return current, project
