"""`keyless init`: write the release workflow and print the publishers to register (thin shell)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from keyless.publish.errors import PublishError

if TYPE_CHECKING:
    from keyless.publish.init import InitResult

# = keyless.publish.init.PYPI_INDEXES, spelled out so that defining the parser does not import
# the workflow generator (and httpx); tests/test_cli_imports.py keeps the two equal.
PYPI_INDEXES: tuple[tuple[str, str], ...] = (
    ("testpypi", "https://test.pypi.org/legacy/"),
    ("pypi", "https://upload.pypi.org/legacy/"),
)


def define(parser: argparse.ArgumentParser) -> None:
    """Give `init`'s parser its description and arguments."""
    parser.description = (
        "Write .github/workflows/release.yml (or .gitlab-ci.yml): build, test on the "
        "Python versions requires-python admits, then publish to each index in turn with "
        "Trusted Publishing; print the trusted publishers to register on the indexes."
    )
    parser.add_argument(
        "--provider", choices=["github", "gitlab"], default="github", help="default github"
    )
    parser.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="NAME=UPLOAD_URL",
        help="an index to publish to, in order (repeatable; default "
        + " then ".join(f"{name}={url}" for name, url in PYPI_INDEXES)
        + ")",
    )
    parser.add_argument(
        "--environment",
        action="append",
        default=[],
        metavar="INDEX=ENVIRONMENT",
        help="the CI environment of an index's publish job (default: the index's name)",
    )
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="3.X",
        help="a Python version to test on (repeatable; default: from requires-python)",
    )
    parser.add_argument(
        "--test-command",
        metavar="CMD",
        help="the test job's shell command, run in the checkout after installing the wheel "
        "(default: pytest when there is a tests/ folder, else importing the package)",
    )
    parser.add_argument(
        "--audience",
        action="append",
        default=[],
        metavar="INDEX=AUDIENCE",
        help="an index's Trusted Publishing audience (GitLab's id_tokens:; default: asked)",
    )
    parser.add_argument(
        "--repository",
        metavar="OWNER/REPO",
        help="the repository (GitLab: NAMESPACE/PROJECT); default: git remote origin",
    )
    parser.add_argument(
        "--client",
        choices=["keyless", "uv"],
        default="keyless",
        help="what the publish jobs run: keyless publish (default) or uv publish",
    )
    parser.add_argument(
        "--client-source",
        metavar="URL|pypi",
        help="where the jobs install the keyless client from, pinned by sha256: a keyless "
        "index (it serves its own client at /+client/; default: the first keyless index "
        "published to). 'pypi' cannot be pinned (keyless is not on PyPI) and is refused",
    )
    parser.add_argument("--dir", type=Path, default=Path("."), help="the project's folder")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument("--cert", metavar="CA", help="PEM file of CAs to trust for the indexes")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def _pairs(items: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise PublishError(f"{option} {item!r}: write NAME=VALUE.")
        pairs.append((key.strip(), value.strip()))
    return pairs


def run(args: argparse.Namespace) -> int:
    """Write the workflow; 0 on success, 1 when it cannot be written, 2 on bad flags."""
    # Imported on use: every `keyless` command imports this module (see main.py).
    from keyless.publish.client_source import resolve_client_source
    from keyless.publish.indexclient import new_http_client
    from keyless.publish.init import discover_audiences, init_workflow

    try:
        indexes = _pairs(args.index, "--index") or list(PYPI_INDEXES)
        chosen = dict(_pairs(args.environment, "--environment"))
        audiences = dict(_pairs(args.audience, "--audience"))
    except PublishError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    names = [name for name, _ in indexes]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        print(f"error: --environment for unknown index(es): {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        if args.provider == "gitlab":
            missing = [(name, url) for name, url in indexes if name not in audiences]
            if missing:
                with new_http_client(ca_file=args.cert, timeout=15) as http:
                    audiences = {
                        **discover_audiences(missing, http, client=args.client),
                        **audiences,
                    }
        source = None
        if args.client == "keyless":
            with new_http_client(ca_file=args.cert, timeout=15) as http:
                urls = [url for _, url in indexes]
                source = resolve_client_source(args.client_source, urls, http)
        result = init_workflow(
            args.dir,
            provider=args.provider,
            indexes=indexes,
            python_versions=args.python or None,
            test_command=args.test_command,
            environments=[chosen.get(name, name) for name in names],
            audiences=audiences,
            repository=args.repository,
            client=args.client,
            client_source=source,
            force=args.force,
        )
    except PublishError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    if args.client == "uv" and args.client_source:
        result.notes.append("--client-source is for the keyless client; uv comes from PyPI.")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        render(result, sys.stdout)
    return 0


def render(result: InitResult, out: TextIO) -> None:
    """What was written and, per index, the publisher to register."""
    lines = [f"wrote {path}" for path in result.files]
    lines.append(
        f"  {result.provider} workflow for {result.project.name}: build, test on Python "
        f"{', '.join(result.python_versions)}, publish with `{result.client} publish` to "
        + " then ".join(p.index for p in result.publishers)
    )
    lines.append(f"  the jobs install {result.client_install}")
    lines += ["", "Register these trusted publishers before the first release:"]
    for publisher in result.publishers:
        lines += ["", f"{publisher.index} ({publisher.upload_url}):"]
        lines += [f"  {label:<24} {value}" for label, value in publisher.form]
        if publisher.command:
            lines.append(f"  on the index's server:  {publisher.command}")
        if publisher.settings_url:
            lines.append(f"  on the web:             {publisher.settings_url}")
    if any(p.command for p in result.publishers):
        lines += [
            "",
            "For a project not on an index yet, use --pending PROJECT --owner-user USER instead "
            "of --project PROJECT.",
        ]
    lines += [f"note: {note}" for note in result.notes]
    first = result.publishers[0]
    if first.kind == "github":
        job = f"--repo {first.fields['owner']}/{first.fields['repository']}"
    else:
        job = f"--provider gitlab --repo {first.fields['namespace']}/{first.fields['project']}"
        if first.audience:
            job += f" --audience {first.audience}"
    lines += [
        "",
        "Rehearse a publish job locally (with an index that trusts the emulator's issuer):",
        f"  keyless ci-emulator run {job} --environment {first.environment} "
        "--ref refs/tags/vX.Y.Z --event push "  # the release workflow runs on a tag push
        f"-- keyless doctor --repository-url {first.upload_url}",
    ]
    out.write("\n".join(lines) + "\n")
