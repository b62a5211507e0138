"""The `[storage]` settings: TOML < KEYLESS_* < `--blobs`, checked where they are read, never a
credential, and recorded for the admin commands like the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.config import (
    ConfigError,
    Settings,
    StorageSettings,
    load_settings,
    record_settings,
)

TOML = """
[storage]
blobs = "s3://from-file/some/prefix/"
endpoint-url = "https://minio.example:9000"
region = "eu-west-1"
addressing-style = "path"
presigned-downloads = "5m"
"""


def test_storage_comes_from_the_file_the_environment_and_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text(TOML, encoding="utf-8")
    assert Settings().storage == StorageSettings()  # the data folder, by default
    from_file = load_settings(config, environ={})
    assert from_file.storage == StorageSettings(
        blobs="s3://from-file/some/prefix/",
        endpoint_url="https://minio.example:9000",
        region="eu-west-1",
        addressing_style="path",
        presigned_downloads=300,
    )
    assert from_file.storage.bucket_and_prefix == ("from-file", "some/prefix/")
    environ = {"KEYLESS_BLOBS": "s3://from-env", "KEYLESS_S3_ADDRESSING_STYLE": "virtual"}
    from_env = load_settings(config, environ=environ).storage
    assert (from_env.blobs, from_env.addressing_style, from_env.region) == (
        "s3://from-env",
        "virtual",
        "eu-west-1",
    )
    assert from_env.bucket_and_prefix == ("from-env", "")
    flags = load_settings(config, environ=environ, overrides={"blobs": "s3://from-flag/p"})
    assert flags.storage.blobs == "s3://from-flag/p"


def test_the_admin_commands_see_the_bucket_the_server_runs_with(tmp_path: Path) -> None:
    storage = StorageSettings(blobs="s3://recorded/x", endpoint_url="http://127.0.0.1:9")
    record_settings(Settings(data_dir=tmp_path, storage=storage))
    assert load_settings(environ={"KEYLESS_DATA": str(tmp_path)}).storage == StorageSettings()
    admin = load_settings(environ={"KEYLESS_DATA": str(tmp_path)}, as_the_server_runs=True)
    assert admin.storage == storage


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'secret-access-key = "abc"',
            "storage.secret-access-key: keyless takes no credentials in its settings; set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, in the server's "
            "environment.",
        ),
        ('blobs = "/srv/blobs"', "storage.blobs '/srv/blobs' is not a bucket URL; write"),
        ('blobs = "s3://No_Such"', "'No_Such' is not a bucket name"),
        ('addressing-style = "dns"', "addressing-style must be one of auto, virtual, path"),
        ('endpoint-url = "minio:9000"', "storage.endpoint-url 'minio:9000' is not a URL"),
        ("bucket = 1", "[storage] has no setting 'bucket'; known: blobs, endpoint-url"),
    ],
)
def test_a_bad_storage_setting_says_what_to_fix(tmp_path: Path, table: str, message: str) -> None:
    config = tmp_path / "keyless.toml"
    config.write_text(f"[storage]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert message in str(refused.value)
    assert "abc" not in str(refused.value)  # a secret is never echoed back
