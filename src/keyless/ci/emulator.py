"""A local OIDC issuer that runs commands as if they were CI jobs: release rehearsals and tests.

    with Emulator(tmp_path / "keys") as ci:
        job = JobClaims(repo="octo/hello", workflow="release.yml", environment="pypi")
        ci.run(["keyless", "publish", "dist/*"], job)     # GitHub-shaped job, real OIDC flow
        token = ci.token("keyless", job)                   # or just a signed token

Its tokens are signed by a key kept in `keys_dir` and carry the emulator's own URL as `iss`.
They mean nothing to any index unless that index was configured to trust this issuer URL:
this is a rehearsal tool, never a way to publish as someone else.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from keyless.ci.claims import JobClaims
from keyless.ci.errors import EmulatorError
from keyless.ci.issuer import IssuerServer, base_url
from keyless.ci.jobenv import (
    github_environment,
    github_grants_token,
    gitlab_environment,
    without_ci_variables,
)
from keyless.ci.keys import SigningKey

__all__ = ["Emulator", "EmulatorError", "JobClaims", "banner"]

# A request token lives as long as the longest GitHub-hosted job may run.
REQUEST_TOKEN_LIFETIME = 6 * 60 * 60


def banner(issuer: str) -> str:
    """The one line every emulator command prints, so nobody mistakes it for the real thing."""
    return (
        "keyless ci-emulator: a LOCAL OIDC issuer for rehearsals and tests — not GitHub or "
        f"GitLab; trusted only by indexes configured with {issuer}"
    )


class Emulator:
    """A local OIDC issuer (GitHub-shaped token API) and the CI jobs wired to it.

    A context manager: the issuer listens from `__enter__` to `__exit__`. `token` and
    `environment` need only the issuer's URL, which a fixed `port` makes known before start;
    `run` needs the issuer running.
    """

    def __init__(self, keys_dir: Path, *, port: int = 0, host: str = "127.0.0.1") -> None:
        """Load (or create) the signing key in `keys_dir`.

        Raises EmulatorError if the key file there is unusable; OSError if the folder cannot
        be created.
        """
        self.keys_dir = Path(keys_dir)
        self.host = host
        self.port = port
        self.key = SigningKey.load_or_create(self.keys_dir)
        self._server: IssuerServer | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    @property
    def issuer(self) -> str:
        """The issuer's base URL: the `iss` of its tokens and the root of its discovery.

        Raises EmulatorError while it is unknown (ephemeral port, not started).
        """
        if self._server is not None:
            return self._server.url
        if self.port:
            return base_url(self.host, self.port)
        raise EmulatorError(
            "the emulator has no URL yet: start it (`with Emulator(...) as ci:`) or give a port."
        )

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Emulator:
        """Start serving discovery, JWKS and the token endpoint.

        Raises EmulatorError if it already runs or the address cannot be bound.
        """
        if self._server is not None:
            raise EmulatorError("the emulator is already running.")
        server = IssuerServer(self.key, self._mint, host=self.host, port=self.port)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop the issuer and delete the jobs' scratch files; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            scratch.cleanup()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def token(self, audience: str, claims: JobClaims, *, now: float | None = None) -> str:
        """A signed ID token (RS256 JWT) that this job would receive for `audience`.

        Issued regardless of the job's permissions: the permission decides only whether the
        job environment can ask for one. Raises EmulatorError while the issuer URL is unknown.
        """
        return self.key.sign(claims.claims(self.issuer, audience, now))

    def environment(
        self,
        claims: JobClaims,
        *,
        base: Mapping[str, str] | None = None,
        workspace: Path | None = None,
        job_dir: Path | None = None,
    ) -> dict[str, str]:
        """The environment of a step of this job: `base` (default os.environ) without any
        real CI's variables, plus the job's own, wired to this issuer.

        `workspace` (default the current folder) is GITHUB_WORKSPACE / CI_PROJECT_DIR. A
        GitHub job's event payload and command files go to `job_dir` (default a scratch folder
        deleted on `stop`). Raises EmulatorError while the issuer URL is unknown; OSError if the job
        folder cannot be written.
        """
        issuer = self.issuer
        env = without_ci_variables(os.environ if base is None else base)
        workspace = workspace or Path.cwd()
        if claims.provider == "gitlab":
            audiences = claims.audiences if claims.id_token else ()
            tokens = {audience: self.token(audience, claims) for audience in audiences}
            env.update(
                gitlab_environment(claims, issuer=issuer, id_tokens=tokens, workspace=workspace)
            )
            return env
        folder = job_dir or self._new_job_dir()
        folder.mkdir(parents=True, exist_ok=True)
        request_token = self._request_token(claims) if github_grants_token(claims) else None
        env.update(
            github_environment(
                claims,
                issuer=issuer,
                request_token=request_token,
                folder=folder,
                workspace=workspace,
            )
        )
        return env

    def run(
        self, command: Sequence[str], claims: JobClaims, **subprocess_kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run `command` as a step of this job (`subprocess.run` with the job's environment).

        `env=` in `subprocess_kwargs` replaces os.environ as the base environment; `cwd=` is
        also the job's workspace. Raises EmulatorError if the issuer is not running, and what
        `subprocess.run` raises (e.g. FileNotFoundError for an unknown program).
        """
        if not self.running:
            raise EmulatorError("start the emulator first: `with Emulator(...) as ci: ci.run(…)`.")
        base = subprocess_kwargs.pop("env", None)
        cwd = subprocess_kwargs.get("cwd")
        env = self.environment(claims, base=base, workspace=Path(cwd) if cwd else None)
        return subprocess.run(list(command), env=env, **subprocess_kwargs)

    def _request_token(self, claims: JobClaims) -> str:
        # The request token carries its job, sealed: the issuer needs no table of live jobs,
        # and an `env` printed by one process works against a `serve` in another.
        expires = int(time.time()) + REQUEST_TOKEN_LIFETIME
        return self.key.seal({"v": 1, "exp": expires, "job": claims.to_json()})

    def _mint(self, request_token: str, audience: str | None) -> str | None:
        payload = self.key.unseal(request_token)
        if payload is None or payload.get("v") != 1 or payload.get("exp", 0) < time.time():
            return None
        try:
            claims = JobClaims.from_json(payload["job"])
        except (EmulatorError, KeyError, TypeError):
            return None
        # GitHub's default audience, for clients that ask without one.
        return self.token(audience or f"https://github.com/{claims.owner}", claims)

    def _new_job_dir(self) -> Path:
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="keyless-ci-")
        return Path(tempfile.mkdtemp(prefix="job-", dir=self._scratch.name))
