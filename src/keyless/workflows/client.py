"""How a CI job installs its release client: the one home of the install step of every
generated workflow, pipeline and web preview (the build job's ``keyless check`` and every
publish job).

A job that publishes can obtain an upload token, so whatever it installs runs next to that
token: the client is pinned by version and sha256, never ``pip install keyless`` (keyless is
not on PyPI, and whoever registered the name there would run code in the job).

- ``keyless``: from a keyless index, which serves the very client it runs at ``/+client/``
  (keyless.index.routes.client). The job downloads the index's requirements file for that
  version, checks the file's sha256 (known when the workflow is written) and installs it with
  ``pip install --require-hashes``: the file pins the keyless wheel and each dependency.
- ``uv``: from PyPI, its version and the sha256 of each of its files written into the step
  (the lock ``locks/uv.txt`` beside this module; uv has no dependencies).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import Literal

__all__ = ["CLIENT_PATH", "Client", "ClientSource", "describe_uv", "install_commands", "uv_pin"]

Client = Literal["keyless", "uv"]

# Where a keyless index serves its client (keyless.index.routes.client); `+` begins no index
# name, so it cannot clash with one.
CLIENT_PATH = "/+client/"
# The names the job saves the requirements files under.
_KEYLESS_FILE = "keyless-client.txt"
_UV_FILE = "uv-client.txt"


@dataclass(frozen=True)
class ClientSource:
    """The keyless client a keyless index serves: its version, and the requirements file
    that installs it (URL and sha256)."""

    index_url: str
    version: str
    requirements_url: str
    requirements_sha256: str

    def describe(self) -> str:
        """Where the client comes from and how it is pinned, in one sentence."""
        return (
            f"keyless {self.version} from the keyless index at {self.index_url} "
            f"({self.requirements_url}), pinned by sha256: the requirements file's, checked "
            "by sha256sum, and in it each file's, checked by pip --require-hashes"
        )


def uv_pin() -> tuple[str, str]:
    """(version, requirements text) of the uv the generated jobs install, from the lock."""
    text = resources.files(__package__).joinpath("locks/uv.txt").read_text("utf-8")
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    match = re.match(r"uv==(\S+)", lines[0]) if lines else None
    if match is None:
        raise LookupError("keyless' uv lock (keyless/workflows/locks/uv.txt) pins no uv version.")
    return match.group(1), "\n".join(lines) + "\n"


def describe_uv() -> str:
    """Where uv comes from and how it is pinned, in one sentence."""
    version, requirements = uv_pin()
    files = requirements.count("--hash=sha256:")
    return (
        f"uv {version} from PyPI, pinned by version and sha256 (its {files} files' hashes are "
        "written into the step, checked by pip --require-hashes)"
    )


def install_commands(client: Client, source: ClientSource | None) -> list[str]:
    """The shell commands of a job's install step (a command may span lines: a heredoc).

    The ``keyless`` client comes from ``source`` (ValueError without one: callers say first
    where it should come from); ``uv`` comes from PyPI.
    """
    if client == "uv":
        _, requirements = uv_pin()
        heredoc = f"cat > {_UV_FILE} <<'EOF'\n{requirements}EOF"
        return [heredoc, f"python -m pip install --require-hashes -r {_UV_FILE}"]
    if source is None:
        raise ValueError("the keyless client needs a source: a keyless index that serves it")
    return [
        # Python, not curl: every image that runs pip has it (python:3-slim has no curl).
        "python -c 'import sys, urllib.request; urllib.request.urlretrieve(*sys.argv[1:])' "
        f"{shlex.quote(source.requirements_url)} {_KEYLESS_FILE}",
        f'echo "{source.requirements_sha256}  {_KEYLESS_FILE}" | sha256sum --check -',
        f"python -m pip install --require-hashes -r {_KEYLESS_FILE}",
    ]
