"""`keyless` imports only what the command it runs needs, and defines only that command's parser.

Start-up time is the point, but timings make flaky tests: these check what is imported (in a
fresh interpreter) and that the lighter parsers are the same as the full one.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from keyless.cli.main import COMMANDS, build_parser, command_of

# What no parser needs: the server, the checks (readme_renderer, docutils), the CI emulator
# (`ci-emulator`'s parser reads its choices from keyless.ci.claims, which is stdlib only),
# cryptography, and the release client's dependencies.
NOT_FOR_PARSING = (
    "cryptography",
    "docutils",
    "httpx",
    "jwt",
    "keyless.ci.emulator",
    "keyless.ci.issuer",
    "keyless.ci.jobenv",
    "keyless.ci.keys",
    "keyless.workflows",
    "keyless.devcert",
    "keyless.dists",
    "keyless.index",
    "keyless.publish.ambient",
    "keyless.publish.check",
    "keyless.publish.credentials",
    "keyless.publish.doctor",
    "keyless.store",
    "packaging.metadata",
    "readme_renderer",
    "rich",
    "sqlalchemy",
    "starlette",
    "uvicorn",
)
# What `keyless publish` itself never needs: among them the description renderers (only the
# checks render) and httpx's own command line (click, rich, pygments; see `main`).
NOT_FOR_PUBLISHING = (
    "click",
    "cryptography",
    "docutils",
    "jwt",
    "keyless.ci",
    "keyless.devcert",
    "keyless.index",
    "keyless.publish.check",
    "keyless.publish.doctor",
    "keyless.publish.init",
    "keyless.publish.release",
    "keyless.store",
    "pygments",
    "readme_renderer",
    "rich",
    "sqlalchemy",
    "starlette",
    "uvicorn",
)

# Runs in a fresh interpreter: `main(argv)` (or, with no argv, builds the full parser), then
# prints the modules loaded.
SCRIPT = """
import contextlib, io, json, sys
from keyless.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    if len(sys.argv) > 1:
        try:
            main.main(sys.argv[1:])
        except SystemExit:
            pass
    else:
        main.build_parser()
# None entries are imports blocked on purpose (see main._skip_httpx_command_line).
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""


def loaded_after(*argv: str, cwd: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        timeout=60,
    )
    return set(json.loads(done.stdout))


def unwanted(loaded: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in loaded if any(name == p or name.startswith(p + ".") for p in packages)
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("publish", "--help"),
        ("--help",),
        ("check", "--help"),
        ("serve", "--help"),
        ("fsck", "--help"),
        ("publisher", "add", "github", "--help"),
        (),  # every command's parser
    ],
    ids=lambda argv: " ".join(argv) or "full parser",
)
def test_parsing_imports_nothing_heavy(argv: tuple[str, ...], tmp_path: Path) -> None:
    assert unwanted(loaded_after(*argv, cwd=tmp_path), NOT_FOR_PARSING) == []


@pytest.mark.parametrize(
    ("argv", "modules"),
    [
        (("--help",), set()),
        (("publish", "--help"), {"publish"}),
        (("publish", "missing.whl"), {"publish", "reporting"}),
        (("serve", "--help"), {"serve", "server", "devcert"}),
        (("token", "--help"), {"admin", "server"}),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else "",
)
def test_a_command_imports_no_other_commands_module(
    argv: tuple[str, ...], modules: set[str], tmp_path: Path
) -> None:
    """`keyless --help` lists every command from main's table alone; a command imports its own
    module (and what that imports), none of the other commands' modules."""
    loaded = {
        name.removeprefix("keyless.cli.")
        for name in loaded_after(*argv, cwd=tmp_path)
        if name.startswith("keyless.cli.")
    }
    assert loaded - {"main", "argv"} == modules


def test_publish_imports_only_the_release_client(tmp_path: Path) -> None:
    # It fails on the missing file, after importing all it needs to publish.
    loaded = loaded_after("publish", "missing.whl", cwd=tmp_path)
    assert "keyless.publish.upload" in loaded
    assert unwanted(loaded, NOT_FOR_PUBLISHING) == []


def test_publish_with_an_api_token_imports_no_trusted_publishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an API token, `keyless publish` never detects a CI: the OIDC providers, the `id`
    library and the CI detection stay unloaded. Nor does it load `html` (its entity tables),
    which only the index's pages need, or configparser, which only a wheel with entry points
    needs. (It reads the wheel, takes the token, then fails to reach the index.)"""
    from tests.builders import build_wheel, write_dist
    from tests.conftest import free_port

    wheel = write_dist(tmp_path, *build_wheel("imports-demo", "1.0"))
    monkeypatch.setenv("KEYLESS_TOKEN", "keyless-not-a-real-token")
    url = f"http://127.0.0.1:{free_port()}/x/legacy/"
    loaded = loaded_after("publish", "--repository-url", url, str(wheel), cwd=tmp_path)
    assert "keyless.publish.credentials" in loaded
    assert "keyless.publish.localdist" in loaded
    assert (
        unwanted(loaded, ("id", "keyless.oidc", "keyless.publish.ambient", "html", "configparser"))
        == []
    )


def _helps(parser: argparse.ArgumentParser, path: str = "") -> dict[str, str]:
    """The help of `parser` and of every parser under it, by command path."""
    helps = {path: parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                helps.update(_helps(sub, f"{path} {name}".strip()))
    return helps


def test_a_command_alone_has_the_same_parsers_as_in_the_full_parser() -> None:
    full = _helps(build_parser())
    assert _helps(build_parser(""))[""] == full[""]
    for name, _, _ in COMMANDS:
        alone = _helps(build_parser(name))
        mine = {path: text for path, text in alone.items() if path.split(" ")[0] == name}
        assert mine == {p: t for p, t in full.items() if p.split(" ")[0] == name}


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([], ""),
        (["--help"], ""),
        (["publish"], "publish"),
        (["publish", "--dry-run", "dist/x.whl"], "publish"),
        (["-h", "publisher", "add"], "publisher"),
        (["--", "publish"], "publish"),
    ],
)
def test_command_of(argv: list[str], command: str) -> None:
    assert command_of(argv) == command


def test_spelled_out_constants_match_the_library() -> None:
    # The command modules copy these so that defining their parsers imports nothing heavy.
    from keyless import devcert
    from keyless.cli import check as check_cli
    from keyless.cli import devcert as devcert_cli
    from keyless.cli import doctor as doctor_cli
    from keyless.cli import init as init_cli
    from keyless.cli import publish as publish_cli
    from keyless.publish import check, credentials, doctor, init

    assert publish_cli.MODES == credentials.MODES
    assert check_cli.DEFAULT_MAX_FILE_SIZE == check.DEFAULT_MAX_FILE_SIZE
    assert (
        doctor_cli.PYPI_UPLOAD_URL == doctor.PYPI_UPLOAD_URL == publish_cli.DEFAULT_REPOSITORY_URL
    )
    assert init_cli.PYPI_INDEXES == init.PYPI_INDEXES
    assert devcert_cli.DEFAULT_HOSTS == devcert.DEFAULT_HOSTS
    assert devcert_cli.CA_FILE == devcert.CA_CERT


@pytest.mark.parametrize("package", ["keyless.ci", "keyless.publish"])
def test_a_lazy_packages_exports_are_the_names_it_imports_for_mypy(package: str) -> None:
    """A package whose exports are imported on first use names each of them again under
    `if TYPE_CHECKING:`, from the module that defines it, so that mypy sees its type (else
    the Any of `__getattr__`); an export missing there is an unchecked name, not an error."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    typed: dict[str, str] = {}
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                assert statement.module is not None
                typed.update((alias.name, statement.module) for alias in statement.names)
    assert sorted(typed.keys() ^ set(module._EXPORTS)) == []
    for name, defined_in in typed.items():  # the object `__getattr__` gives, not a namesake
        lazy = getattr(importlib.import_module(module._EXPORTS[name]), name)
        assert getattr(importlib.import_module(defined_in), name) is lazy, name


@pytest.mark.parametrize("package", ["keyless.ci", "keyless.publish"])
def test_no_lazy_export_is_named_like_a_module_of_its_package(package: str) -> None:
    """Importing a submodule sets the package's attribute of that name to the module: an
    export of the same name would be the function once, then the module for ever after."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    folder = Path(module.__file__).parent
    clashing = [
        n for n in module._EXPORTS if (folder / n).is_dir() or (folder / f"{n}.py").exists()
    ]
    assert clashing == []


# `keyless` as a program (no argv: its own command line), then as a caller's function.
FREEZE_SCRIPT = """
import contextlib, gc, io, json, sys
from keyless.cli import main
counts = []
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    main.main(["publish", "missing.whl"])
    counts.append(gc.get_freeze_count())
    sys.argv = ["keyless", "publish", "missing.whl"]
    main.main()
    counts.append(gc.get_freeze_count())
print(json.dumps(counts))
"""


def test_the_program_skips_the_last_garbage_collection_a_caller_keeps_its_own(
    tmp_path: Path,
) -> None:
    """Run as the program, `keyless` leaves what it loaded out of the collection at exit
    (50-80 ms of `keyless publish`); called as a function it leaves the caller's process as
    it was."""
    done = subprocess.run(
        [sys.executable, "-c", FREEZE_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    as_function, as_program = json.loads(done.stdout)
    assert as_function == 0
    assert as_program > 10_000
