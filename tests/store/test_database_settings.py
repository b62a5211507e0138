"""`[database] auto-upgrade`: off by default, from the config file or the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.config import ConfigError, load_settings, settings_document


def settings_from(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> bool:
    config = tmp_path / "keyless.toml"
    config.write_text(toml, encoding="utf-8")
    return load_settings(config, environ=environ or {}).database_auto_upgrade


def test_auto_upgrade_is_off_unless_set(tmp_path: Path) -> None:
    assert settings_from(tmp_path, "") is False
    assert settings_from(tmp_path, "[database]\nauto-upgrade = true\n") is True
    assert settings_from(tmp_path, "", {"KEYLESS_DATABASE_AUTO_UPGRADE": "1"}) is True
    # The environment wins over the file, as for every setting.
    toml = "[database]\nauto-upgrade = true\n"
    assert settings_from(tmp_path, toml, {"KEYLESS_DATABASE_AUTO_UPGRADE": "false"}) is False


def test_the_admin_commands_see_what_the_server_ran_with(tmp_path: Path) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text("[database]\nauto-upgrade = true\n", encoding="utf-8")
    document = settings_document(load_settings(config, environ={}))
    assert document["database"] == {"auto-upgrade": True}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[database]\nauto-upgrade = 'sometimes'\n", "auto-upgrade must be true or false"),
        ("[database]\nautoupgrade = true\n", "[database] has no setting 'autoupgrade'"),
        ("database = 3\n", "[database] must be a table"),
    ],
)
def test_a_wrong_database_setting_is_named(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        settings_from(tmp_path, toml)
