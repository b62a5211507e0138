"""Users, passwords and API tokens.

Tokens look like `keyless-<43 url-safe chars>`: the fixed prefix lets secret scanners spot a
leaked one. Only the token's sha256 is stored, and the token is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from packaging.utils import canonicalize_name as normalize_name
from sqlalchemy import Connection, Engine, bindparam, select, update

from keyless.oidc.providers import PROVIDERS
from keyless.store import db

TOKEN_PREFIX = "keyless-"  # noqa: S105 - a public prefix, not a secret
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}\Z")
_hasher = PasswordHasher()


class AccountError(ValueError):
    """A user or token request that cannot be honoured; the message says why."""


@dataclass(frozen=True)
class Identity:
    """Who is making a request, as proven by an API token.

    A user's token acts for that user on one index (optionally limited to some projects). A
    token minted for trusted publishers has no user: it may upload to exactly the (index,
    project) pairs its publishers are linked to now, and do nothing else.
    """

    user_id: int | None
    username: str  # the user, or a description of the trusted publisher(s)
    token_id: int
    index_id: int | None  # a user token's index; None for a trusted token (see `scopes`)
    projects: frozenset[str] | None  # a user token's project limit; None = any
    scopes: frozenset[tuple[int, str]] = frozenset()  # trusted: (index id, normalized project)
    publishers: tuple[dict[str, Any], ...] = ()  # trusted: what the audit trail records

    @property
    def is_trusted_publisher(self) -> bool:
        return self.user_id is None

    def allows_index(self, index_id: int) -> bool:
        if self.is_trusted_publisher:
            return any(scope_index == index_id for scope_index, _ in self.scopes)
        return self.index_id == index_id

    def may_touch(self, index_id: int, normalized_project: str) -> bool:
        if self.is_trusted_publisher:
            return (index_id, normalized_project) in self.scopes
        return self.index_id == index_id and (
            self.projects is None or normalized_project in self.projects
        )


def now() -> datetime:
    return datetime.now(UTC)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# The password hash of an account made without a password (moved in from another index): no
# password verifies against it (not a hash at all) until `set_password` gives one.
NO_PASSWORD = "!"  # noqa: S105 (the absence of a password)


def add_user_without_password(conn: Connection, username: str) -> int:
    """An account no one can sign in to yet (see NO_PASSWORD), in the caller's transaction."""
    if not USERNAME.match(username):
        raise AccountError(f"username {username!r} is not allowed here.")
    return int(
        db.inserted_id(
            conn,
            db.users.insert().values(
                username=username, password_hash=NO_PASSWORD, is_admin=False, created=now()
            ),
        )
    )


def user_id(conn: Connection, username: str) -> int:
    row = conn.execute(select(db.users.c.id).where(db.users.c.username == username)).first()
    if row is None:
        raise AccountError(f"no user named {username!r}; add one with 'keyless user add'.")
    return int(row.id)


def index_id(conn: Connection, index_name: str) -> int:
    row = conn.execute(select(db.indexes.c.id).where(db.indexes.c.name == index_name)).first()
    if row is None:
        raise AccountError(f"no index named {index_name!r}; see 'keyless index list'.")
    return int(row.id)


@dataclass(frozen=True)
class NewToken:
    id: int
    token: str  # the secret: shown once, never stored
    expires: datetime | None


def token_state(revoked: datetime | None, expires: datetime | None, moment: datetime) -> str:
    """ "revoked", "expired" or "active": what `authenticate` would make of the token at
    `moment` (the CLI's list and the tokens page show it, so neither calls a dead token active).
    """
    if revoked is not None:
        return "revoked"
    if expires is not None and as_utc(expires) <= moment:
        return "expired"
    return "active"


class InvalidCredentials(Exception):
    """The request's credentials are missing, unknown, revoked or expired.

    `unknown`: no token of this server (an API answering 401 then, and 403 for a token it
    knows that may no longer act, tells them apart; the legacy upload answers 403 to both).
    """

    def __init__(self, reason: str, *, unknown: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unknown = unknown


# Built once (every authenticated request runs them): building costs more than running.
_TOKEN = select(db.api_tokens, db.users.c.username).outerjoin(
    db.users, db.users.c.id == db.api_tokens.c.user_id
)
_TOKEN_BY_HASH = _TOKEN.where(db.api_tokens.c.token_hash == bindparam("token_hash"))
_TOKEN_BY_ID = _TOKEN.where(db.api_tokens.c.id == bindparam("token_id"))
_TOUCH_TOKEN = (
    update(db.api_tokens)
    .where(db.api_tokens.c.id == bindparam("token_id"))
    .values(last_used=bindparam("moment"))
)

# The token id of an identity that a signed-in browser session acts as: no API token is
# behind it (ids start at 1), so there is no token to re-check.
SESSION_TOKEN_ID = 0


def current_identity(conn: Connection, identity: Identity) -> Identity:
    """`identity` as the database on `conn` says it is now; raises InvalidCredentials.

    Call it inside the write transaction that acts for the identity: SQLite runs one writing
    transaction at a time, so what it returns still holds when that transaction commits. A
    revoked or expired token is refused with the texts `authenticate` uses, and a trusted
    token's scope is read again from its publishers' links (one removed or unlinked since
    the request was authenticated no longer counts).
    """
    if identity.token_id == SESSION_TOKEN_ID:
        return identity
    return _identity(conn, conn.execute(_TOKEN_BY_ID, {"token_id": identity.token_id}))


def token_identity(conn: Connection, token: str) -> Identity:
    """The identity behind the API token `token` as the database on `conn` says it is now;
    raises InvalidCredentials (`unknown` for a token that does not exist).

    Inside a write transaction, what it returns holds until the commit (see
    `current_identity`): a use case that authenticates there needs no snapshot first.
    """
    if not token.startswith(TOKEN_PREFIX):
        raise InvalidCredentials(
            "Invalid or non-existent authentication information.", unknown=True
        )
    return _identity(conn, conn.execute(_TOKEN_BY_HASH, {"token_hash": hash_token(token)}))


def _identity(conn: Connection, result: Any) -> Identity:
    row = result.first()
    state = "missing" if row is None else token_state(row.revoked, row.expires, now())
    if state in ("missing", "revoked"):
        raise InvalidCredentials(
            "Invalid or non-existent authentication information.", unknown=state == "missing"
        )
    if state == "expired":
        raise InvalidCredentials("Invalid API Token: token is expired")
    if row.kind == "trusted":
        return _trusted_identity(conn, row)
    return Identity(
        user_id=row.user_id,
        username=row.username,
        token_id=row.id,
        index_id=row.index_id,
        projects=frozenset(row.projects) if row.projects is not None else None,
    )


def describe_publisher(publisher_id: int, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """What files and the audit trail record about the publisher that uploaded them."""
    provider = PROVIDERS[kind]
    return {
        "id": publisher_id,
        "kind": kind,
        "summary": provider.summary(config),
        "url": provider.publisher_url(config),
    }


def _trusted_identity(conn: Connection, row: Any) -> Identity:
    # The scope is read from the publishers' links at use time, so removing a publisher (or
    # unlinking a project) takes effect on tokens already minted.
    links = conn.execute(
        select(
            db.publishers.c.id,
            db.publishers.c.kind,
            db.publishers.c.config,
            db.projects.c.index_id,
            db.projects.c.normalized_name,
        )
        .join(db.token_publishers, db.token_publishers.c.publisher_id == db.publishers.c.id)
        .join(db.publisher_projects, db.publisher_projects.c.publisher_id == db.publishers.c.id)
        .join(db.projects, db.projects.c.id == db.publisher_projects.c.project_id)
        .where(db.token_publishers.c.token_id == row.id)
    ).all()
    if not links:
        raise InvalidCredentials(
            "Invalid API Token: the trusted publisher it was minted for has been removed."
        )
    publishers = {link.id: describe_publisher(link.id, link.kind, link.config) for link in links}
    return Identity(
        user_id=None,
        username=row.description or "trusted publisher",
        token_id=row.id,
        index_id=None,
        projects=None,
        scopes=frozenset((link.index_id, link.normalized_name) for link in links),
        publishers=tuple(publishers.values()),
    )


def touch_token(conn: Connection, token_id: int) -> None:
    conn.execute(_TOUCH_TOKEN, {"token_id": token_id, "moment": now()})


def as_utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without a zone; everything keyless writes is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Accounts:
    """Users, passwords and API tokens: the use cases on the accounts of one database."""

    engine: Engine

    def create_user(self, username: str, password: str, *, is_admin: bool = False) -> int:
        """Add a user; raises AccountError for a bad name, a short password or a taken name."""
        if not USERNAME.match(username):
            raise AccountError(
                f"username {username!r} is not allowed: use letters, digits, '.', '_' or '-', "
                "starting with a letter or digit, at most 50 characters."
            )
        if len(password) < 8:
            raise AccountError("the password must be at least 8 characters long.")
        with db.writing(self.engine) as conn:
            if conn.execute(select(db.users.c.id).where(db.users.c.username == username)).first():
                raise AccountError(f"user {username!r} already exists.")
            return int(
                db.inserted_id(
                    conn,
                    db.users.insert().values(
                        username=username,
                        password_hash=_hasher.hash(password),
                        is_admin=is_admin,
                        created=now(),
                    ),
                )
            )

    def set_password(self, username: str, password: str) -> None:
        """Give a user a new password (`keyless user passwd`); raises AccountError."""
        if len(password) < 8:
            raise AccountError("the password must be at least 8 characters long.")
        password_hash = _hasher.hash(password)
        with db.writing(self.engine) as conn:
            user = user_id(conn, username)
            conn.execute(
                update(db.users).where(db.users.c.id == user).values(password_hash=password_hash)
            )

    def verify_password(self, username: str, password: str) -> int | None:
        """The user's id when the password is right, else None (no hint which part was wrong)."""
        with db.reading(self.engine) as conn:
            row = conn.execute(
                select(db.users.c.id, db.users.c.password_hash).where(
                    db.users.c.username == username
                )
            ).first()
        if row is None:
            # Hash anyway so the answer takes as long as for a real user.
            _hasher.hash(password)
            return None
        try:
            _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return int(row.id)

    def create_token(
        self,
        username: str,
        index_name: str,
        *,
        projects: list[str] | None = None,
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> NewToken:
        """Mint an API token for a user, scoped to one index and optionally some projects."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = now() + expires_in if expires_in else None
        scope = sorted({normalize_name(p) for p in projects}) if projects else None
        with db.writing(self.engine) as conn:
            token_id = db.inserted_id(
                conn,
                db.api_tokens.insert().values(
                    token_hash=hash_token(secret),
                    user_id=user_id(conn, username),
                    index_id=index_id(conn, index_name),
                    projects=scope,
                    description=description,
                    created=now(),
                    expires=expires,
                ),
            )
        return NewToken(id=int(token_id), token=secret, expires=expires)

    def list_tokens(self, username: str | None = None) -> list[dict[str, object]]:
        query = (
            select(
                db.api_tokens.c.id,
                db.users.c.username,
                db.indexes.c.name.label("index"),
                db.api_tokens.c.projects,
                db.api_tokens.c.description,
                db.api_tokens.c.created,
                db.api_tokens.c.expires,
                db.api_tokens.c.last_used,
                db.api_tokens.c.revoked,
            )
            .join(db.users, db.users.c.id == db.api_tokens.c.user_id)
            .join(db.indexes, db.indexes.c.id == db.api_tokens.c.index_id)
            .order_by(db.api_tokens.c.id)
        )
        if username:
            query = query.where(db.users.c.username == username)
        with db.reading(self.engine) as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        moment = now()
        for row in rows:
            row["state"] = token_state(row["revoked"], row["expires"], moment)
        return rows

    def revoke_token(self, token_id: int) -> None:
        with db.writing(self.engine) as conn:
            result = conn.execute(
                update(db.api_tokens)
                .where(db.api_tokens.c.id == token_id, db.api_tokens.c.revoked.is_(None))
                .values(revoked=now())
            )
            if result.rowcount == 0:
                raise AccountError(f"no active token with id {token_id}; see 'keyless token list'.")

    def revoke_token_by_hash(self, token_hash: str) -> bool:
        """Revoke whatever token has this hash (burning a token proves possession); idempotent."""
        with db.writing(self.engine) as conn:
            result = conn.execute(
                update(db.api_tokens)
                .where(db.api_tokens.c.token_hash == token_hash, db.api_tokens.c.revoked.is_(None))
                .values(revoked=now())
            )
        return bool(result.rowcount)

    def authenticate(self, token: str) -> Identity:
        """The identity behind an API token; raises InvalidCredentials with PyPI-style reasons.

        Read on a snapshot: good for refusing early, but a token can be revoked, expire or lose
        its publishers before the request writes anything. A use case that writes decides on
        `current_identity` inside its write transaction.
        """
        with db.reading(self.engine) as conn:
            return token_identity(conn, token)
