"""One write path for "add these files to this release" (ARCHITECTURE.md, "Files join a release
in one place"): only `keyless.index.releases` inserts `files`, `releases` and `filename_log`
rows. Upload, promote and the benchmark's seeding call its `add_files`; a second copy of the
sequence (as upload, promote and bench/servers.py each had) would drift from it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"files", "releases", "filename_log"}
HOME = ROOT / "src" / "keyless" / "index" / "releases.py"


def inserts(path: Path) -> list[str]:
    """`<table>.insert(` of the tables above in one module, as `path:line: table`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "insert"
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr in TABLES
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.value.attr}")
    return found


def test_only_the_write_path_inserts_files_releases_and_the_filename_log() -> None:
    # bench/'s own code, not the peers' virtualenvs and scratch data it keeps beside it.
    ignored = ("/bench/.venvs/", "/bench/work/", "/bench/work-cache/")
    sources = [
        path
        for path in [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "bench").rglob("*.py"))]
        if not any(part in str(path) for part in ignored)
    ]
    elsewhere = [hit for path in sources if path != HOME for hit in inserts(path)]
    assert not elsewhere, (
        "rows of files, releases or the filename log written outside "
        f"keyless.index.releases (call releases.add_files): {elsewhere}"
    )
    assert len(inserts(HOME)) == len(TABLES)  # the test still sees the statements it guards
