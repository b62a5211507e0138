"""`[static] folder` (KEYLESS_STATIC_FOLDER, --static-folder) or `[static] bucket`
(KEYLESS_STATIC_BUCKET): where the static tree goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.config import ConfigError, load_settings, settings_document


def folder_from(
    tmp_path: Path, toml: str, environ: dict[str, str] | None = None, flag: str | None = None
) -> Path | None:
    config = tmp_path / "keyless.toml"
    config.write_text(toml, encoding="utf-8")
    overrides = {"static-folder": flag} if flag else None
    return load_settings(config, environ=environ or {}, overrides=overrides).static_folder


def test_no_static_tree_unless_set_and_each_layer_wins_over_the_last(tmp_path: Path) -> None:
    assert folder_from(tmp_path, "") is None
    toml = '[static]\nfolder = "/srv/file"\n'
    assert folder_from(tmp_path, toml) == Path("/srv/file")
    environ = {"KEYLESS_STATIC_FOLDER": "/srv/env"}
    assert folder_from(tmp_path, toml, environ) == Path("/srv/env")
    assert folder_from(tmp_path, toml, environ, flag="/srv/flag") == Path("/srv/flag")


def test_the_admin_commands_find_the_folder_the_server_used(tmp_path: Path) -> None:
    # Recorded absolute: `keyless static rebuild` may run from another folder.
    config = tmp_path / "keyless.toml"
    config.write_text('[static]\nfolder = "relative/tree"\n', encoding="utf-8")
    document = settings_document(load_settings(config, environ={}))
    assert document["static"] == {"folder": str(Path("relative/tree").resolve())}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[static]\nfodler = "x"\n', "[static] has no setting 'fodler'; known: folder, bucket"),
        ('[static]\nbucket = "my-bucket"\n', "must be s3://BUCKET or s3://BUCKET/PREFIX"),
        ('[static]\nbucket = "s3://"\n', "must be s3://BUCKET or s3://BUCKET/PREFIX"),
        ('[static]\nfolder = "/srv"\nbucket = "s3://b"\n', "a folder or a bucket, not both"),
        ("static = 3\n", "[static] must be a table"),
    ],
)
def test_a_wrong_static_setting_says_what_to_fix(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        folder_from(tmp_path, toml)


def test_a_bucket_instead_of_a_folder_from_the_file_or_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text('[static]\nbucket = "s3://site/pages"\n', encoding="utf-8")
    settings = load_settings(config, environ={})
    assert (settings.static_bucket, settings.static_folder) == ("s3://site/pages", None)
    assert settings_document(settings)["static"] == {"bucket": "s3://site/pages"}
    # The environment's bucket replaces the file's folder, as any later layer does.
    config.write_text('[static]\nfolder = "/srv/tree"\n', encoding="utf-8")
    settings = load_settings(config, environ={"KEYLESS_STATIC_BUCKET": "s3://env"})
    assert (settings.static_bucket, settings.static_folder) == ("s3://env", None)
