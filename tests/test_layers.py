"""The layers of `src/keyless` import only what ARCHITECTURE.md allows them to.

Every module is read with `ast` (nothing is imported, so the check is fast and sees imports that
a run would not reach): each `import`/`from … import` and each `importlib.import_module("…")`
is classified as

- module level: runs when the module is imported (class bodies and `try` blocks included);
- in a function: runs when the function is called (a command's handler, a lazy loader);
- type only: under `if TYPE_CHECKING:`; costs nothing at run time, but is still a dependency
  between layers, so the layer table applies to it.

The tables below are the rules; ARCHITECTURE.md ("Allowed imports") explains them. A new
module, layer or library fails here until it is added to a table, which is the point: the
layering changes on purpose, in review, or not at all.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "keyless"

Kind = Literal["module level", "in a function", "type only"]

# ---------------------------------------------------------------------------------------------
# The rules

# Layer -> the other layers it may import (its own is always allowed, and so is the root
# package `keyless`, which holds only `__version__`). Arrows point down: nothing imports cli,
# and dists and oidc import no other layer.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "keyless": frozenset(),
    "__main__": frozenset({"cli"}),
    "dists": frozenset(),
    "oidc": frozenset(),
    # oidc: the publisher kinds and their default issuers come from the providers' registry.
    "config": frozenset({"oidc"}),
    "devcert": frozenset(),
    # config: the blob store is built from its settings (store/backends.py).
    "store": frozenset({"config", "dists"}),
    # oidc: the emulator issues the tokens oidc's providers check, and takes their facts (the
    # GitLab ID-token variable) from there rather than keeping a copy; oidc imports nothing.
    "ci": frozenset({"oidc"}),
    # oidc: the providers' facts the CI configuration spells out (GitLab's ID-token variable).
    "workflows": frozenset({"oidc"}),
    "index": frozenset({"config", "dists", "oidc", "store", "workflows"}),
    "index.routes": frozenset({"config", "index", "index.http", "oidc", "store"}),
    "index.web": frozenset(
        {"config", "dists", "index", "index.routes", "oidc", "store", "workflows"}
    ),
    "index.http": frozenset({"config", "index", "index.routes", "index.web", "oidc", "store"}),
    "publish": frozenset({"ci", "dists", "oidc", "workflows"}),
    # Not store: the admin commands call use cases that take the names a person types
    # (index/admin.py); the CLI never opens the database itself.
    "cli": frozenset(
        {"ci", "config", "devcert", "dists", "index", "index.http", "oidc", "publish"}
    ),
}

# Where a layer may use only some modules of another. The release client takes the claim
# names from ci, never the emulator (PyJWT, cryptography, a server).
ONLY_MODULES: dict[tuple[str, str], frozenset[str]] = {
    ("publish", "ci"): frozenset({"keyless.ci.claims", "keyless.ci.errors"}),
}

# The CLI defines every parser at start-up, so its modules import, at module level, only each
# other and the release client's dependency-free modules (`options`: the upload flags' defaults
# and limits); a command imports what it runs inside its handler (tests/test_cli_imports.py
# checks the modules a run really loads).
CLI_MODULE_LEVEL = frozenset(
    {"keyless.cli", "keyless.publish.errors", "keyless.publish.options", "keyless.publish.reporter"}
)


@dataclass(frozen=True)
class Libraries:
    """The third-party libraries (import names) a layer may use."""

    module_level: frozenset[str] = frozenset()
    in_functions: frozenset[str] = frozenset()  # on top of module_level


THIRD_PARTY: dict[str, Libraries] = {
    "keyless": Libraries(),
    "__main__": Libraries(),
    # Pure rules over bytes and strings; the renderer only when a description is rendered.
    "dists": Libraries(
        frozenset({"packaging", "trove_classifiers"}), frozenset({"readme_renderer"})
    ),
    # Verification and matching; the network and the database are passed in by the index.
    "oidc": Libraries(frozenset({"jwt"})),
    "config": Libraries(),
    "devcert": Libraries(frozenset({"cryptography"})),
    # boto3/botocore: the S3 backend (store/s3_blobs.py); mypy_boto3_s3 for its types only;
    # psycopg: PostgreSQL's LISTEN connection of the change feed (store/changes.py).
    "store": Libraries(
        frozenset({"alembic", "boto3", "botocore", "mypy_boto3_s3", "psycopg", "sqlalchemy"})
    ),
    "ci": Libraries(frozenset({"cryptography", "jwt"})),
    # The CI configuration keyless writes (init and the web preview): text from templates.
    "workflows": Libraries(frozenset({"packaging"})),
    # keyring is optional (looked up by name when no token was given); readme_renderer only for
    # `keyless check`, which renders descriptions as the index will.
    "publish": Libraries(
        frozenset({"httpx", "id", "packaging"}), frozenset({"keyring", "readme_renderer"})
    ),
    # The use cases: no web framework, no templates, no ASGI server.
    "index": Libraries(
        frozenset({"argon2", "httpx", "packaging", "python_multipart", "sqlalchemy"})
    ),
    "index.http": Libraries(frozenset({"starlette", "uvicorn"})),
    # No SQLAlchemy above the use cases: handlers read and write through them (`Services` holds
    # no engine), so no query is written in a handler.
    "index.routes": Libraries(frozenset({"packaging", "starlette"})),
    "index.web": Libraries(frozenset({"jinja2", "markupsafe", "packaging", "starlette"})),
    # Not httpx: a command that talks to an index calls the release client's library
    # (publish/indexclient.py), which owns the HTTP details (User-Agent, CAs, errors).
    "cli": Libraries(in_functions=frozenset({"jwt", "rich"})),
}

# What only the server needs (the `server` extra): the release client installs without them.
SERVER_ONLY = frozenset(
    {
        "alembic",
        "argon2",
        "boto3",
        "botocore",
        "docutils",
        "httptools",
        "jinja2",
        "markupsafe",
        "multipart",
        "nh3",
        "python_multipart",
        "readme_renderer",
        "sqlalchemy",
        "starlette",
        "uvicorn",
        "uvloop",
        "watchfiles",
        "websockets",
    }
)
# The client side: what `keyless publish|check|doctor|init|release|yank` runs. The CLI's own
# modules are client side too: serve, ci-emulator and the admin commands import the server
# inside their handlers. Of ci, the client uses only the stdlib-only modules.
CLIENT_SIDE_LAYERS = frozenset({"cli", "dists", "oidc", "publish", "workflows"})
CLIENT_SIDE_MODULES = ONLY_MODULES[("publish", "ci")]

# Violations that exist today and are known; each entry must still be one (see
# test_known_violations_are_still_there), so the list only shrinks.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    # `keyless check` renders descriptions as the index would; the `server` extra work decides
    # whether readme_renderer moves into a function here or stays a client dependency.
    ("keyless/publish/check.py", "readme_renderer"): "client side imports a server-only library",
}

# ---------------------------------------------------------------------------------------------
# Reading the source


@dataclass(frozen=True)
class Import:
    path: str  # relative to src/, e.g. keyless/cli/main.py
    line: int
    source: str  # the importing module, e.g. keyless.cli.main
    target: str  # the imported module, e.g. keyless.index.app or starlette.routing
    kind: Kind

    @property
    def where(self) -> str:
        return f"src/{self.path}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


# The index is three layers over its use cases: the HTTP server (assembly, uvicorn), the package
# APIs' routes and the web pages. The use cases (the rest of keyless/index) know no HTTP.
SUBLAYERS = {
    "keyless.index.app": "index.http",
    "keyless.index.server": "index.http",
    "keyless.index.supervisor": "index.http",
    "keyless.index.reason": "index.http",
    "keyless.index.routes": "index.routes",
    "keyless.index.web": "index.web",
}


def layer_of(module: str) -> str:
    for prefix, layer in SUBLAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "keyless"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_module_name(node: ast.Call) -> str | None:
    """The name in `importlib.import_module("name")`, when it is written out."""
    if not node.args:
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    first = node.args[0]
    if called == "import_module" and isinstance(first, ast.Constant):
        return str(first.value)
    return None


@dataclass
class _Scanner:
    path: str
    module: str
    is_package: bool
    found: list[Import] = field(default_factory=list)

    def scan(self, node: ast.AST, kind: Kind) -> None:
        for child in ast.iter_child_nodes(node):
            self.visit(child, kind)

    def visit(self, node: ast.AST, kind: Kind) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self._add(node, alias.name, kind)
        elif isinstance(node, ast.ImportFrom):
            base = self._absolute(node)
            for alias in node.names:
                # `from keyless.ci import claims` imports the module keyless.ci.claims.
                submodule = f"{base}.{alias.name}"
                self._add(node, submodule if submodule in MODULES else base, kind)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            self.scan(node, "type only" if kind == "type only" else "in a function")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                self.visit(statement, "type only")
            for statement in node.orelse:
                self.visit(statement, kind)
        else:
            if isinstance(node, ast.Call):
                name = _import_module_name(node)
                if name is not None:
                    self._add(node, name, kind)
            self.scan(node, kind)

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.module.split(".")
        if not self.is_package:
            package.pop()
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])

    def _add(self, node: ast.stmt | ast.expr, target: str, kind: Kind) -> None:
        self.found.append(Import(self.path, node.lineno, self.module, target, kind))


def imports_of(path: Path) -> list[Import]:
    scanner = _Scanner(
        str(path.relative_to(SRC)), module_name(path), is_package=path.name == "__init__.py"
    )
    scanner.scan(ast.parse(path.read_text(encoding="utf-8"), str(path)), "module level")
    return scanner.found


def all_imports() -> Iterator[Import]:
    for path in MODULES.values():
        yield from imports_of(path)


# ---------------------------------------------------------------------------------------------
# The checks


@dataclass(frozen=True)
class Violation:
    imp: Import
    rule: str
    library: str = ""

    def __str__(self) -> str:
        return f"{self.imp.where}: imports {self.imp.target} ({self.imp.kind}): {self.rule}"


def _within(module: str, allowed: frozenset[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def _known(violation: Violation) -> bool:
    return (violation.imp.path, violation.library) in KNOWN_VIOLATIONS


def check(imp: Import) -> Iterator[Violation]:
    source_layer = layer_of(imp.source)
    top = imp.target.split(".")[0]
    if source_layer not in MAY_IMPORT:
        yield Violation(
            imp,
            f"{imp.source} is in no known layer: add {source_layer!r} to MAY_IMPORT, "
            "THIRD_PARTY and ARCHITECTURE.md",
        )
        return
    if top == "keyless":
        target_layer = layer_of(imp.target)
        if (
            target_layer not in (source_layer, "keyless")
            and target_layer not in MAY_IMPORT[source_layer]
        ):
            layers = ", ".join(sorted(MAY_IMPORT[source_layer])) or "no other layer"
            yield Violation(
                imp, f"{source_layer} may not import {target_layer} (it may import: {layers})"
            )
        only = ONLY_MODULES.get((source_layer, target_layer))
        if only is not None and not _within(imp.target, only):
            yield Violation(
                imp, f"of {target_layer}, {source_layer} may import only {', '.join(sorted(only))}"
            )
        if (
            source_layer == "cli"
            and imp.kind == "module level"
            and imp.target != "keyless"
            and not _within(imp.target, CLI_MODULE_LEVEL)
        ):
            yield Violation(
                imp,
                "a CLI module imports, at module level, only keyless.cli and "
                "keyless.publish.errors/.options/.reporter: import what a command runs inside its "
                "handler, so that defining the parsers stays cheap",
            )
        return
    if top in sys.stdlib_module_names or top == "__future__" or imp.kind == "type only":
        return
    libraries = THIRD_PARTY[source_layer]
    allowed = libraries.module_level | (
        libraries.in_functions if imp.kind == "in a function" else frozenset()
    )
    if top not in allowed:
        if top in libraries.in_functions:
            rule = f"{source_layer} may import {top} only inside a function"
        else:
            names = ", ".join(sorted(libraries.module_level)) or "none"
            lazy = ", ".join(sorted(libraries.in_functions)) or "none"
            rule = (
                f"{source_layer} may not import {top} (its libraries: {names}; inside functions "
                f"also: {lazy})"
            )
        yield Violation(imp, rule, top)
    client_side = source_layer in CLIENT_SIDE_LAYERS or _within(imp.source, CLIENT_SIDE_MODULES)
    if client_side and top in SERVER_ONLY and imp.kind == "module level":
        yield Violation(
            imp,
            f"{top} is a server-only library: the client side (publish, dists, oidc, cli, "
            "workflows, ci.claims) imports it inside the function that needs it, if at all",
            top,
        )


def violations() -> list[Violation]:
    return [v for imp in all_imports() for v in check(imp)]


def test_every_import_follows_the_layer_rules() -> None:
    found = [v for v in violations() if not _known(v)]
    assert not found, (
        "imports that break the layer rules (ARCHITECTURE.md, 'Allowed imports'):\n"
        + "\n".join(str(v) for v in found)
    )


def test_known_violations_are_still_there() -> None:
    present = {(v.imp.path, v.library) for v in violations() if _known(v)}
    gone = sorted(set(KNOWN_VIOLATIONS) - present)
    assert not gone, f"fixed, so remove from KNOWN_VIOLATIONS in tests/test_layers.py: {gone}"


def test_the_tables_keep_server_libraries_off_the_client() -> None:
    assert THIRD_PARTY.keys() == MAY_IMPORT.keys()
    for layer in CLIENT_SIDE_LAYERS:
        assert not THIRD_PARTY[layer].module_level & SERVER_ONLY, layer


def client_side_modules() -> list[str]:
    """Every module of the client side, except those with a known violation."""
    known = {module_name(SRC / path) for path, _ in KNOWN_VIOLATIONS}
    return [
        name
        for name in MODULES
        if (layer_of(name) in CLIENT_SIDE_LAYERS or _within(name, CLIENT_SIDE_MODULES))
        and name not in known
    ]


def test_the_client_side_loads_no_server_library() -> None:
    # What really gets loaded, dependencies' own imports included, in a fresh interpreter.
    script = (
        "import importlib, json, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    modules = client_side_modules()
    assert "keyless.publish.upload" in modules
    assert "keyless.ci.claims" in modules
    assert "keyless.ci.emulator" not in modules
    done = subprocess.run(
        [sys.executable, "-c", script, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & SERVER_ONLY, f"server-only libraries loaded: {sorted(loaded & SERVER_ONLY)}"


# The scanner itself: each kind of import in the real source is seen and classified, so the
# rules above are not checked against an empty list.
@pytest.mark.parametrize(
    ("path", "target", "kind"),
    [
        ("keyless/cli/main.py", "keyless.cli.argv", "module level"),
        ("keyless/cli/serve.py", "keyless.index.app", "in a function"),
        ("keyless/cli/check.py", "keyless.publish.check", "type only"),
        # from pkg import mod
        ("keyless/dists/filenames.py", "keyless.dists._texts", "module level"),
        ("keyless/index/rendering.py", "keyless.index.errors", "module level"),  # relative
        ("keyless/dists/readme.py", "readme_renderer.markdown", "in a function"),
        ("keyless/publish/credentials.py", "keyring", "in a function"),  # import_module("…")
        ("keyless/index/app.py", "starlette.applications", "module level"),
    ],
)
def test_the_scanner_sees_each_kind_of_import(path: str, target: str, kind: Kind) -> None:
    found = {(i.target, i.kind) for i in imports_of(SRC / path)}
    assert (target, kind) in found, sorted(found)


def test_a_violation_names_the_file_the_line_and_the_rule() -> None:
    imp = Import(
        "keyless/dists/names.py", 3, "keyless.dists.names", "starlette.requests", "module level"
    )
    messages = [str(v) for v in check(imp)]
    assert messages == [
        "src/keyless/dists/names.py:3: imports starlette.requests (module level): dists may not "
        "import starlette (its libraries: packaging, trove_classifiers; inside functions also: "
        "readme_renderer)",
        "src/keyless/dists/names.py:3: imports starlette.requests (module level): starlette is a "
        "server-only library: the client side (publish, dists, oidc, cli, workflows, ci.claims) "
        "imports it inside the function that needs it, if at all",
    ]


# ---------------------------------------------------------------------------------------------
# Where blobs are kept is the blob store's business (ARCHITECTURE.md, "A storage backend"): above
# `store/` the code uses the `BlobStore` interface only, so another backend is one new class.
# The local backend's class and folder are named only where the store is built from settings.

LOCAL_BLOB_NAMES = frozenset({"path_for", "place_file", "commit", "root", "tmp"})
BUILDER_NAMES = frozenset({"LocalBlobStore", "blob_dir"})
BUILDS_THE_BLOB_STORE = frozenset({"keyless/index/app.py", "keyless/index/admin.py"})


def blob_location_uses(path: str, source: str) -> list[str]:
    """Where a module outside `store/` reaches past the interface to the local folder.

    `LOCAL_BLOB_NAMES` are attributes of the local backend only, looked for on anything whose
    name mentions blobs (`svc.blobs.path_for`, `self.blobs.root`); `BUILDER_NAMES` anywhere
    but in `BUILDS_THE_BLOB_STORE`.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Attribute):
            names = [node.attr]
            if node.attr in LOCAL_BLOB_NAMES and "blob" not in ast.unparse(node.value).lower():
                names = []
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
        if not names:
            continue
        assert isinstance(node, ast.expr | ast.stmt)  # the three kinds above carry a line
        for name in names:
            local = name in LOCAL_BLOB_NAMES and isinstance(node, ast.Attribute)
            builder = name in BUILDER_NAMES and path not in BUILDS_THE_BLOB_STORE
            if local or builder:
                found.append((node.lineno, f"src/{path}:{node.lineno}: uses {name}"))
    return [use for _, use in sorted(found)]


def test_nothing_above_store_touches_where_a_blob_is_kept() -> None:
    found = [
        use
        for module, file in MODULES.items()
        if layer_of(module) != "store"
        for use in blob_location_uses(str(file.relative_to(SRC)), file.read_text("utf-8"))
    ]
    assert not found, (
        "code above store/ reaches into the local blob folder; use the BlobStore interface "
        "(store/blobs.py) instead:\n" + "\n".join(found)
    )


def test_the_blob_rule_sees_a_path_and_the_local_class() -> None:
    source = (
        "from keyless.store.blobs import LocalBlobStore\n"
        "path = svc.blobs.path_for(sha256)\n"
        "tmp = self.blobs.tmp\n"
        "root = settings.root\n"  # not a blob store: other things have roots
    )
    assert blob_location_uses("keyless/index/routes/files.py", source) == [
        "src/keyless/index/routes/files.py:1: uses LocalBlobStore",
        "src/keyless/index/routes/files.py:2: uses path_for",
        "src/keyless/index/routes/files.py:3: uses tmp",
    ]
    assert blob_location_uses("keyless/index/app.py", source[:47]) == []
