"""`make demo`: start a keyless index, publish a sample package with twine, install it with pip.

Everything happens in a fresh temporary folder on 127.0.0.1 and the server is stopped at the
end. Each step prints the command a user would type.
"""

from __future__ import annotations

import json
import os
import shlex
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


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(
    command: list[str],
    *,
    secret: str = "",
    env: dict[str, str] | None = None,
    quiet_stdout: bool = False,
) -> str:
    """Run and echo a command; `secret` is masked, `quiet_stdout` keeps stdout off the screen."""
    shown = shlex.join(command).replace(secret, "keyless-…") if secret else shlex.join(command)
    print(f"$ {shown}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    output = ("" if quiet_stdout else result.stdout) + result.stderr
    output = output.strip()
    if secret:
        output = output.replace(secret, "keyless-…")
    if output:
        print("  " + output.replace("\n", "\n  "))
    if result.returncode != 0:
        raise SystemExit(f"demo failed: the command above exited with {result.returncode}")
    return result.stdout


def client_env() -> dict[str, str]:
    # Ignore this machine's own pip/uv index settings: the demo must talk to keyless only.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("demo failed: keyless serve exited early")
        try:
            with urllib.request.urlopen(f"{url}/_/health", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("demo failed: the server did not answer /_/health within 30 s")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="keyless-demo-"))
    data = work / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keyless = [str(BIN / "keyless")]

    step("1. Start the index (SQLite + local files in a fresh folder)")
    print(f"$ keyless serve --data {data} --port {port}")
    log_path = work / "server.log"
    server = subprocess.Popen(
        [*keyless, "serve", "--data", str(data), "--port", str(port)],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_healthy(url, server)
        print("  " + log_path.read_text().strip().replace("\n", "\n  "))

        step("2. Add a maintainer and an API token scoped to the 'prod' index")
        env = {**os.environ, "KEYLESS_PASSWORD": "demo-password-123"}
        run([*keyless, "user", "add", "maintainer", "--data", str(data)], env=env)
        create_token = ["token", "create", "--user", "maintainer", "--index", "prod"]
        create_token += ["--expires", "1d"]
        token = run(
            [*keyless, *create_token, "--data", str(data)],
            quiet_stdout=True,  # the token stays off the screen, as it should in a CI log
        ).strip()

        step("3. Build the sample project (sdist + wheel)")
        dist = work / "dist"
        run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(SAMPLE)])

        step("4. Upload with twine")
        files = sorted(str(p) for p in dist.iterdir())
        upload_url = f"{url}/prod/legacy/"
        twine = [sys.executable, "-m", "twine", "upload", "--non-interactive"]
        twine += ["--disable-progress-bar", "--repository-url", upload_url]
        twine += ["-u", "__token__", "-p", token]
        run([*twine, *files], secret=token, env=client_env())

        step("5. Upload the same files again: identical bytes are a no-op success")
        run([*twine, *files], secret=token, env=client_env())

        step("6. What the index now serves (PEP 691 JSON)")
        request = urllib.request.Request(  # noqa: S310 - a URL we built, on 127.0.0.1
            f"{url}/prod/simple/hello-keyless/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        )
        with urllib.request.urlopen(request) as answer:  # noqa: S310
            page = json.load(answer)
        for entry in page["files"]:
            digest = entry["hashes"]["sha256"][:16]
            print(f"  {entry['filename']}  {entry['size']} bytes  sha256={digest}…")

        step("7. Install it with pip into a fresh virtual environment and run it")
        venv = work / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--index-url",
                f"{url}/prod/simple/",
                "hello-keyless",
            ],
            env=client_env(),
        )
        run([str(venv / "bin" / "hello-keyless")])

        step("Done")
        print(f"The index ran at {url} with its data in {data}; its log is {log_path}.")
        print("Nothing was uploaded anywhere else. The server is stopped now.")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
