"""The admin command line and the settings it reads, run as a user would run them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from keyless.config import ConfigError, load_settings
from keyless.index.accounts import Accounts, InvalidCredentials, hash_token
from keyless.store import db
from keyless.store.db import open_database
from tests.conftest import run_keyless


def keyless(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_keyless(*args, stdin=stdin, env=env)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_user_token_lifecycle(data: Path) -> None:
    added = keyless(
        "user", "add", "alice", "--password-stdin", "--data", str(data), stdin="s3cret-passw0rd\n"
    )
    assert added.returncode == 0, added.stderr

    created = keyless(
        "token",
        "create",
        "--user",
        "alice",
        "--index",
        "prod",
        "--project",
        "Demo_Pkg",
        "--expires",
        "30d",
        "--description",
        "ci",
        "--data",
        str(data),
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("keyless-")
    assert len(token) > 40
    assert "only time it is shown" in created.stderr

    # Stored only as a hash: the secret is nowhere in the database file.
    database = b"".join(p.read_bytes() for p in data.glob("keyless.db*"))
    assert token.encode() not in database
    engine = open_database(data / "keyless.db")
    with db.reading(engine) as conn:
        stored = conn.execute(db.api_tokens.select()).one()
    assert stored.token_hash == hash_token(token)
    assert stored.projects == ["demo-pkg"]
    identity = Accounts(engine).authenticate(token)
    assert identity.username == "alice"
    assert identity.may_touch(identity.index_id or 0, "demo-pkg")
    assert not identity.may_touch(identity.index_id or 0, "other")

    listed = keyless("token", "list", "--json", "--data", str(data))
    rows = json.loads(listed.stdout)
    assert [(r["username"], r["index"], r["projects"]) for r in rows] == [
        ("alice", "prod", ["demo-pkg"])
    ]
    assert token not in listed.stdout

    revoked = keyless("token", "revoke", str(rows[0]["id"]), "--data", str(data))
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(InvalidCredentials):
        Accounts(engine).authenticate(token)
    again = keyless("token", "revoke", str(rows[0]["id"]), "--data", str(data))
    assert again.returncode == 1
    assert "no active token" in again.stderr


def test_passwords_are_argon2_hashed(data: Path) -> None:
    keyless(
        "user", "add", "bob", "--password-stdin", "--data", str(data), stdin="another-passw0rd\n"
    )
    with db.reading(open_database(data / "keyless.db")) as conn:
        row = conn.execute(db.users.select()).one()
    assert row.password_hash.startswith("$argon2")
    assert "another-passw0rd" not in row.password_hash


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["user", "add", "-bad name"], "long-enough-pw\n", "not allowed"),
        (["user", "add", "shorty"], "short\n", "at least 8 characters"),
        (["token", "create", "--user", "nobody", "--index", "prod"], "", "no user named 'nobody'"),
        (
            ["token", "create", "--user", "x", "--index", "prod", "--expires", "soon"],
            "",
            "not a duration",
        ),
        (["index", "create", "Bad_Name"], "", "not allowed"),
        (["index", "create", "files"], "", "not allowed"),
    ],
)
def test_bad_admin_input_says_what_to_fix(
    data: Path, args: list[str], stdin: str, message: str
) -> None:
    extra = ["--password-stdin"] if args[:2] == ["user", "add"] else []
    result = keyless(*args, *extra, "--data", str(data), stdin=stdin)
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_index_create_and_list(data: Path) -> None:
    created = keyless("index", "create", "internal", "--profile", "private", "--data", str(data))
    assert created.returncode == 0, created.stderr
    listed = keyless("index", "list", "--data", str(data)).stdout
    names = [line.split()[0] for line in listed.splitlines()]
    assert names == ["internal", "prod", "test"]
    assert "profile=private" in next(
        line for line in listed.splitlines() if line.startswith("internal")
    )
    duplicate = keyless("index", "create", "internal", "--data", str(data))
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr


def test_settings_precedence(tmp_path: Path) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text(
        '[server]\nport = 9000\nhost = "::1"\ndata = "from-file"\n'
        '[indexes.main]\nprofile = "private"\nmax-file-size = "2MiB"\n'
    )
    from_file = load_settings(config, environ={})
    assert (from_file.port, from_file.host, str(from_file.data_dir)) == (
        9000,
        "::1",
        "from-file",
    )
    assert [(i.name, i.profile, i.max_file_size) for i in from_file.indexes] == [
        ("main", "private", 2 * 1024 * 1024)
    ]

    from_env = load_settings(
        config, environ={"KEYLESS_PORT": "9100", "KEYLESS_INDEXES": "a,b:private"}
    )
    assert from_env.port == 9100
    assert [(i.name, i.profile) for i in from_env.indexes] == [("a", "pypi"), ("b", "private")]

    from_flags = load_settings(config, environ={"KEYLESS_PORT": "9100"}, overrides={"port": 9200})
    assert from_flags.port == 9200


def test_limits_are_read_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text(
        '[server]\ngc-interval = "1h"\n'
        '[limits]\nheader-timeout = 2.5\nbody-timeout = "1m"\nmax-connections = 50\n'
        'max-description-size = "64KiB"\nrender-memory = "256MiB"\n'
    )
    settings = load_settings(config, environ={})
    assert settings.gc_interval == 3600
    limits = settings.limits
    assert (limits.header_timeout, limits.body_timeout, limits.max_connections) == (2.5, 60.0, 50)
    assert (limits.max_description_size, limits.render_memory) == (64 * 1024, 256 * 1024 * 1024)
    # Unset limits keep their defaults.
    assert limits.render_timeout == load_settings(None, environ={}).limits.render_timeout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[limits]\nheader-timout = 3\n", "no setting 'header-timout'"),
        ("[limits]\nmax-connections = 0\n", "must be more than zero"),
        ("[limits]\nmax-connections = 1.5\n", "whole number"),
        ('[limits]\nbody-timeout = "soon"\n', "not a duration"),
        ("limits = 3\n", "must be a table"),
    ],
)
def test_bad_limits_are_named(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KEYLESS_PORT": "eighty"}, "port must be a number"),
        ({"KEYLESS_INDEXES": "prod:public"}, "profile must be one of"),
        ({"KEYLESS_TLS_CERT": "cert.pem"}, "TLS needs both"),
        ({"KEYLESS_INDEXES": "simple"}, "not allowed"),
    ],
)
def test_bad_settings_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, environ=environ)


def test_serve_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[server\nport = 1")
    result = keyless("serve", "--config", str(config), "--data", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "broken.toml" in result.stderr
    assert "Traceback" not in result.stderr
