"""Which CI this is: decided once (keyless.publish.ambient.detect_ci), for publishing and for
`keyless doctor` alike."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from keyless.publish import ambient
from keyless.publish.credentials import resolve_credentials
from keyless.publish.doctor import diagnose
from keyless.publish.errors import PublishError
from keyless.publish.reporter import RecordingReporter
from tests.conftest import free_port


def test_publishing_and_the_doctor_ask_one_place_which_ci_this_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A CI taught to the one function is seen by both users of it.
    toy = ("TOY_CI", "toy", "Toy CI")
    monkeypatch.setattr(ambient, "_CI_VARIABLES", (*ambient._CI_VARIABLES, toy))
    monkeypatch.setattr(ambient, "_google_machine", lambda: False)
    in_toy_ci = {"TOY_CI": "true"}
    url = f"http://127.0.0.1:{free_port()}/prod/legacy/"  # nothing listens there
    with httpx.Client(timeout=5) as http:
        # In a CI with OIDC tokens, publishing goes for Trusted Publishing: it asks the index.
        with pytest.raises(PublishError, match="cannot reach"):
            resolve_credentials(url, http=http, reporter=RecordingReporter(), environ=in_toy_ci)
        with pytest.raises(PublishError, match="not in a CI job"):
            resolve_credentials(url, http=http, reporter=RecordingReporter(), environ={})
        diagnosis = diagnose(
            url, environ=in_toy_ci, http=http, project_dir=tmp_path, detect=lambda _aud: None
        )
    assert diagnosis.ci == "other"
    assert ambient.ci_name(in_toy_ci) == "Toy CI"


@pytest.mark.parametrize(
    ("environ", "publishing", "doctor"),
    [
        ({"GITHUB_ACTIONS": "true"}, "GitHub Actions", "github"),
        ({"GITLAB_CI": "true", "CI": "true"}, "GitLab CI/CD", "gitlab"),
        ({"CIRCLECI": "true"}, "CircleCI", "other"),
        # A generic CI has no token to offer, but it is a CI job for the doctor.
        ({"CI": "true"}, None, "other"),
        # A Google Cloud machine has tokens, but is a CI job only when it says so.
        ({"GOOGLE_SERVICE_ACCOUNT_NAME": "sa"}, "Google Cloud", None),
        ({"GOOGLE_SERVICE_ACCOUNT_NAME": "sa", "CI": "1"}, "Google Cloud", "other"),
        ({}, None, None),
    ],
)
def test_what_each_user_makes_of_the_ci(
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    publishing: str | None,
    doctor: str | None,
) -> None:
    from keyless.publish.doctor import _ci_kind

    monkeypatch.setattr(ambient, "_google_machine", lambda: False)
    assert ambient.ci_name(environ) == publishing
    assert _ci_kind(environ) == doctor
