"""Who may act on a session: checked on every request, against current rights.

The legacy upload's rule (`uploads.check_permission`), read inside the request's own
transaction with the token as it is now: a token revoked or a trusted publisher removed since
the session began is refused (403) on its next request. Any identity allowed to upload to the
project may act on its session — a second trusted publisher linked to the project joins the
session a first one opened (PEP 694 allows several). A session for a project that does not
exist yet belongs to the user who opened it: the name is theirs until the session ends.

A request presents its API token (`Presented`); the use case authenticates it as the first
statement of its own transaction (`caller_now`), so that the token's answer and the rights
checked with it come from one snapshot, and no transaction is spent on authenticating alone:
that was three of the eight transactions of a file's three requests. In-process callers
(tests, finishing an interrupted publish) pass an `Identity`, re-read by its token id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName
from sqlalchemy import Connection

from ..accounts import Identity, as_utc, now, token_identity
from ..indexes import IndexInfo
from ..projects import ProjectRow, find_project
from ..uploads import UploadRejected, check_permission, current_uploader
from .state import LIVE, SessionRefused, session_project


@dataclass(frozen=True)
class Presented:
    """The API token a request presented, not yet authenticated (see the module docstring)."""

    token: str

    def __repr__(self) -> str:  # never the secret itself, in a traceback or a log
        return "Presented(token=...)"


Credentials = Identity | Presented


def caller_now(conn: Connection, caller: Credentials) -> Identity:
    """The caller as the database on `conn` says it is now.

    A presented token that is unknown, revoked or expired raises `InvalidCredentials` (the
    route answers 401 or 403, as for a token refused before anything else); an identity
    whose token may no longer act raises SessionRefused (403), as the legacy upload refuses it.
    """
    if isinstance(caller, Presented):
        return token_identity(conn, caller.token)
    try:
        return current_uploader(conn, caller)
    except UploadRejected as exc:
        raise refused(exc) from None


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
    conn: Connection, current: Identity, index: IndexInfo, session: Any
) -> ProjectRow | None:
    """The session's project (None: not created yet), if `current` — the caller as read in
    this transaction (`caller_now`) — may act on `session`, a row `find_session` read in
    this transaction; raises SessionRefused (403)."""
    try:
        for_index(current, index)
        name = NormalizedName(session.normalized_name)
        project = session_project(session)  # read with the session, in this transaction
        if project is None and (current.user_id is None or current.user_id != session.user_id):
            raise SessionRefused(
                f"This upload session creates the project '{session.name}', which is reserved "
                "for the user who opened it; other identities may join it once the project "
                "exists.",
                403,
            )
        # While the session lives (as `releases.name_reserved_for_another` counts one: a live
        # status, not expired), its user holds the name, and has since it was created: a
        # status leaves the live ones only for good, an expired session is never extended,
        # and creating a session asks for the name in a writing transaction. So no other
        # user's session can hold it; asking was one statement of every request for a new
        # project.
        holds_name = project is None and session.status in LIVE and as_utc(session.expires) > now()
        check_permission(conn, current, index, project, name, holds_name=holds_name)
    except UploadRejected as exc:
        raise refused(exc) from None
    return project
