"""`UploadOptions`, the one home of how the release client uploads: it refuses impossible
numbers when made, and `keyless publish` (the real command, a subprocess) refuses them with
its reasons and hands the numbers it takes to the upload."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from keyless.publish import PublishError, UploadOptions
from tests.builders import build_wheel, write_dist
from tests.conftest import client_env

from .conftest import Answer, StubIndex, run_publish


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("parallel", 0, "parallel must be at least 1, not 0."),
        ("retries", -1, "retries must be at least 0, not -1."),
    ],
)
def test_impossible_numbers_are_refused_when_the_options_are_made(
    name: str, value: int, said: str
) -> None:
    # The texts `publish(parallel=0)` and `publish(retries=-1)` raised before the options
    # had a home of their own.
    impossible: dict[str, Any] = {name: value}  # which field: the parameter says
    with pytest.raises(PublishError) as caught:
        UploadOptions(**impossible)
    assert caught.value.message == said
    least = UploadOptions(**{**impossible, name: value + 1})
    assert getattr(least, name) == value + 1
    # Made once, checked once: nothing downstream can make them impossible again.
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(least, name, value)


def command_env(tmp_path: Path) -> dict[str, str]:
    env = client_env(tmp_path)
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "CI", "KEYLESS_REPOSITORY_URL", "TWINE_PASSWORD"):
        env.pop(name, None)
    env["KEYLESS_TOKEN"] = "keyless-options-token"
    env["COLUMNS"] = "200"  # whole lines, so the assertions see whole messages
    return env


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--parallel", "0", "must be at least 1, not 0"),
        ("--retries", "-1", "must be at least 0, not -1"),
    ],
)
def test_keyless_publish_refuses_impossible_numbers_before_reading_anything(
    stub: StubIndex, tmp_path: Path, option: str, value: str, said: str
) -> None:
    wheel = write_dist(tmp_path, *build_wheel("options-demo", "1.0"))
    ran = run_publish(
        ["--repository-url", stub.upload_url, option, value, str(wheel)],
        command_env(tmp_path),
        tmp_path,
    )
    assert ran.returncode == 2, ran.stderr
    assert f"keyless publish: error: argument {option}: {said}" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert "Checking" not in ran.stderr  # no file read
    assert stub.gets == []  # nor the index asked
    assert stub.posts == []
    assert stub.other_posts == []


def test_keyless_publish_uploads_with_the_numbers_it_is_given(
    stub: StubIndex, tmp_path: Path
) -> None:
    """--parallel 1 --retries 1 reach the upload: one file at a time (the default is 4), and
    the first file gives up after one retry (the default is 5)."""
    wheels = [
        write_dist(tmp_path, *build_wheel("options-demo", "1.0", tag=tag))
        for tag in ("py3-none-any", "py2-none-any")
    ]
    stub.script = [Answer(503), Answer(503), Answer(delay=0.3)]
    ran = run_publish(
        [
            "--repository-url",
            stub.upload_url,
            "--no-session",
            "--parallel",
            "1",
            "--retries",
            "1",
            *map(str, wheels),
        ],
        command_env(tmp_path),
        tmp_path,
    )
    assert ran.returncode == 1, ran.stderr
    assert "Uploading 2 file(s) to" in ran.stderr
    assert "(1 at a time)" in ran.stderr
    assert f"{wheels[0].name}: 503 Service Unavailable" in ran.stderr
    assert "retry 1 of 1 in" in ran.stderr
    assert "(gave up after 2 attempts)" in ran.stderr
    assert [p.filename for p in stub.posts] == [wheels[0].name, wheels[0].name, wheels[1].name]
    assert stub.max_in_flight == 1
    assert wheels[1].name in stub.files["options-demo"]
