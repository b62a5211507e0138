"""Running the build's, the install's and the smoke test's commands: without the release's
credentials, and with a failure's output in the error.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from keyless.publish.errors import PublishError

OUTPUT_TAIL = 25  # lines of a failed command's output kept in the error
# Never handed to the build, the install or the smoke command.
_SECRET_VARIABLES = re.compile(
    r"^(KEYLESS_.*TOKEN.*|KEYLESS_SMTP_PASSWORD|KEYLESS_NOTIFY_.*|UV_PUBLISH_TOKEN|"
    r"UV_PUBLISH_PASSWORD|TWINE_PASSWORD|ACTIONS_ID_TOKEN_REQUEST_.*|.*_ID_TOKEN|"
    r"SIGSTORE_ID_TOKEN|CI_JOB_JWT.*)$"
)


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the release's credentials (for the build, install and smoke test)."""
    return {k: v for k, v in environ.items() if not _SECRET_VARIABLES.match(k)}


def tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    shown = lines[-OUTPUT_TAIL:]
    prefix = ["  …"] if len(lines) > OUTPUT_TAIL else []
    return "\n".join(prefix + [f"  {line}" for line in shown])


def run_command(
    command: Sequence[str],
    *,
    what: str,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    hint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `command`; raises PublishError (with the output's tail) when it fails or hangs."""
    try:
        done = subprocess.run(
            list(command),
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PublishError(
            f"{what} did not finish within {timeout:.0f} s.", hint=hint, context={"cwd": str(cwd)}
        ) from None
    except OSError as exc:
        raise PublishError(f"{what} could not start: {exc}", hint=hint) from exc
    if done.returncode != 0:
        output = tail((done.stdout or "") + "\n" + (done.stderr or ""))
        raise PublishError(
            f"{what} failed (exit code {done.returncode}):\n{output}",
            hint=hint,
            context={"command": shlex.join(command)},
        )
    return done
