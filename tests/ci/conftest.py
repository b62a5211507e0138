"""Fixtures for the CI emulator: one issuer per test, always stopped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from keyless.ci import Emulator, JobClaims

# What a release tool does first in CI: ask the `id` library for an ambient OIDC token.
DETECT = "import id; print(id.detect_credential('keyless'))"


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def emulator(keys_dir: Path) -> Iterator[Emulator]:
    with Emulator(keys_dir) as ci:
        yield ci


def detect(ci: Emulator, job: JobClaims, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the `id` library's real detection as a step of `job`."""
    return ci.run(
        [sys.executable, "-c", DETECT],
        job,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
