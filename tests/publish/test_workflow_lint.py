"""Every workflow keyless writes passes the checks a careful reviewer runs on it.

GitHub workflows (`keyless init`, the Publishing page's preview, this repository's own
release workflow): actionlint, with shellcheck checking the `run:` scripts, and zizmor, the
GitHub Actions security auditor, at its pedantic persona with no findings. GitLab pipelines:
GitLab's CI JSON schema. The tools are pinned in pyproject's dev extra and run offline; a
missing one fails the test.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from keyless.index.web.snippets import snippet
from keyless.publish.init import init_workflow
from keyless.workflows import ACTIONS
from tests.builders import CLIENT_SOURCE

REPO = Path(__file__).resolve().parents[2]
CHECKED_IN = REPO / ".github" / "workflows" / "release.yml"
# The command that wrote CHECKED_IN, run at the repository's root (the README says the same).
RELEASE_INIT = (
    "keyless init --force --client uv --repository OWNER/keyless --test-command 'make test'"
)

KEYLESS_PROD = ("prod", "https://pypi.example.com/prod/legacy/")
KEYLESS_TEST = ("test", "https://pypi.example.com/test/legacy/")
TESTPYPI = ("testpypi", "https://test.pypi.org/legacy/")
PYPI = ("pypi", "https://upload.pypi.org/legacy/")


def tool(name: str) -> str:
    """The tool's path: the virtualenv's own first (pip puts it there), then PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[dev]' (the dev extra pins it)")
    return found


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    """actionlint with shellcheck named explicitly, so a lost shellcheck cannot go unseen."""
    return run(
        tool("actionlint"),
        "-no-color",
        "-shellcheck",
        tool("shellcheck"),
        str(path),
        cwd=path.parent,
    )


def zizmor_findings(path: Path) -> list[dict[str, object]]:
    """zizmor's findings, pedantic, offline, with any ignore comment disregarded."""
    done = run(
        tool("zizmor"),
        *("--offline", "--no-ignores", "--persona", "pedantic", "--format", "json"),
        str(path),
        cwd=path.parent,
    )
    findings: list[dict[str, object]] = json.loads(done.stdout)
    assert findings or done.returncode == 0, done.stderr
    return findings


def gitlab_schema(path: Path) -> subprocess.CompletedProcess[str]:
    """The pipeline checked against GitLab's CI schema (shipped with check-jsonschema)."""
    return run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path), cwd=path.parent
    )


# ------------------------------------------------------------------- what keyless writes


def project(tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    (folder / "src" / "demo").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "demo" / "__init__.py").write_text("", encoding="utf-8")
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1.0"\nrequires-python = ">=3.10"\n',
        encoding="utf-8",
    )
    return folder


def from_init(provider: Literal["github", "gitlab"], **options: Any) -> Callable[[Path], str]:
    def write(tmp_path: Path) -> str:
        result = init_workflow(
            project(tmp_path),
            provider=provider,
            repository="octo-org/demo" if provider == "github" else "group/sub/demo",
            write=False,
            **{"client_source": CLIENT_SOURCE, **options},
        )
        [text] = result.contents.values()
        return text

    return write


def from_preview(kind: str, **values: str) -> Callable[[Path], str]:
    def write(tmp_path: Path) -> str:
        return snippet(
            kind,
            values,
            upload_url=KEYLESS_PROD[1],
            audience="keyless",
            client_source=CLIENT_SOURCE,
        ).text

    return write


AUDIENCES = {"prod": "keyless", "test": "keyless-test"}

GITHUB: dict[str, Callable[[Path], str]] = {
    "init: TestPyPI then PyPI, keyless publish": from_init("github"),
    "init: TestPyPI then PyPI, uv publish": from_init("github", client="uv"),
    "init: PyPI only, uv publish": from_init("github", indexes=[PYPI], client="uv"),
    "init: one keyless index": from_init("github", indexes=[KEYLESS_PROD]),
    "init: two keyless indexes, uv publish": from_init(
        "github", indexes=[KEYLESS_TEST, KEYLESS_PROD], client="uv"
    ),
    "init: two keyless indexes, own environments and tests": from_init(
        "github",
        indexes=[KEYLESS_TEST, KEYLESS_PROD],
        environments=["staging", "production"],
        test_command="python -m pytest -k 'not slow': # a YAML-looking command",
    ),
    "preview: environment and tag ref": from_preview(
        "github", owner="octo", repository="demo", environment="pypi", ref="refs/tags/v*"
    ),
    "preview: no environment, no ref": from_preview("github", owner="octo", repository="demo"),
    "preview: branch ref, own issuer": from_preview(
        "github",
        owner="octo",
        repository="demo",
        ref="refs/heads/main",
        issuer="https://ghe.example.com/_services/token",
    ),
    "preview: half-typed entry": from_preview(
        "github", owner="a: b", repository="#x", environment="'q' \"d\"", ref="v1\nx: 1"
    ),
}

GITLAB: dict[str, Callable[[Path], str]] = {
    "init: TestPyPI then PyPI, keyless publish": from_init("gitlab"),
    "init: two keyless indexes, uv publish": from_init(
        "gitlab", indexes=[KEYLESS_TEST, KEYLESS_PROD], audiences=AUDIENCES, client="uv"
    ),
    "init: one keyless index": from_init(
        "gitlab", indexes=[KEYLESS_PROD], audiences=AUDIENCES, test_command="tox -e py: all"
    ),
    "preview: environment and tag ref": from_preview(
        "gitlab", namespace="group", project="demo", environment="pypi", ref="refs/tags/v*"
    ),
    "preview: branch ref": from_preview(
        "gitlab", namespace="group/sub", project="demo", ref="refs/heads/main"
    ),
}


def workflow_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lint" / ".github" / "workflows" / "release.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(GITHUB))
def test_github_workflow_passes_actionlint_and_zizmor(case: str, tmp_path: Path) -> None:
    path = workflow_file(tmp_path, GITHUB[case](tmp_path))
    linted = actionlint(path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert zizmor_findings(path) == []


@pytest.mark.parametrize("case", list(GITLAB))
def test_gitlab_pipeline_matches_gitlabs_schema(case: str, tmp_path: Path) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(GITLAB[case](tmp_path), encoding="utf-8")
    checked = gitlab_schema(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_checked_in_release_workflow_passes_actionlint_and_zizmor() -> None:
    linted = actionlint(CHECKED_IN)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert zizmor_findings(CHECKED_IN) == []


# ------------------------------------------------------ the checks can fail (they are live)


def test_actionlint_runs_shellcheck_on_run_scripts(tmp_path: Path) -> None:
    text = from_init("github")(tmp_path).replace(
        'SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)"\n          export SOURCE_DATE_EPOCH',
        'export SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)"',
    )
    linted = actionlint(workflow_file(tmp_path, text))
    assert linted.returncode != 0
    assert "SC2155" in linted.stdout  # found by shellcheck, inside the `run:` script


def test_zizmor_finds_actions_pinned_by_tag(tmp_path: Path) -> None:
    text = from_init("github")(tmp_path)
    checkout = ACTIONS["checkout"]
    text = text.replace(checkout.uses, f"{checkout.repository}@{checkout.version}")
    findings = zizmor_findings(workflow_file(tmp_path, text))
    assert {finding["ident"] for finding in findings} == {"unpinned-uses"}


def test_gitlab_schema_refuses_a_broken_pipeline(tmp_path: Path) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    text = from_init("gitlab")(tmp_path).replace("      aud: ", "      audience: ", 1)
    path.write_text(text, encoding="utf-8")
    assert gitlab_schema(path).returncode != 0


# --------------------------------------------------------- this repository's own workflow


def test_the_checked_in_release_workflow_is_what_init_writes(tmp_path: Path) -> None:
    """Regenerated from pyproject.toml in a scratch folder, it equals the checked-in file.

    When this fails: run RELEASE_INIT at the repository's root and commit the result.
    """
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    words = shlex.split(RELEASE_INIT)
    assert words[:2] == ["keyless", "init"]
    done = run(sys.executable, "-m", "keyless", *words[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert CHECKED_IN.read_text(encoding="utf-8") == written, f"stale: run {RELEASE_INIT}"
    # The README tells maintainers the same command.
    assert RELEASE_INIT in (REPO / "README.md").read_text(encoding="utf-8")
