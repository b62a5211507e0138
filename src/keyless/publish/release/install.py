"""Stage 6, install-test: a fresh virtual environment installs the release from the staging
index ONLY, imports every top-level module of the wheel, checks the installed version and runs
the optional smoke command.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.version import InvalidVersion, Version

from keyless.publish.errors import PublishError
from keyless.publish.indexclient import redact
from keyless.publish.release.commands import clean_environment, run_command, tail
from keyless.publish.release.state import Run
from keyless.publish.reporter import Reporter


def top_level_modules(wheel: Path) -> list[str]:
    """The importable top-level names a wheel installs (top_level.txt, else its RECORD)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
            if top_level:
                text = archive.read(top_level[0]).decode("utf-8", "replace")
                listed = [line.strip().replace("/", ".") for line in text.splitlines()]
                return sorted({m for m in listed if m and m.split(".")[0].isidentifier()})
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    found: set[str] = set()
    for name in names:
        first, sep, _rest = name.partition("/")
        if sep:
            if first.endswith((".dist-info", ".data")) or first == "__pycache__":
                continue
            candidate = first
        elif first.endswith(".py"):
            candidate = first[: -len(".py")]
        elif first.endswith((".so", ".pyd")):
            candidate = first.split(".", 1)[0]
        else:
            continue
        if candidate.isidentifier():
            found.add(candidate)
    return sorted(found)


# Runs inside the fresh environment, which has nothing but the release installed: no
# `packaging` there, so versions are compared by their normalized text from our side.
_CHECK_SCRIPT = (
    "import importlib, importlib.metadata, sys\n"
    "name, modules = sys.argv[1], sys.argv[2:]\n"
    "for module in modules:\n"
    "    importlib.import_module(module)\n"
    "print(importlib.metadata.version(name))\n"
)


def _venv_python(venv: Path) -> Path:
    return (
        venv
        / ("Scripts" if os.name == "nt" else "bin")
        / ("python.exe" if os.name == "nt" else "python")
    )


def install_test(
    name: str,
    version: str,
    simple_url: str,
    *,
    modules: Sequence[str],
    smoke: str | None,
    environ: Mapping[str, str],
    reporter: Reporter,
    python: str = sys.executable,
    timeout: float = 600,
    source: str = "the staging index",
) -> None:
    """Install `name==version` from `simple_url` alone into a fresh virtual environment,
    import `modules`, check the installed version, and run `smoke` (split like a shell
    command line, run without a shell, with the environment's `bin` first on PATH).

    `source` names `simple_url` in messages. Raises PublishError saying which step failed and
    its output.
    """
    with tempfile.TemporaryDirectory(prefix="keyless-install-test-") as scratch:
        workdir = Path(scratch)
        venv = workdir / "venv"
        base = clean_environment(environ)
        for key in list(base):
            if key.startswith("PIP_") or key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
                del base[key]
        reporter.info(f"creating a fresh virtual environment ({python} -m venv)")
        run_command(
            [python, "-m", "venv", str(venv)],
            what="creating the virtual environment",
            cwd=workdir,
            env=base,
            timeout=timeout,
        )
        venv_python = str(_venv_python(venv))
        env = {
            **base,
            # Only the staging index: no user or site pip configuration may add another.
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "VIRTUAL_ENV": str(venv),
            "PATH": os.pathsep.join([str(Path(venv_python).parent), base.get("PATH", "")]),
        }
        requirement = f"{name}=={version}"
        command = [
            venv_python,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--timeout",
            "60",
            "--index-url",
            simple_url,
        ]
        cert = environ.get("SSL_CERT_FILE") or environ.get("REQUESTS_CA_BUNDLE")
        if cert:
            command += ["--cert", cert]
        command.append(requirement)
        reporter.info(f"pip install {requirement} --index-url {redact(simple_url)}")
        run_command(
            command,
            what=f"installing {requirement} from {source}",
            cwd=workdir,
            env=env,
            timeout=timeout,
            hint=f"the install test uses {source} only: every dependency of the "
            "release must be installable from it too (upload them there first).",
        )
        reporter.info(f"importing {', '.join(modules) or '(no top-level module found)'}")
        checked = run_command(
            # -I: isolated, so the project folder or PYTHONPATH cannot shadow what pip
            # installed; the import must come from the installed release.
            [venv_python, "-I", "-c", _CHECK_SCRIPT, name, *modules],
            what=f"importing {', '.join(modules) or name} in the fresh environment",
            cwd=workdir,
            env=env,
            timeout=timeout,
            hint="the installed release does not import: a module missing from the wheel, or "
            "a dependency not declared?",
        )
        installed = checked.stdout.strip().splitlines()[-1] if checked.stdout.strip() else ""
        if not _same_version(installed, version):
            raise PublishError(
                f"the fresh environment has {name} {installed or '?'}, not {version}.",
                hint=f"is an older build of this version on {source}?",
            )
        if smoke:
            try:
                smoke_command = shlex.split(smoke)
            except ValueError as exc:
                raise PublishError(f"the smoke command cannot be parsed: {exc}") from exc
            if not smoke_command:
                return
            found = shutil.which(smoke_command[0], path=env["PATH"])
            if found:
                smoke_command[0] = found
            reporter.info(f"smoke test: {smoke}")
            ran = run_command(
                smoke_command,
                what=f"the smoke command ({smoke})",
                cwd=workdir,
                env=env,
                timeout=timeout,
                hint=f"it ran in the fresh environment with the release installed from {source}.",
            )
            if ran.stdout.strip():
                reporter.info("smoke test output:\n" + tail(ran.stdout))


def _same_version(installed: str, expected: str) -> bool:
    try:
        return Version(installed) == Version(expected)
    except InvalidVersion:
        return installed == expected


def test(run: Run) -> None:
    """Install the release from staging in a fresh environment (skipped in a dry run)."""
    name, version = run.result.project or "", run.result.version or ""
    if run.dry_run:
        run.skip(
            "install-test",
            f"dry run: would install {name}=={version} from {redact(run.staging_simple)}",
        )
        return
    wheel = next(d for d in run.result.built if not d.is_sdist)
    modules = top_level_modules(wheel.path)
    if not modules:
        run.reporter.warning(
            f"{wheel.filename} installs no top-level module: only the install is tested"
        )
    where = "the session's stage preview" if run.staged is not None else "staging"
    with run.stage("install-test", f"Installing from {where} in a fresh environment") as out:
        install_test(
            name,
            version,
            run.install_index,
            modules=modules,
            smoke=run.smoke,
            environ=run.environ,
            reporter=run.reporter,
            python=run.python,
            source=where if run.staged is not None else "the staging index",
        )
        out.detail = f"imported {', '.join(modules) or '-'}" + (
            f"; smoke test passed: {run.smoke}" if run.smoke else ""
        )
