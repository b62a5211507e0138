"""The sign-in brake under parallel guessing: the limit holds however many attempts race."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
from sqlalchemy import delete

from keyless.index.sessions import MAX_FAILURES_PER_USER
from keyless.store import db
from keyless.store.db import open_database
from tests.conftest import LiveServer

from .conftest import HTML, csrf_of

TRIALS = 20
PARALLEL = 40


def guesses_at_once(clients: list[httpx.Client], user: str) -> list[int]:
    """A wrong password for `user` from each client, sent together; their status codes."""
    barrier = threading.Barrier(len(clients))
    codes: list[int] = []

    def guess(n: int, client: httpx.Client) -> None:
        # The sign-in form's cookie and CSRF token, and a connection just used (not one the
        # server is closing for idleness), before the start.
        token = csrf_of(client.get("/account/login", headers=HTML).text)
        barrier.wait()
        answer = client.post(
            "/account/login",
            data={"csrf_token": token, "username": user, "password": f"wrong {n}"},
        )
        codes.append(answer.status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(codes) == PARALLEL, "a request failed; see the warnings"
    return codes


def test_parallel_wrong_passwords_get_exactly_the_limit_checked(ui_server: LiveServer) -> None:
    """40 wrong passwords for one user from one address at once: 5 are checked (400), 35 are
    throttled (429) — in every trial."""
    engine = open_database(ui_server.database)
    clients = [ui_server.client() for _ in range(PARALLEL)]
    failures = []
    for trial in range(TRIALS):
        user = ui_server.user(f"guessed-at-once-{trial}")
        codes = guesses_at_once(clients, user)
        counted = Counter(codes)
        if counted != {400: MAX_FAILURES_PER_USER, 429: PARALLEL - MAX_FAILURES_PER_USER}:
            failures.append((trial, dict(counted)))
        # This address's failures would throttle the next trial's user (20 per address).
        with db.writing(engine) as conn:
            conn.execute(
                delete(db.web_login_failures).where(db.web_login_failures.c.username == user)
            )
    for client in clients:
        client.close()
    assert not failures, f"{len(failures)} of {TRIALS} trials checked too many: {failures[:3]}"
