"""Slips of the admin command line a user sees (issue 11): token times in `--json`, expired
tokens, options before or after the words of a command, the settings the running server uses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from keyless.cli.argv import in_place
from keyless.cli.main import build_parser, command_of
from keyless.index.accounts import Accounts
from keyless.store.db import open_database
from tests.conftest import start_server, stop_server

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
    old = Accounts(engine).create_token("kim", "prod", expires_in=dt.timedelta(seconds=-5)).id
    live = Accounts(engine).create_token("kim", "prod", expires_in=dt.timedelta(days=1)).id
    gone = Accounts(engine).create_token("kim", "prod").id
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


# --------------------------------------------------------------------------- server settings

ISSUER = "https://ci.example.test/_services/token"


def clean_env() -> dict[str, str]:
    """The admin's own shell: none of the server's KEYLESS_* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KEYLESS_")}


def publisher_add(data: Path, project: str, *before: str) -> subprocess.CompletedProcess[str]:
    return keyless(
        "publisher",
        "add",
        *before,
        "--index",
        "prod",
        "--pending",
        project,
        "github",
        "--owner",
        "octo",
        "--repository",
        project,
        "--workflow",
        "release.yml",
        "--issuer",
        ISSUER,
        "--data",
        str(data),
        env=clean_env(),
    )


def test_publisher_add_trusts_the_issuers_the_running_server_trusts(tmp_path: Path) -> None:
    """The server trusts an issuer through its own environment; the admin's shell has none of
    it, and `keyless publisher add` on the same data still accepts that issuer."""
    data = tmp_path / "server" / "data"
    data.mkdir(parents=True)
    refused = publisher_add(data, "early-bird")  # no server has run on this data yet
    assert refused.returncode == 2
    assert f"does not trust {ISSUER!r}" in refused.stderr, refused.stderr

    server = start_server(tmp_path / "server", env={"KEYLESS_TRUSTED_ISSUERS": f"github={ISSUER}"})
    try:
        added = publisher_add(data, "newlib")
        assert added.returncode == 0, added.stderr
        assert "pending publisher" in added.stdout
        # And the server it was added for shows it to the user who will own the project.
        listed = keyless(
            "publisher", "list", "--index", "prod", "--data", str(data), env=clean_env()
        )
        assert "newlib" in listed.stdout
    finally:
        stop_server(server)
    # The record is the server's own settings, not a blanket trust: another issuer still fails.
    other = keyless(
        "publisher", "add", "--index", "prod", "--pending", "x", "github", "--owner", "o",
        "--repository", "r", "--workflow", "w.yml", "--issuer", "https://other.example.test",
        "--data", str(data), env=clean_env(),
    )  # fmt: skip
    assert other.returncode == 2
    assert "https://other.example.test" in other.stderr


def test_the_record_is_private_to_the_servers_user(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server")
    try:
        record = server.data_dir / "server-settings.json"
        assert record.stat().st_mode & 0o077 == 0
        assert json.loads(record.read_text())["server"]["port"] == int(server.url.rsplit(":")[-1])
    finally:
        stop_server(server)


# --------------------------------------------------------------------------- option positions


def test_options_work_before_and_after_the_words_of_a_command(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    steps = [
        ("--data", data, "user", "add", "ana", "--password-stdin"),
        ("user", "--data", data, "add", "--admin", "--password-stdin", "ben"),
        ("index", "--data", data, "create", "--profile", "private", "extra"),
        ("--data", data, "token", "create", "--user", "ana", "--index", "extra"),
        ("token", "--json", "list", "--data", data),
        ("publisher", "add", "--data", data, "--index", "prod", "--pending", "p1", "github",
         "--owner", "o", "--repository", "r", "--workflow", "w.yml"),
        ("publisher", "add", "github", "--owner", "o", "--repository", "r", "--workflow",
         "w.yml", "--index", "prod", "--pending", "p2", "--data", data),
        ("publisher", "--data", data, "list", "--index", "prod", "--json"),
        ("audit", "--data", data, "--index", "prod", "--json"),
    ]  # fmt: skip
    results = [keyless(*step, stdin="s3cret-passw0rd\n", env=clean_env()) for step in steps]
    for step, result in zip(steps, results, strict=True):
        assert result.returncode == 0, (step, result.stderr)
    tokens = json.loads(results[4].stdout)
    assert [(t["username"], t["index"]) for t in tokens] == [("ana", "extra")]
    publishers = json.loads(results[7].stdout)
    assert sorted(p["projects"][0] for p in publishers) == ["p1", "p2"]
    assert len(json.loads(results[8].stdout)) == 2  # both additions are in the audit trail


def test_a_misplaced_unknown_option_is_named() -> None:
    answer = keyless("token", "list", "--colour", "red", env=clean_env())
    assert answer.returncode == 2
    assert "unrecognized arguments: --colour red" in answer.stderr


@pytest.mark.parametrize(
    ("argv", "placed"),
    [
        # Each option goes after the word of the command that defines it.
        (
            ["publisher", "add", "--data", "D", "--index", "prod", "--project", "x", "github"],
            ["publisher", "add", "--index", "prod", "--project", "x", "github", "--data", "D"],
        ),
        (["--data=D", "token", "list"], ["token", "list", "--data=D"]),
        # An option two commands have belongs to the one it was given after.
        (
            ["publisher", "add", "--project", "demo", "gitlab", "--project", "app", "--index", "p"],
            ["publisher", "add", "--project", "demo", "--index", "p", "gitlab", "--project", "app"],
        ),
        # Values that look like options stay values; negative numbers and text with spaces too.
        (["user", "add", "-bad name", "--data", "D"], ["user", "add", "--data", "D", "-bad name"]),
        (["gc", "--min-age", "-1"], ["gc", "--min-age", "-1"]),
        # After `--`, and in the command `ci-emulator run` runs, nothing moves.
        (
            ["ci-emulator", "run", "--repo", "o/r", "python", "-m", "build", "--sdist"],
            ["ci-emulator", "run", "--repo", "o/r", "python", "-m", "build", "--sdist"],
        ),
        (
            ["ci-emulator", "run", "--repo", "o/r", "--", "keyless", "publish", "--data", "x"],
            ["ci-emulator", "run", "--repo", "o/r", "--", "keyless", "publish", "--data", "x"],
        ),
    ],
)
def test_options_move_next_to_their_command(argv: list[str], placed: list[str]) -> None:
    assert in_place(build_parser(command_of(argv)), argv) == placed


@pytest.mark.parametrize("name", ["ana\n", "_ana", "a" * 51])
def test_a_username_outside_the_rule_is_refused_even_with_a_trailing_newline(
    tmp_path: Path, name: str
) -> None:
    # "ana\n" would list and display as "ana": a second account that looks like the first.
    data = tmp_path / "data"
    added = keyless(
        "user", "add", name, "--password-stdin", "--data", str(data), stdin="s3cret-passw0rd\n"
    )
    assert added.returncode != 0
    assert "is not allowed" in added.stderr
    listed = keyless("user", "list", "--data", str(data))
    assert name.strip() not in listed.stdout
