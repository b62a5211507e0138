"""Web sign-in: server-side sessions, per-session CSRF tokens, and a brake on password guessing.

The cookie carries 256 random bits; the database keeps only their sha256 (as for API tokens, a
fast hash is enough for a long random secret). A session ends at its expiry or at sign-out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, Engine, delete, func, select

from keyless.store import db

from .accounts import Accounts, as_utc, now
from .publishers import Actor

SESSION_LIFETIME = timedelta(hours=12)
# Failed sign-ins are counted over this window: a few per (user, address) lets people mistype;
# a larger budget per address limits guessing across many user names.
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20


@dataclass(frozen=True)
class Viewer:
    """The signed-in user behind a request."""

    user_id: int
    username: str
    is_admin: bool
    csrf_token: str

    @property
    def actor(self) -> Actor:
        """The user as the publisher use cases know them (owner checks apply)."""
        return Actor(username=self.username, user_id=self.user_id)


class SignInError(Exception):
    """A sign-in refused: wrong credentials (400) or too many failures (429, `retry_after`)."""

    def __init__(self, message: str, status: int, retry_after: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, so response timing does not reveal a token prefix."""
    return bool(given) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _seconds_to_wait(conn: Connection, username: str, client_ip: str) -> int:
    since = now() - FAILURE_WINDOW
    failures = db.web_login_failures
    per_user = conn.execute(
        select(func.count(), func.min(failures.c.time)).where(
            failures.c.time > since,
            failures.c.username == username,
            failures.c.client_ip == client_ip,
        )
    ).one()
    per_address = conn.execute(
        select(func.count(), func.min(failures.c.time)).where(
            failures.c.time > since, failures.c.client_ip == client_ip
        )
    ).one()
    for (count, oldest), limit in (
        (per_user, MAX_FAILURES_PER_USER),
        (per_address, MAX_FAILURES_PER_ADDRESS),
    ):
        if count >= limit and oldest is not None:
            # Coarse but simple: wait until the oldest failure leaves the window.
            left = as_utc(oldest) + FAILURE_WINDOW - now()
            return max(1, int(left.total_seconds()))
    return 0


@dataclass
class Sessions:
    """The browser sessions of one database: sign in (braked against guessing), find, end."""

    engine: Engine
    accounts: Accounts

    def sign_in(self, username: str, password: str, client_ip: str) -> str:
        """Check the password and open a session; returns the new session id (the cookie value).

        Raises SignInError. A fresh id on every sign-in means an id planted before it (session
        fixation) never becomes a signed-in session.
        """
        username = username.strip()[:64]
        client_ip = client_ip[:64]
        self._take_attempt(username, client_ip)
        # The slow part (argon2, ~50 ms) runs outside the write lock, which uploads wait for.
        user_id = (
            self.accounts.verify_password(username, password) if username and password else None
        )
        if user_id is None:
            raise SignInError("Wrong user name or password.", 400)  # the attempt stays counted
        session_id = new_secret()
        moment = now()
        with db.writing(self.engine) as conn:
            # Housekeeping rides on sign-ins: expired sessions and old failures go, and so do this
            # user's failures from this address, the attempt that just succeeded among them.
            conn.execute(delete(db.web_sessions).where(db.web_sessions.c.expires <= moment))
            conn.execute(
                delete(db.web_login_failures).where(
                    (db.web_login_failures.c.time <= moment - FAILURE_WINDOW)
                    | (
                        (db.web_login_failures.c.username == username)
                        & (db.web_login_failures.c.client_ip == client_ip)
                    )
                )
            )
            conn.execute(
                db.web_sessions.insert().values(
                    id_hash=_hash(session_id),
                    user_id=user_id,
                    csrf_token=new_secret(),
                    created=moment,
                    expires=moment + SESSION_LIFETIME,
                )
            )
        return session_id

    def _take_attempt(self, username: str, client_ip: str) -> None:
        """Count the attempt as a failure before checking the password, or raise 429.

        Counting and recording happen in one writing transaction (one at a time), so parallel
        attempts cannot all see the same count below the limit: of 40 at once, exactly the
        limit's worth get their password checked. A successful sign-in removes its record.
        """
        with db.writing(self.engine) as conn:
            wait = _seconds_to_wait(conn, username, client_ip)
            if wait:
                raise SignInError(
                    f"Too many failed sign-ins; try again in {max(1, wait // 60)} minute(s).",
                    429,
                    wait,
                )
            conn.execute(
                db.web_login_failures.insert().values(
                    username=username, client_ip=client_ip, time=now()
                )
            )

    def load_viewer(self, session_id: str) -> Viewer | None:
        """The user of a live session, or None (unknown, expired or signed out)."""
        if not session_id or len(session_id) > 128:
            return None
        with db.reading(self.engine) as conn:
            row = conn.execute(
                select(
                    db.web_sessions.c.user_id,
                    db.web_sessions.c.csrf_token,
                    db.web_sessions.c.expires,
                    db.users.c.username,
                    db.users.c.is_admin,
                )
                .join(db.users, db.users.c.id == db.web_sessions.c.user_id)
                .where(db.web_sessions.c.id_hash == _hash(session_id))
            ).first()
        if row is None or as_utc(row.expires) <= now():
            return None
        return Viewer(
            user_id=int(row.user_id),
            username=row.username,
            is_admin=bool(row.is_admin),
            csrf_token=row.csrf_token,
        )

    def sign_out(self, session_id: str) -> None:
        with db.writing(self.engine) as conn:
            conn.execute(
                delete(db.web_sessions).where(db.web_sessions.c.id_hash == _hash(session_id))
            )
