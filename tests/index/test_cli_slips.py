"""Slips of the admin command line a user sees (issue 11): token times in `--json`, expired
tokens, options before or after the words of a command, the settings the running server uses.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from keyless.index.accounts import create_token
from keyless.store.db import open_database

from .test_admin_cli import keyless


def add_user(data: Path, name: str) -> None:
    added = keyless(
        "user", "add", name, "--password-stdin", "--data", str(data), stdin="s3cret-passw0rd\n"
    )
    assert added.returncode == 0, added.stderr


def test_token_create_json_gives_null_or_an_iso_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_user(data, "jo")
    base = ("token", "create", "--user", "jo", "--index", "prod", "--json", "--data", str(data))
    forever = keyless(*base)
    assert forever.returncode == 0, forever.stderr
    assert json.loads(forever.stdout)["expires"] is None

    before = dt.datetime.now(dt.UTC)
    month = keyless(*base, "--expires", "30d")
    expires = dt.datetime.fromisoformat(json.loads(month.stdout)["expires"])
    assert expires.tzinfo is not None
    assert abs(expires - before - dt.timedelta(days=30)) < dt.timedelta(minutes=1)


def test_token_list_shows_expired_tokens_as_expired(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_user(data, "kim")
    engine = open_database(data / "keyless.db")
    old = create_token(engine, "kim", "prod", expires_in=dt.timedelta(seconds=-5)).id
    live = create_token(engine, "kim", "prod", expires_in=dt.timedelta(days=1)).id
    gone = create_token(engine, "kim", "prod").id
    assert keyless("token", "revoke", str(gone), "--data", str(data)).returncode == 0

    listed = keyless("token", "list", "--json", "--data", str(data))
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert {key: rows[key]["state"] for key in rows} == {
        old: "expired",
        live: "active",
        gone: "revoked",
    }
    assert dt.datetime.fromisoformat(rows[old]["expires"]).tzinfo is not None

    text = keyless("token", "list", "--data", str(data)).stdout.splitlines()
    states = {int(line.split()[0]): line.split()[4] for line in text}
    assert states == {old: "expired", live: "active", gone: "revoked"}
