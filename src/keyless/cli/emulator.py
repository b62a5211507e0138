"""`keyless ci-emulator`: run a command as a CI job, against a local OIDC issuer.

keyless ci-emulator run --repo octo/hello --environment pypi -- keyless publish dist/*
keyless ci-emulator serve                      # just the issuer, until Ctrl-C
keyless ci-emulator token --audience keyless --repo octo/hello
keyless ci-emulator env --repo octo/hello      # KEY=value lines of the job environment
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyless.ci.claims import JobClaims
    from keyless.ci.emulator import Emulator

# What the actions need (the
# emulator: PyJWT, cryptography, an HTTP server; even subprocess or tempfile) is imported by
# the action that uses it, and what the parser needs (keyless.ci.claims, stdlib only) by the
# function that defines it.

DEFAULT_KEYS = Path("keyless-data") / "ci-emulator"
# One fixed default port shared by `serve`, `token` and `env`, so tokens and environments
# printed by the latter two point at an issuer the first one is serving.
DEFAULT_PORT = 8790

Handler = Callable[[argparse.Namespace], int]


def define(parser: argparse.ArgumentParser) -> None:
    """Give `ci-emulator`'s parser its description and arguments."""
    parser.description = (
        "A local OIDC issuer for rehearsals and tests. Its tokens are trusted only by an "
        "index configured with its issuer URL; it is not GitHub or GitLab."
    )
    actions = parser.add_subparsers(dest="ci_emulator_action", required=True, metavar="ACTION")

    run = actions.add_parser(
        "run",
        help="run a command with the environment of a CI job, then stop",
        description="Start the issuer, run COMMAND as a step of the described job, stop, and "
        "exit with the command's exit code.",
    )
    _keys_option(run)
    run.add_argument(
        "--issuer-port",
        type=int,
        default=0,
        help="fixed issuer port, so the issuer URL an index trusts stays the same across runs "
        "(default: any free port)",
    )
    _job_options(run, audiences=True)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    run.set_defaults(handler=cmd_run)

    serve = actions.add_parser("serve", help="serve only the issuer, until Ctrl-C")
    _keys_option(serve)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.set_defaults(handler=cmd_serve)

    token = actions.add_parser("token", help="print one signed ID token (for debugging)")
    _keys_option(token)
    _issuer_port_option(token)
    token.add_argument("--audience", required=True, help="the token's aud claim")
    token.add_argument(
        "--show-claims", action="store_true", help="also print the decoded claims to stderr"
    )
    _job_options(token, audiences=False)
    token.set_defaults(handler=cmd_token)

    env = actions.add_parser("env", help="print the job environment as KEY=value lines")
    _keys_option(env)
    _issuer_port_option(env)
    env.add_argument("--export", action="store_true", help="print `export KEY=value` for a shell")
    env.add_argument(
        "--job-dir",
        type=Path,
        help="folder for the event payload and step files (default: a new temporary folder)",
    )
    _job_options(env, audiences=True)
    env.set_defaults(handler=cmd_env)


def _keys_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys",
        type=Path,
        default=DEFAULT_KEYS,
        help=f"folder of the issuer's signing key, kept across runs (default {DEFAULT_KEYS})",
    )


def _issuer_port_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--issuer-port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port of the `serve` issuer the output refers to (default {DEFAULT_PORT})",
    )


def _job_options(parser: argparse.ArgumentParser, *, audiences: bool) -> None:
    from keyless.ci.claims import GITHUB_EVENTS, PROVIDERS, VISIBILITIES

    job = parser.add_argument_group("the emulated job")
    job.add_argument("--provider", choices=PROVIDERS, default="github")
    job.add_argument("--repo", required=True, help="OWNER/REPO (GitLab: NAMESPACE/PROJECT)")
    job.add_argument(
        "--workflow",
        help="workflow file in .github/workflows (default release.yml); "
        "GitLab: CI config path (default .gitlab-ci.yml)",
    )
    job.add_argument("--workflow-name", help="GitHub's `workflow` claim (the workflow's name:)")
    job.add_argument("--ref", help="full git ref (default refs/heads/main)")
    job.add_argument("--sha", help="commit (default: 40 hex derived from repo and ref)")
    job.add_argument("--environment", help="deployment environment of the job")
    job.add_argument(
        "--event",
        help=f"GitHub event ({', '.join(GITHUB_EVENTS)}; default push) or GitLab pipeline source",
    )
    job.add_argument(
        "--fork-pr",
        action="store_true",
        help="a pull request from a fork: GitHub gives such a job no OIDC token",
    )
    job.add_argument(
        "--no-id-token",
        dest="id_token",
        action="store_false",
        help="the job lacks `permissions: id-token: write` (GitLab: has no id_tokens:)",
    )
    job.add_argument(
        "--reusable-workflow",
        metavar="OWNER/REPO/.github/workflows/FILE.yml@REF",
        help="the job runs this reusable workflow (sets job_workflow_ref)",
    )
    job.add_argument("--owner-id", type=int)
    job.add_argument("--repo-id", type=int)
    job.add_argument("--actor")
    job.add_argument("--actor-id", type=int)
    job.add_argument("--run-id", type=int)
    job.add_argument("--ref-protected", action="store_true", help="the ref is protected")
    job.add_argument("--visibility", choices=VISIBILITIES, default="public")
    job.add_argument("--lifetime", type=int, help="token lifetime in seconds (default 300)")
    job.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add or override a claim (KEY:=JSON for a non-string); repeatable",
    )
    job.add_argument(
        "--drop-claim", action="append", default=[], metavar="KEY", help="remove a claim"
    )
    if audiences:
        job.add_argument(
            "--audience",
            dest="audiences",
            action="append",
            help="GitLab: put a token for this audience in <AUD>_ID_TOKEN "
            "(repeatable; default keyless)",
        )


def job_from_args(args: argparse.Namespace) -> JobClaims:
    """The JobClaims the command-line flags describe.

    Raises EmulatorError for a flag value no real job could have.
    """
    from keyless.ci.claims import JobClaims, parse_claim

    fields: dict[str, Any] = {
        "provider": args.provider,
        "repo": args.repo,
        "workflow": args.workflow,
        "workflow_name": args.workflow_name,
        "ref": args.ref,
        "sha": args.sha,
        "environment": args.environment,
        "event": args.event,
        "fork_pr": args.fork_pr,
        "id_token": args.id_token,
        "reusable_workflow": args.reusable_workflow,
        "owner_id": args.owner_id,
        "repo_id": args.repo_id,
        "actor": args.actor,
        "actor_id": args.actor_id,
        "ref_protected": args.ref_protected,
        "visibility": args.visibility,
        "lifetime": args.lifetime,
        "extra": dict(parse_claim(text) for text in args.claim),
        "drop": frozenset(args.drop_claim),
    }
    if args.run_id is not None:
        fields["run_id"] = args.run_id
    if getattr(args, "audiences", None):
        fields["audiences"] = tuple(args.audiences)
    return JobClaims(**fields)


def _guarded(handler: Handler) -> Handler:
    # Setup mistakes (bad flags, unusable key folder, port taken) end with one line, exit 2.
    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from keyless.ci.errors import EmulatorError

        try:
            return handler(args)
        except (EmulatorError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


@_guarded
def cmd_run(args: argparse.Namespace) -> int:
    """Run the command as a job step; its exit code (128+N if killed by signal N)."""
    import signal
    import subprocess

    from keyless.ci.emulator import Emulator, banner

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("error: give the command to run after --", file=sys.stderr)
        return 2
    job = job_from_args(args)
    with Emulator(args.keys, port=args.issuer_port) as emulator:
        print(banner(emulator.issuer), file=sys.stderr)
        print(describe(job), file=sys.stderr)
        env = emulator.environment(job)
        for warning in credential_warnings(env):
            print(warning, file=sys.stderr)
        sys.stderr.flush()
        try:
            result = subprocess.run(command, env=env, check=False)
        except FileNotFoundError:
            print(f"error: command not found: {command[0]}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"error: cannot execute {command[0]}", file=sys.stderr)
            return 126
        except KeyboardInterrupt:
            return 128 + signal.SIGINT
        _show_step_files(env)
    code = result.returncode
    return 128 - code if code < 0 else code


@_guarded
def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the issuer until interrupted; 0."""
    import threading

    from keyless.ci.emulator import Emulator, banner
    from keyless.ci.issuer import DISCOVERY_PATH, JWKS_PATH
    from keyless.ci.jobenv import TOKEN_PATH, TOKEN_QUERY

    with Emulator(args.keys, port=args.port, host=args.host) as emulator:
        issuer = emulator.issuer
        print(banner(issuer), file=sys.stderr)
        lines = [
            f"issuer:         {issuer}",
            f"discovery:      {issuer}{DISCOVERY_PATH}",
            f"JWKS:           {issuer}{JWKS_PATH}  (kid {emulator.key.kid})",
            f"token endpoint: {issuer}{TOKEN_PATH}{TOKEN_QUERY}&audience=AUD  (GitHub-shaped)",
            "",
            *trust_lines(issuer),
            "",
            "Job environments and tokens for this issuer:",
            f"  keyless ci-emulator env --issuer-port {_port(issuer)} --repo OWNER/REPO",
            f"  keyless ci-emulator token --issuer-port {_port(issuer)} --repo OWNER/REPO "
            "--audience keyless",
            "",
            "Ctrl-C stops it.",
        ]
        print("\n".join(lines), flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0


@_guarded
def cmd_token(args: argparse.Namespace) -> int:
    """Print one signed token for the job; 0."""
    import jwt

    job, emulator = _unserved(args)
    print(_needs_serve(emulator, args.keys), file=sys.stderr)
    token = emulator.token(args.audience, job)
    if args.show_claims:
        claims = jwt.decode(token, options={"verify_signature": False})
        print(json.dumps(claims, indent=2), file=sys.stderr)
    print(token)
    return 0


@_guarded
def cmd_env(args: argparse.Namespace) -> int:
    """Print the job's own variables (not the inherited ones); 0."""
    import shlex
    import tempfile

    job, emulator = _unserved(args)
    if job.provider == "github":
        print(_needs_serve(emulator, args.keys), file=sys.stderr)
    job_dir = args.job_dir
    if job_dir is None and job.provider == "github":  # GitLab jobs write no files
        job_dir = Path(tempfile.mkdtemp(prefix="keyless-ci-job-"))
    env = emulator.environment(job, base={}, job_dir=job_dir)
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}" if args.export else f"{name}={value}")
    return 0


def describe(job: JobClaims) -> str:
    """One line saying which job is emulated and whether it can get an OIDC token."""
    from keyless.ci.jobenv import github_grants_token

    where = f"{job.provider} {job.repo} {job.workflow_path}@{job.full_ref} ({job.event_name})"
    if job.environment:
        where += f", environment {job.environment}"
    if job.provider == "gitlab":
        tokens = ", ".join(job.audiences) if job.id_token else "none (no id_tokens:)"
        return f"job: {where}; ID tokens for: {tokens}"
    if github_grants_token(job):
        return f"job: {where}; OIDC token: available"
    reason = "pull request from a fork" if job.id_token else "no `id-token: write` permission"
    return f"job: {where}; OIDC token: NOT available ({reason})"


# Long-lived upload credentials that make a client skip Trusted Publishing altogether.
UPLOAD_CREDENTIALS = (
    "UV_PUBLISH_TOKEN",
    "UV_PUBLISH_PASSWORD",
    "TWINE_PASSWORD",
    "KEYLESS_TOKEN",
)


def credential_warnings(env: dict[str, str]) -> list[str]:
    """Warnings for upload credentials inherited from the caller's shell.

    A real CI job only has the secrets its workflow passes; one left in a developer's shell
    would let a rehearsal pass with a password, never exercising Trusted Publishing.
    """
    return [
        f"warning: {name} is set in your environment: a client may use it instead of "
        "Trusted Publishing (unset it to rehearse the keyless path)"
        for name in UPLOAD_CREDENTIALS
        if env.get(name)
    ]


def trust_lines(issuer: str) -> list[str]:
    """How to make a keyless index accept this issuer's tokens (rehearsal indexes only)."""
    return [
        "To let a keyless index accept its tokens (a rehearsal index only), trust the issuer",
        "with the kind of jobs you emulate (github or gitlab; one kind per issuer URL):",
        f"  KEYLESS_TRUSTED_ISSUERS=github={issuer} keyless serve ...",
        "or in the index's config file:",
        "  [trusted-publishing]",
        f'  issuers = {{ "{issuer}" = "github" }}',
    ]


def _unserved(args: argparse.Namespace) -> tuple[JobClaims, Emulator]:
    """The job, and the emulator at --issuer-port that signs without serving; its banner printed.

    `token` and `env` print what a job would see; `serve` (or `run`) makes it verifiable.
    """
    from keyless.ci.emulator import Emulator, banner

    job = job_from_args(args)
    emulator = Emulator(args.keys, port=args.issuer_port)
    print(banner(emulator.issuer), file=sys.stderr)
    return job, emulator


def _needs_serve(emulator: Emulator, keys: Path) -> str:
    import shlex

    return (
        f"note: verifiable while `keyless ci-emulator serve --port {_port(emulator.issuer)} "
        f"--keys {shlex.quote(str(keys))}` runs"
    )


def _port(issuer: str) -> str:
    return issuer.rsplit(":", 1)[1]


def _show_step_files(env: dict[str, str]) -> None:
    # What the step wrote for later steps: worth seeing in a rehearsal of a release workflow.
    for variable in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        path = env.get(variable)
        text = Path(path).read_text(encoding="utf-8", errors="replace") if path else ""
        if text.strip():
            print(f"--- ${variable} ---\n{text.rstrip()}", file=sys.stderr)
