"""`make demo`: a keyless index over TLS, the old token way, then a release with no token at all.

Everything happens in a fresh temporary folder on 127.0.0.1; servers are stopped at the end.
Each step prints the command a user would type (secrets masked).

1. `keyless dev-cert` and `keyless serve` with `test` and `prod` indexes over https;
2. the old way: an API token and `twine upload` (release 0.9.0 to prod);
3. the keyless way: trusted publishers for the GitHub repository octo-org/hello-keyless, and
   the release workflow of tag v1.0.0 rehearsed under `keyless ci-emulator` — `keyless publish`
   to `test`, an install test from there, then `prod` — with no API token anywhere;
4. a push to main is refused (the publisher only accepts tags), with the reason;
5. `pip install` from prod, and the audit trail of who published what.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "hello-keyless"
BIN = Path(sys.executable).parent
KEYLESS = [str(BIN / "keyless")]
REPO = "octo-org/hello-keyless"


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(
    command: list[str],
    *,
    secret: str = "",
    env: dict[str, str] | None = None,
    quiet_stdout: bool = False,
    expect_failure: bool = False,
) -> str:
    """Run and echo a command; `secret` is masked, `quiet_stdout` keeps stdout off the screen."""
    shown = shlex.join(command).replace(secret, "keyless-…") if secret else shlex.join(command)
    print(f"$ {shown}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    output = ("" if quiet_stdout else result.stdout) + result.stderr
    # Tokens never reach the screen, including the ones uv masks for GitHub's log.
    output = re.sub(r"keyless-[A-Za-z0-9_-]{20,}", "keyless-…", output.strip())
    # CI jobs mask the OIDC token too (GitHub hides `::add-mask::` values from its log).
    output = re.sub(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", "eyJ…", output)
    if output:
        print("  " + output.replace("\n", "\n  "))
    if (result.returncode != 0) != expect_failure:
        raise SystemExit(f"demo failed: the command above exited with {result.returncode}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[str], ca: Path) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("demo failed: keyless serve exited early")
        try:
            with urllib.request.urlopen(f"{url}/_/health", timeout=2, context=context) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("demo failed: the server did not answer /_/health within 30 s")


def build(work: Path, version: str) -> list[str]:
    """Build the sample project at `version` (sdist + wheel); returns the files."""
    source = work / f"src-{version}"
    shutil.copytree(SAMPLE, source)
    for path in (source / "pyproject.toml", source / "src" / "hello_keyless" / "__init__.py"):
        path.write_text(path.read_text().replace("1.0.0", version))
    dist = work / f"dist-{version}"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)])
    return sorted(str(p) for p in dist.iterdir())


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="keyless-demo-"))
    data, tls = work / "data", work / "tls"
    port, issuer_port = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    issuer = f"http://127.0.0.1:{issuer_port}"
    # The server and admin commands trust the local CI emulator as a GitHub-type issuer;
    # clients trust the local CA, as a user of `keyless dev-cert` would set them up.
    server_env = {**os.environ, "KEYLESS_TRUSTED_ISSUERS": f"github={issuer}"}
    client_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_", "UV_"))
    }
    client_env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        SSL_CERT_FILE=str(tls / "ca.pem"),
        REQUESTS_CA_BUNDLE=str(tls / "ca.pem"),
        UV_CACHE_DIR=str(work / "uv-cache"),
    )
    admin = ["--data", str(data)]

    step("1. A local certificate authority and the index over https")
    run([*KEYLESS, "dev-cert", "--dir", str(tls)])
    print(
        f"$ KEYLESS_TRUSTED_ISSUERS=github={issuer} keyless serve --data {data} --port {port} "
        f"--tls-cert {tls / 'cert.pem'} --tls-key {tls / 'key.pem'}"
    )
    log_path = work / "server.log"
    server = subprocess.Popen(
        [
            *KEYLESS,
            "serve",
            *admin,
            "--port",
            str(port),
            "--tls-cert",
            str(tls / "cert.pem"),
            "--tls-key",
            str(tls / "key.pem"),
        ],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env=server_env,
    )
    try:
        wait_healthy(url, server, tls / "ca.pem")
        print("  " + log_path.read_text().strip().replace("\n", "\n  "))
        return release(work, url, issuer_port, admin, server_env, client_env, log_path)
    finally:
        server.terminate()
        server.wait(timeout=10)


def release(
    work: Path,
    url: str,
    issuer_port: int,
    admin: list[str],
    server_env: dict[str, str],
    client_env: dict[str, str],
    log_path: Path,
) -> int:
    issuer = f"http://127.0.0.1:{issuer_port}"
    step("2. The old way: a maintainer, an API token in a secret, and twine (release 0.9.0)")
    run(
        [*KEYLESS, "user", "add", "maintainer", *admin],
        env={**server_env, "KEYLESS_PASSWORD": "demo-password-123"},
    )
    create = ["token", "create", "--user", "maintainer", "--index", "prod", "--expires", "1d"]
    token = run([*KEYLESS, *create, *admin], quiet_stdout=True, env=server_env).strip()
    twine = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar"]
    twine += ["--repository-url", f"{url}/prod/legacy/", "-u", "__token__", "-p", token]
    run([*twine, *build(work, "0.9.0")], secret=token, env=client_env)

    step("3. The keyless way: trusted publishers instead of tokens")
    github = [
        "github",
        "--owner",
        "octo-org",
        "--repository",
        "hello-keyless",
        "--workflow",
        "release.yml",
        "--ref",
        "refs/tags/v*",
        "--issuer",
        issuer,
    ]
    run(
        [
            *KEYLESS,
            "publisher",
            "add",
            "--index",
            "test",
            "--pending",
            "hello-keyless",
            "--owner-user",
            "maintainer",
            *github,
            "--environment",
            "testpypi",
            *admin,
        ],
        env=server_env,
    )
    run(
        [
            *KEYLESS,
            "publisher",
            "add",
            "--index",
            "prod",
            "--project",
            "hello-keyless",
            *github,
            "--environment",
            "pypi",
            *admin,
        ],
        env=server_env,
    )
    files = build(work, "1.0.0")

    step("4. Tag v1.0.0: the release workflow, rehearsed under the CI emulator (no token)")
    emulate = [
        *KEYLESS,
        "ci-emulator",
        "run",
        "--keys",
        str(work / "emulator"),
        "--issuer-port",
        str(issuer_port),
        "--repo",
        REPO,
        "--workflow",
        "release.yml",
    ]
    tag = ["--event", "push", "--ref", "refs/tags/v1.0.0"]
    # What the generated workflow's publish jobs run (`keyless init`); uv publish works too.
    keyless_publish = [*KEYLESS, "publish", "--trusted-publishing", "always"]

    def publish_as_job(
        index: str, environment: str, job: list[str], expect_failure: bool = False
    ) -> None:
        run(
            [
                *emulate,
                *job,
                "--environment",
                environment,
                "--",
                *keyless_publish,
                "--repository-url",
                f"{url}/{index}/legacy/",
                *files,
            ],
            env=client_env,
            expect_failure=expect_failure,
        )

    def install_and_run(index: str, requirement: str) -> None:
        venv = work / f"venv-{index}"
        run([sys.executable, "-m", "venv", str(venv)])
        pip = str(venv / "bin" / "pip")
        run(
            [pip, "install", "--quiet", "--index-url", f"{url}/{index}/simple/", requirement],
            env=client_env,
        )
        run([str(venv / "bin" / "hello-keyless")])

    publish_as_job("test", "testpypi", tag)
    install_and_run("test", "hello-keyless==1.0.0")
    publish_as_job("prod", "pypi", tag)

    step("5. A push to main cannot publish: the publisher accepts tags only")
    publish_as_job(
        "prod", "pypi", ["--event", "push", "--ref", "refs/heads/main"], expect_failure=True
    )

    step("6. Install from prod, and the audit trail")
    install_and_run("prod", "hello-keyless")
    run([*KEYLESS, "audit", "--index", "prod", "hello-keyless", *admin])

    step("Done")
    print(f"The index ran at {url} with its data in {work / 'data'}; its log is {log_path}.")
    print("Release 1.0.0 reached test and prod with no API token: only the CI job's identity.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
