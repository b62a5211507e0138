"""The sign-in brake under parallel guessing: the limit holds however many attempts race."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
from sqlalchemy import delete

from keyless.index.web.sessions import MAX_FAILURES_PER_USER
from keyless.store import db
from keyless.store.db import open_database
from tests.conftest import LiveServer

from .conftest import HTML, csrf_of

TRIALS = 20
PARALLEL = 40


def test_parallel_wrong_passwords_get_exactly_the_limit_checked(ui_server: LiveServer) -> None:
    """40 wrong passwords for one user from one address at once: 5 are checked (400), 35 are
    throttled (429) — in every trial."""
    engine = open_database(ui_server.database)
    clients = [ui_server.client() for _ in range(PARALLEL)]
    try:
        # Each client holds the sign-in form's cookie and CSRF token before the start.
        tokens = [csrf_of(c.get("/account/login", headers=HTML).text) for c in clients]
        failures = []
        for trial in range(TRIALS):
            user = ui_server.user(f"guessed-at-once-{trial}")
            barrier = threading.Barrier(PARALLEL)
            codes: list[int] = []

            def guess(client: httpx.Client, token: str, n: int, user: str = user) -> None:
                barrier.wait()  # noqa: B023 - joined below, before the next trial's barrier
                answer = client.post(
                    "/account/login",
                    data={"csrf_token": token, "username": user, "password": f"wrong {n}"},
                )
                codes.append(answer.status_code)  # noqa: B023 - as above

            threads = [
                threading.Thread(target=guess, args=(client, token, n))
                for n, (client, token) in enumerate(zip(clients, tokens, strict=True))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            counted = Counter(codes)
            if counted != {400: MAX_FAILURES_PER_USER, 429: PARALLEL - MAX_FAILURES_PER_USER}:
                failures.append((trial, dict(counted)))
            # This address's failures would throttle the next trial's user (20 per address).
            with db.writing(engine) as conn:
                conn.execute(
                    delete(db.web_login_failures).where(db.web_login_failures.c.username == user)
                )
    finally:
        for client in clients:
            client.close()
    assert not failures, f"{len(failures)} of {TRIALS} trials checked too many: {failures[:3]}"
