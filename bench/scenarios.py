"""The scenarios of issue 6, each returning plain records for the report."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import datasets, procs
from .dists import build_wheel, digests_of_file, write_big_wheel
from .env import BENCH, KEYLESS_PYTHON, log
from .load import check, median, wrk
from .servers import (
    HTML_TYPE,
    INDEX,
    JSON_TYPE,
    Devpi,
    Keyless,
    Nginx,
    PypiServer,
    Server,
    StaticNginx,
)

WORK = BENCH / "work"
MIB = 1024 * 1024


# The `keyless publish` rows of scenario 7: (row name, extra arguments). A variant of the
# client (e.g. the legacy path next to upload sessions, `--no-session`) is one more row here;
# the report compares each row with uv publish and twine upload.
# keyless' index offers PEP 694 upload sessions, so plain `keyless publish` uses one (the whole
# release staged, then published at once); `--no-session` is the legacy API, file by file.
KEYLESS_PUBLISH_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("keyless publish", ()),
    ("keyless publish --no-session", ("--no-session",)),
)


@dataclass
class Options:
    runs: int = 3
    duration: float = 5.0
    upload_size: int = 200 * MIB
    publish_wheels: int = 50
    publish_variants: tuple[tuple[str, tuple[str, ...]], ...] = KEYLESS_PUBLISH_VARIANTS
    # Scenario 7's server: `keyless serve --workers N`. A parallel client's requests spread
    # over the processes, a sequential one's (twine, uv) do not: its own rows, never mixed.
    publish_server_workers: int = 1
    durable_uploads: int = 200  # per run and server, scenario 8
    peers: tuple[str, ...] = ("pypiserver", "devpi")


@dataclass
class Record:
    """One measured figure: all runs, and their median."""

    scenario: str
    case: str
    server: str
    unit: str
    values: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return median(self.values)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "case": self.case,
            "server": self.server,
            "unit": self.unit,
            "values": self.values,
            "median": self.median,
            **self.extra,
        }


class Results:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str, str, str], Record] = {}
        self.notes: list[str] = []

    def add(
        self, scenario: str, case: str, server: str, unit: str, value: float, **extra: Any
    ) -> None:
        key = (scenario, case, server, unit)
        record = self.records.setdefault(key, Record(scenario, case, server, unit))
        record.values.append(value)
        for name, item in extra.items():
            record.extra.setdefault(name, [])
            record.extra[name].append(item)

    def get(self, scenario: str, case: str, server: str, unit: str) -> Record | None:
        return self.records.get((scenario, case, server, unit))


def _servers(folder: Path, peers: tuple[str, ...], files: int) -> list[Server]:
    """keyless and the peers, seeded with the core set plus `files` filler files, running."""
    started: list[Server] = []
    makers: list[tuple[str, Callable[[], Server]]] = [
        ("keyless", lambda: Keyless(folder / "keyless")),
        ("pypiserver", lambda: PypiServer(folder / "pypiserver")),
        ("devpi", lambda: Devpi(folder / "devpi")),
    ]
    seeders = {
        "keyless": datasets.seed_keyless,
        "pypiserver": datasets.seed_pypiserver,
        "devpi": datasets.seed_devpi,
    }
    try:
        for name, make in makers:
            if name != "keyless" and name not in peers:
                continue
            server = make()
            started.append(server)
            began = time.perf_counter()
            seeders[name](server, files)  # type: ignore[operator]
            log(
                f"{name}: seeded {files} filler files + {len(datasets.core())} in "
                f"{time.perf_counter() - began:.1f} s"
            )
    except BaseException:
        for server in started:
            server.stop()
        raise
    return started


def _nginx_for(
    folder: Path, keyless: Keyless, project: str | None, workers: int = 1, cpus: str | None = None
) -> tuple[Nginx, dict[str, str]]:
    """nginx with keyless' own bytes of a page as static files; URLs per representation."""
    nginx = Nginx(folder / "nginx")
    nginx.workers, nginx.cpus = workers, cpus
    pages, urls = {}, {}
    for label, accept, prefix, filename in (
        ("html", HTML_TYPE, "html", "index.html"),
        ("json", JSON_TYPE, "json", "index.json"),
    ):
        body = httpx.get(
            keyless.simple_url(project), headers={"Accept": accept}, timeout=60
        ).content
        path = f"{prefix}/simple/{project or '_root'}/{filename}"
        pages[path] = body
        urls[label] = path
    nginx.prepare(pages)
    nginx.start()
    return nginx, {label: nginx.url(path) for label, path in urls.items()}


def _load_pages(
    results: Results,
    scenario: str,
    case: str,
    servers: list[Server],
    nginx: Nginx,
    nginx_urls: dict[str, str],
    project: str | None,
    opts: Options,
) -> None:
    targets: list[tuple[str, str, str | None, str]] = []  # (server, label, accept, url)
    for server in servers:
        for label, accept in (("html", HTML_TYPE), ("json", JSON_TYPE)):
            url = server.simple_url(project)
            status, ctype, size = check(url, accept)
            if status != 200:
                raise RuntimeError(f"{server.name}: {url} answered {status}")
            if label == "json" and "json" not in ctype:
                results.notes.append(
                    f"{server.name} answers {ctype.split(';')[0]} to a PEP 691 "
                    f"JSON request ({scenario}): no JSON figure"
                )
                continue
            targets.append((server.name, label, accept, url))
            results.add(scenario, f"{case} {label}", server.name, "bytes", size)
    for label, url in nginx_urls.items():
        targets.append(("nginx", label, None, url))
    # Interleaved: run r of every target before run r+1 of any, so drifting load on the shared
    # machine spreads over all servers instead of hitting one.
    for run in range(opts.runs):
        for name, label, wanted, url in targets:
            outcome = wrk(url, duration=opts.duration, accept=wanted)
            if outcome.errors:
                results.notes.append(
                    f"{name} {case} {label} run {run + 1}: {outcome.errors} errors"
                )
            results.add(
                scenario,
                f"{case} {label}",
                name,
                "req/s",
                outcome.rps,
                p50_ms=outcome.p50_ms,
                p99_ms=outcome.p99_ms,
            )
            log(f"{scenario} {case} {label} {name}: {outcome.rps:,.0f} req/s")


def simple_pages(
    results: Results, opts: Options, sizes: tuple[int, ...] = (0, 2000, 20000)
) -> None:
    """(1) small project page; (2) the same with 2,000 / 20,000 files; (3) root at 10,000
    projects (the 20,000-file data set); (5) pip/uv installs on the small data set."""
    for files in sizes:
        folder = WORK / f"pages-{files}"
        datasets_clean(folder)
        servers = _servers(folder, opts.peers, files)
        nginx: Nginx | None = None
        try:
            total = files + len(datasets.core())
            scenario = "1 simple page" if files == 0 else "2 simple page, many files"
            nginx, urls = _nginx_for(folder, servers[0], datasets.SMALL)  # type: ignore[arg-type]
            _load_pages(
                results, scenario, f"{total:,} files", servers, nginx, urls, datasets.SMALL, opts
            )
            nginx.stop()
            if files >= 20000:
                nginx, urls = _nginx_for(folder / "root", servers[0], None)  # type: ignore[arg-type]
                _load_pages(
                    results,
                    "3 root /simple/",
                    f"{files // 2 + 22:,} projects",
                    servers,
                    nginx,
                    urls,
                    None,
                    opts,
                )
                nginx.stop()
            if files == 0:
                installs(results, servers, opts, folder)
        finally:
            if nginx is not None:
                nginx.stop()
            for server in servers:
                server.stop()


def datasets_clean(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def client_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "TWINE_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        UV_CACHE_DIR=str(folder / "uv-cache"),
        KEYRING_PROVIDER="disabled",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    return env


def installs(results: Results, servers: list[Server], opts: Options, folder: Path) -> None:
    """(5) `pip install` / `uv pip install` of bench-app (20 dependencies), no cache."""
    env = client_env(folder)
    bin_dir = KEYLESS_PYTHON.parent
    for _run in range(opts.runs):
        for server in servers:
            for tool in ("pip", "uv"):
                target = folder / "install-target"
                shutil.rmtree(target, ignore_errors=True)
                if tool == "pip":
                    command = [
                        str(KEYLESS_PYTHON),
                        "-m",
                        "pip",
                        "install",
                        "--no-cache-dir",
                        "--index-url",
                        server.simple_url(),
                        "--target",
                        str(target),
                        datasets.APP,
                    ]
                else:
                    command = [
                        str(bin_dir / "uv"),
                        "pip",
                        "install",
                        "--no-cache",
                        "--python",
                        str(KEYLESS_PYTHON),
                        "--index-url",
                        server.simple_url(),
                        "--target",
                        str(target),
                        datasets.APP,
                    ]
                began = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
                elapsed = time.perf_counter() - began
                if done.returncode != 0:
                    raise RuntimeError(
                        f"{tool} install from {server.name} failed:\n{done.stderr[-2000:]}"
                    )
                installed = len(list(target.glob("bench_dep_*.dist-info")))
                if installed != 20:
                    raise RuntimeError(
                        f"{tool} from {server.name}: {installed} dependencies installed"
                    )
                results.add("5 install 21 packages", tool, server.name, "s", elapsed)
                log(f"5 install {tool} {server.name}: {elapsed:.2f} s")


# ------------------------------------------------------------------------------------ upload


def _disk_copy(source: Path, target: Path) -> float:
    began = time.perf_counter()
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())
    elapsed = time.perf_counter() - began
    target.unlink()
    return elapsed


def _curl_upload(
    url: str, path: Path, auth: str, fields: list[tuple[str, str]]
) -> tuple[int, float]:
    command = [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_total}",
        "-u",
        auth,
        "-H",
        "Expect:",
    ]
    for key, value in fields:
        command += ["--form-string", f"{key}={value}"]
    command += ["-F", f"content=@{path};type=application/octet-stream", url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout
    status, seconds = out.split()
    return int(status), float(seconds)


def upload(results: Results, opts: Options) -> None:
    """(4) one big wheel: throughput and the server's peak memory growth vs a disk copy."""
    from .dists import upload_fields

    folder = WORK / "upload"
    datasets_clean(folder)
    wheels_dir = BENCH / "work-cache" / "big"
    wheels = []
    for run in range(opts.runs):
        path = write_big_wheel(wheels_dir, "bench-big", f"1.0.{run}", opts.upload_size)
        wheels.append((path, digests_of_file(path)))
    size_mb = opts.upload_size / MIB
    case = f"{size_mb:.0f} MB wheel"
    for path, _ in wheels:
        seconds = _disk_copy(path, folder / "copy.whl")
        results.add("4 upload", case, "disk copy", "MB/s", size_mb / seconds)
    servers: list[Server] = []
    try:
        keyless = Keyless(folder / "keyless")
        keyless.prepare()
        keyless.start()
        servers.append(keyless)
        auths = {"keyless": f"__token__:{keyless.token}"}
        if "pypiserver" in opts.peers:
            pypi = PypiServer(folder / "pypiserver")
            pypi.prepare()
            pypi.start()
            servers.append(pypi)
            auths["pypiserver"] = "bench:x"
        if "devpi" in opts.peers:
            devpi = Devpi(folder / "devpi")
            devpi.prepare()
            devpi.start()
            servers.append(devpi)
            from .servers import PASSWORD, USER

            auths["devpi"] = f"{USER}:{PASSWORD}"
        for run, (path, digests) in enumerate(wheels):
            for server in servers:
                fields = upload_fields("bench-big", f"1.0.{run}", (), digests)
                with procs.MemorySampler(server.pid) as memory:
                    status, seconds = _curl_upload(
                        server.upload_url, path, auths[server.name], fields
                    )
                if status not in (200, 201):
                    raise RuntimeError(f"{server.name}: big upload answered {status}")
                growth = (memory.peak - memory.start) / 1024
                results.add(
                    "4 upload", case, server.name, "MB/s", size_mb / seconds, growth_mb=growth
                )
                log(f"4 upload {server.name}: {size_mb / seconds:.0f} MB/s, +{growth:.1f} MB")
    finally:
        for server in servers:
            server.stop()


# -------------------------------------------------------------------------------- mint-token

MINT_LUA = """
local tokens = {}
local counter = 0
init = function(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
end
request = function()
  counter = counter + 1
  if counter > #tokens then counter = 1 end
  return wrk.format("POST", "/_/oidc/mint-token", {["Content-Type"] = "application/json"},
                    '{"token":"' .. tokens[counter] .. '"}')
end
"""


def mint_tokens(results: Results, opts: Options) -> None:
    """(6) mint-token requests/s, keyless only, key cache warm (a fresh OIDC token each)."""
    from dataclasses import replace as _replace

    from keyless.ci.emulator import Emulator, JobClaims

    folder = WORK / "mint"
    datasets_clean(folder)
    port = procs.free_port()
    issuer = f"http://127.0.0.1:{port}"
    keyless = Keyless(
        folder / "keyless",
        f'\n[trusted-publishing]\naudience = "keyless"\n'
        f'\n[trusted-publishing.issuers]\n"{issuer}" = "github"\n',
    )
    with Emulator(folder / "keys", port=port) as emulator:
        keyless.prepare()
        try:
            keyless.start()
            keyless.upload([build_wheel("bench-mint", "0.1")])
            add = subprocess.run(
                [
                    str(KEYLESS_PYTHON),
                    "-m",
                    "keyless",
                    "publisher",
                    "add",
                    "--index",
                    INDEX,
                    "--project",
                    "bench-mint",
                    "--json",
                    "github",
                    "--issuer",
                    issuer,
                    "--owner",
                    "octo-org",
                    "--repository",
                    "demo",
                    "--workflow",
                    "release.yml",
                    "--data",
                    str(keyless.data),
                    "--config",
                    str(keyless.config),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if add.returncode != 0:
                raise RuntimeError(f"publisher add failed: {add.stderr}")
            job = JobClaims(
                repo="octo-org/demo",
                workflow="release.yml",
                ref="refs/tags/v1.0.0",
                event="release",
                owner_id=4242,
                lifetime=3600,
            )
            url = f"{keyless.base}/_/oidc/mint-token"
            warm = httpx.post(url, content=json.dumps({"token": emulator.token("keyless", job)}))
            if warm.status_code != 200:
                raise RuntimeError(f"mint-token answered {warm.status_code}: {warm.text}")
            script = folder / "mint.lua"
            script.write_text(MINT_LUA)
            per_run = int(max(2000, 700 * opts.duration))
            for run in range(opts.runs):
                tokens = folder / f"tokens-{run}.txt"
                tokens.write_text(
                    "\n".join(emulator.token("keyless", _replace(job)) for _ in range(per_run))
                    + "\n"
                )
                outcome = wrk(url, duration=opts.duration, script=script, lua_args=[str(tokens)])
                if outcome.requests > per_run:
                    results.notes.append(
                        f"mint run {run + 1}: {outcome.requests} requests for "
                        f"{per_run} tokens (replays answered 422)"
                    )
                if outcome.errors:
                    results.notes.append(f"mint run {run + 1}: {outcome.errors} non-2xx answers")
                results.add(
                    "6 mint-token",
                    "fresh OIDC token each",
                    "keyless",
                    "req/s",
                    outcome.rps,
                    p50_ms=outcome.p50_ms,
                    p99_ms=outcome.p99_ms,
                )
                log(f"6 mint-token: {outcome.rps:,.0f} req/s ({outcome.errors} errors)")
        finally:
            keyless.stop()


# -------------------------------------------------------------------------------- publishing


def publish(results: Results, opts: Options) -> None:
    """(7) `keyless publish` of one release of 50 wheels (through an upload session, and with
    `--no-session`) vs `twine upload` and `uv publish`: wall time, and the CPU time of the
    client and of the server."""
    folder = WORK / "publish"
    datasets_clean(folder)
    keyless = Keyless(folder / "keyless")
    keyless.prepare()
    keyless.workers = opts.publish_server_workers
    scenario = f"7 publish {opts.publish_wheels} wheels"
    if keyless.workers > 1:
        scenario += f", serve --workers {keyless.workers}"
    env = client_env(folder)
    keyless_env = {**env, "KEYLESS_TOKEN": keyless.token}
    if os.environ.get("BENCH_KEYLESS_SRC"):
        # The client of that source tree too, for before/after figures.
        keyless_env["PYTHONPATH"] = os.environ["BENCH_KEYLESS_SRC"]
    compile_client(keyless_env)
    bin_dir = KEYLESS_PYTHON.parent
    tools: list[tuple[str, list[str], dict[str, str]]] = [
        (
            name,
            [
                *(str(KEYLESS_PYTHON), "-m", "keyless", "publish"),
                *("--repository-url", keyless.upload_url, "--trusted-publishing", "never"),
                *extra,
            ],
            keyless_env,
        )
        for name, extra in opts.publish_variants
    ]
    tools.append(
        (
            "twine upload",
            [
                *(str(bin_dir / "twine"), "upload", "--repository-url", keyless.upload_url),
                *("-u", "__token__", "-p", keyless.token),
                *("--non-interactive", "--disable-progress-bar"),
            ],
            env,
        )
    )
    tools.append(
        (
            "uv publish",
            [
                *(str(bin_dir / "uv"), "publish", "--publish-url", keyless.upload_url),
                *("--token", keyless.token),
            ],
            env,
        )
    )
    try:
        keyless.start()
        for run in range(opts.runs):
            # Each run starts with another client, so that none always meets a server that
            # has just been busy (or idle).
            shift = run % len(tools)
            for number, (tool, command, run_env) in enumerate(tools[shift:] + tools[:shift]):
                project = f"pub-{run}-{(number + shift) % len(tools)}"
                dist = folder / "dists" / project
                dist.mkdir(parents=True)
                files = []
                for i in range(opts.publish_wheels):
                    # One release of 50 wheels (build tags 1..50), as a release with many
                    # platform wheels: what a session publishes at once.
                    wheel = build_wheel(
                        project, "1.0", payload=os.urandom(100 * 1024), build=str(i + 1)
                    )
                    (dist / wheel.filename).write_bytes(wheel.data)
                    files.append(str(dist / wheel.filename))
                cpu_before = _children_cpu()
                server_before = procs.cpu_seconds(keyless.pid)
                began = time.perf_counter()
                done = subprocess.run(
                    [*command, *files], env=run_env, capture_output=True, text=True, timeout=600
                )
                elapsed = time.perf_counter() - began
                # The client's own CPU time (user + system): on a shared machine it moves much
                # less than the wall time, and it is what the client takes from the server's
                # cores.
                cpu = _children_cpu() - cpu_before
                # And the server's: what the publish cost the index, also steadier than time.
                server_cpu = procs.cpu_seconds(keyless.pid) - server_before
                if done.returncode != 0:
                    raise RuntimeError(
                        f"{tool} failed:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
                    )
                page = httpx.get(keyless.simple_url(project), headers={"Accept": JSON_TYPE}).json()
                if len(page["files"]) != opts.publish_wheels:
                    raise RuntimeError(f"{tool}: {len(page['files'])} files on the index")
                results.add(
                    scenario,
                    f"{opts.publish_wheels} wheels",
                    tool,
                    "s",
                    elapsed,
                    client_cpu_s=cpu,
                    server_cpu_s=server_cpu,
                )
                log(
                    f"{scenario} {tool}: {elapsed:.2f} s ({cpu:.2f} CPU-s, server "
                    f"{server_cpu:.2f} CPU-s)"
                )
    finally:
        keyless.stop()


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process' children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compile_client(env: dict[str, str]) -> None:
    """Byte-compile the keyless package the client runs (this checkout's or
    BENCH_KEYLESS_SRC's), as installing it does, and as twine and uv in the same environment
    are.

    A checkout on PYTHONPATH under PYTHONDONTWRITEBYTECODE=1 (set in some shells and CI
    images) would otherwise compile every module it imports on every run: ~0.15 s of each
    `keyless publish` that no installed copy pays. Writes only `__pycache__/` folders
    (ignored by git).
    """
    where = subprocess.run(
        [str(KEYLESS_PYTHON), "-c", "import keyless, os; print(os.path.dirname(keyless.__file__))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [str(KEYLESS_PYTHON), "-m", "compileall", "-q", "-j", "0", where],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=300,
    )


# ------------------------------------------------------------------------- static read path

STATIC = "9 static tree via nginx"


def static_tree(results: Results, opts: Options) -> None:
    """(9) The small project's page from keyless' static tree through nginx and
    deploy/nginx/static.conf (Accept picks the file), against nginx serving the same bytes as
    plain files at fixed paths (scenario 1's ceiling), and keyless itself for reference."""
    folder = WORK / "static"
    datasets_clean(folder)
    tree = folder / "tree"
    keyless = Keyless(folder / "keyless", extra_config=f'\n[static]\nfolder = "{tree}"\n')
    started: list[Server] = [keyless]
    try:
        datasets.seed_keyless(keyless, 0)
        site = StaticNginx(folder / "site", tree)
        started.append(site)
        site.start()
        _wait_for_static_pages(keyless, site)
        ceiling, ceiling_urls = _nginx_for(folder, keyless, datasets.SMALL)
        started.append(ceiling)
        targets: list[tuple[str, str, str | None, str]] = []
        for label, accept in (("html", HTML_TYPE), ("json", JSON_TYPE)):
            targets.append(("keyless", label, accept, keyless.simple_url(datasets.SMALL)))
            targets.append((site.name, label, accept, site.simple_url(datasets.SMALL)))
            targets.append(("nginx", label, None, ceiling_urls[label]))
        for run in range(opts.runs):
            for name, label, wanted, url in targets:
                outcome = wrk(url, duration=opts.duration, accept=wanted)
                if outcome.errors:
                    results.notes.append(f"{name} {STATIC} {label} run {run + 1}: errors")
                results.add(
                    STATIC,
                    f"small project {label}",
                    name,
                    "req/s",
                    outcome.rps,
                    p50_ms=outcome.p50_ms,
                    p99_ms=outcome.p99_ms,
                )
                log(f"{STATIC} {label} {name}: {outcome.rps:,.0f} req/s")
    finally:
        for server in reversed(started):
            server.stop()


def _wait_for_static_pages(keyless: Keyless, site: StaticNginx, timeout: float = 30) -> None:
    """Until nginx serves keyless' very bytes of the small project's page in both
    representations (the server writes its tree once started and on every upload)."""
    deadline = time.monotonic() + timeout
    while True:
        same = all(
            httpx.get(keyless.simple_url(datasets.SMALL), headers={"Accept": accept}).content
            == httpx.get(site.simple_url(datasets.SMALL), headers={"Accept": accept}).content
            for accept in (HTML_TYPE, JSON_TYPE)
        )
        if same:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the static tree did not match keyless' pages in {timeout} s")
        time.sleep(0.1)


# ---------------------------------------------------------------------------- durable commit


def durable_commit(results: Results, opts: Options) -> None:
    """(8) what acknowledging only durable uploads costs: 100 KB uploads to this checkout's
    server and, in turn, to one running the last tree before durability (commit 12a72ce,
    extracted from git). Skipped, with the reason in the notes, where there is no history."""
    from . import commit_cost

    scenario, case = "8 durable commit", "100 KB upload"
    folder = WORK / "durable"
    datasets_clean(folder)
    try:
        before = commit_cost.extract_tree(commit_cost.NOT_DURABLE, folder / "tree")
    except commit_cost.Unavailable as exc:
        results.notes.append(f"{scenario} skipped: {exc}")
        log(f"{scenario} skipped: {exc}")
        return
    trees = {"keyless": None, commit_cost.NOT_DURABLE_LABEL: before}
    with commit_cost.running(folder, trees) as servers:
        for run in range(opts.runs):
            first = run * opts.durable_uploads
            latencies = commit_cost.alternate(servers, opts.durable_uploads, first)
            for name, seconds in latencies.items():
                stats = commit_cost.Latency.of(seconds)
                results.add(
                    scenario,
                    case,
                    name,
                    "ms",
                    stats.median_ms,
                    p90_ms=stats.p90_ms,
                    uploads=len(seconds),
                )
                log(f"{scenario} {name}: {stats.median_ms:.2f} ms median per upload")


def split_cores(cores: int) -> tuple[list[int], list[int]]:
    """(wrk's cores, the servers' cores) out of the first `cores` this process may run on.

    The load generator gets a core of its own: on two cores, wrk and the servers sharing both
    measured two keyless processes answering no more than one.
    """
    usable = sorted(os.sched_getaffinity(0))
    if cores < 2 or cores > len(usable):
        raise SystemExit(f"--cores must be from 2 to {len(usable)} (the cores this run may use)")
    chosen = usable[:cores]
    load = max(1, cores // 4) if cores >= 8 else 1
    return chosen[:load], chosen[load:]


def workers_scaling(results: Results, opts: Options, cores: int) -> None:
    """(9) the small project's JSON page from keyless with `--workers 1` and `--workers N`
    (N = the servers' cores, at least 2) and from nginx (as many worker processes) on the same
    bytes; wrk and the servers pinned to separate cores (`taskset -c`)."""
    load_cores, server_cores = split_cores(cores)
    load_cpus = ",".join(map(str, load_cores))
    server_cpus = ",".join(map(str, server_cores))
    many = max(2, len(server_cores))
    folder = WORK / "workers"
    datasets_clean(folder)
    (keyless,) = _servers(folder, (), 0)
    assert isinstance(keyless, Keyless)
    nginx: Nginx | None = None
    case = f"small project json, wrk on cpu {load_cpus}, servers on cpu {server_cpus}"
    scenario = "11 workers"
    try:
        nginx, urls = _nginx_for(folder, keyless, datasets.SMALL, many, server_cpus)
        keyless.stop()
        targets: list[tuple[str, int]] = [
            ("keyless --workers 1", 1),
            (f"keyless --workers {many}", many),
        ]
        runs: list[tuple[str, str, str | None]] = [("nginx", urls["json"], None)]
        for run in range(opts.runs):
            for name, count in targets:
                keyless.workers, keyless.cpus = count, server_cpus
                keyless.start()
                try:
                    url = keyless.simple_url(datasets.SMALL)
                    status, _, size = check(url, JSON_TYPE)  # also puts it in one's memory
                    if status != 200:
                        raise RuntimeError(f"{name}: {url} answered {status}")
                    if run == 0:
                        results.add(scenario, case, name, "bytes", size)
                    # wrk's first connections reach every worker, each rendering once: a
                    # short warm-up run first, not measured.
                    wrk(url, duration=1, accept=JSON_TYPE, cpus=load_cpus, threads=len(load_cores))
                    _measure(results, scenario, case, name, url, JSON_TYPE, opts, load_cores)
                finally:
                    keyless.stop()
            for name, url, accept in runs:
                _measure(results, scenario, case, name, url, accept, opts, load_cores)
    finally:
        if nginx is not None:
            nginx.stop()
        keyless.stop()


def _measure(
    results: Results,
    scenario: str,
    case: str,
    name: str,
    url: str,
    accept: str | None,
    opts: Options,
    load_cores: list[int],
) -> None:
    cpus = ",".join(map(str, load_cores))
    # Enough connections to keep every server core busy, whatever their number.
    connections = max(8, 8 * len(load_cores))
    outcome = wrk(
        url,
        duration=opts.duration,
        accept=accept,
        cpus=cpus,
        threads=len(load_cores),
        connections=connections,
    )
    if outcome.errors:
        results.notes.append(f"{name} {case}: {outcome.errors} errors")
    results.add(
        scenario, case, name, "req/s", outcome.rps, p50_ms=outcome.p50_ms, p99_ms=outcome.p99_ms
    )
    log(f"{scenario} {name}: {outcome.rps:,.0f} req/s")


# ------------------------------------------------------------------------------ upload to S3

S3_UPLOAD = "10 upload to S3"
S3_BUCKET = "bench"


def _moto_credentials() -> None:
    """Credentials for moto, which accepts any: boto3 and keyless find them in the environment
    (unless the caller's own are there)."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)


def _start_moto(folder: Path, cpus: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = procs.free_port()
    process = procs.start(
        [
            *(["taskset", "-c", cpus] if cpus else []),
            *(str(KEYLESS_PYTHON), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)),
        ],
        folder / "moto.log",
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            return process, endpoint
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError("moto's S3 server did not start in 30 s") from None
            time.sleep(0.1)


def s3_upload(results: Results, opts: Options) -> None:
    """(10) one big wheel uploaded to keyless with its blobs in a bucket, against the same file
    put straight into the same S3 server by boto3 (its managed multipart upload, defaults): the
    ceiling for any server in front of that store.

    moto's server mode is the S3 server, and it is Python: on this 2-core machine, sharing
    the cores with keyless and the client measured CPU contention more than either (moto
    needs as many CPU-seconds as the upload lasts). So, as a bucket would be elsewhere, it runs
    on a core of its own, and both uploaders (boto3; curl with keyless) on the others. The
    CPU seconds keyless and moto spent on each upload are recorded with it."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    from .dists import upload_fields

    _moto_credentials()
    folder = WORK / "s3-upload"
    datasets_clean(folder)
    wheels_dir = BENCH / "work-cache" / "big"
    size_mb = opts.upload_size / MIB
    case = f"{size_mb:.0f} MB wheel"
    usable = sorted(os.sched_getaffinity(0))
    s3_cpus, client_cpus = (str(usable[0]), usable[1:]) if len(usable) > 1 else (None, usable)
    moto, endpoint = _start_moto(folder, s3_cpus)
    keyless: Keyless | None = None
    os.sched_setaffinity(0, client_cpus)  # boto3's threads and curl: off the S3 server's core
    try:
        s3 = boto3.session.Session().client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=S3_BUCKET)
        keyless = Keyless(
            folder / "keyless",
            extra_config=(
                f'\n[storage]\nblobs = "s3://{S3_BUCKET}/keyless"\nendpoint-url = "{endpoint}"\n'
                'region = "us-east-1"\naddressing-style = "path"\n'
            ),
        )
        keyless.cpus = ",".join(map(str, client_cpus))
        keyless.prepare()
        keyless.start()
        for run in range(opts.runs):
            path = write_big_wheel(wheels_dir, "bench-big", f"1.0.{run}", opts.upload_size)
            digests = digests_of_file(path)
            # Alternate which goes first, so neither always meets a warmer S3 server.
            order = ("boto3", "keyless") if run % 2 == 0 else ("keyless", "boto3")
            for who in order:
                s3_before = procs.cpu_seconds(moto.pid)
                if who == "boto3":
                    began = time.perf_counter()
                    s3.upload_file(str(path), S3_BUCKET, f"direct/{run}", Config=TransferConfig())
                    seconds = time.perf_counter() - began
                    s3_cpu = procs.cpu_seconds(moto.pid) - s3_before
                    results.add(
                        S3_UPLOAD,
                        case,
                        "boto3 straight to S3",
                        "MB/s",
                        size_mb / seconds,
                        s3_cpu_s=round(s3_cpu, 2),
                    )
                    log(f"{S3_UPLOAD} boto3: {size_mb / seconds:.0f} MB/s, moto {s3_cpu:.1f} CPU-s")
                    continue
                fields = upload_fields("bench-big", f"1.0.{run}", (), digests)
                keyless_before = procs.cpu_seconds(keyless.pid)
                with procs.MemorySampler(keyless.pid) as memory:
                    status, seconds = _curl_upload(
                        keyless.upload_url, path, f"__token__:{keyless.token}", fields
                    )
                if status != 200:
                    raise RuntimeError(f"keyless on S3: big upload answered {status}")
                growth = (memory.peak - memory.start) / 1024
                cpu = procs.cpu_seconds(keyless.pid) - keyless_before
                s3_cpu = procs.cpu_seconds(moto.pid) - s3_before
                results.add(
                    S3_UPLOAD,
                    case,
                    "keyless",
                    "MB/s",
                    size_mb / seconds,
                    growth_mb=growth,
                    cpu_s=round(cpu, 2),
                    s3_cpu_s=round(s3_cpu, 2),
                )
                log(
                    f"{S3_UPLOAD} keyless: {size_mb / seconds:.0f} MB/s, +{growth:.1f} MB, "
                    f"{cpu:.1f} CPU-s, moto {s3_cpu:.1f} CPU-s"
                )
    finally:
        os.sched_setaffinity(0, usable)
        if keyless is not None:
            keyless.stop()
        procs.stop(moto)


# ----------------------------------------------------------------- the cost of shared state

# The last commit before issue 12's shared state (the change serial checked on every request,
# the metrics, the outage middleware): "today's single process" of the issue.
BEFORE_SHARED_STATE = "ee79a7b"
SHARED_STATE = "12 shared-state cost"


def shared_state_cost(results: Results, opts: Options, cores: int) -> None:
    """(12) the small project's JSON page from this checkout's `keyless serve --workers 1`
    against the same server of commit ee79a7b (extracted from git), both seeded alike, each
    in turn on the same server core with wrk on another: what keeping every process fresh
    costs a whole HTTP request (goal: new at least 0.95x old)."""
    from . import commit_cost

    folder = WORK / "shared-state"
    datasets_clean(folder)
    try:
        before = commit_cost.extract_tree(BEFORE_SHARED_STATE, folder / "tree")
    except commit_cost.Unavailable as exc:
        results.notes.append(f"{SHARED_STATE} skipped: {exc}")
        log(f"{SHARED_STATE} skipped: {exc}")
        return
    load_cores, server_cores = split_cores(cores)
    server_cpus = ",".join(map(str, server_cores[:1]))  # one process: one core
    servers = {
        "keyless": Keyless(folder / "new"),
        f"keyless at {BEFORE_SHARED_STATE}": Keyless(folder / "old", src=before),
    }
    case = "small project json, --workers 1"
    try:
        for server in servers.values():
            server.cpus = server_cpus
            datasets.seed_keyless(server, 0)
            server.stop()
        for _run in range(opts.runs):
            for name, server in servers.items():
                server.start()
                try:
                    url = server.simple_url(datasets.SMALL)
                    status, _, _ = check(url, JSON_TYPE)  # also puts it in memory
                    if status != 200:
                        raise RuntimeError(f"{name}: {url} answered {status}")
                    _measure(results, SHARED_STATE, case, name, url, JSON_TYPE, opts, load_cores)
                    record = results.get(SHARED_STATE, case, name, "req/s")
                    assert record is not None
                    log(f"{SHARED_STATE} {name}: {record.values[-1]:,.0f} req/s")
                finally:
                    server.stop()
    finally:
        for server in servers.values():
            server.stop()


# ------------------------------------------------------------------------------ S3 clients

S3_CLIENTS = "13 S3 clients"


def s3_clients(results: Results, opts: Options) -> None:
    """(13) the S3 client libraries keyless could use, streaming one upload into moto the way
    keyless must (bench/s3_clients.py): MB/s and each one's own peak memory growth."""
    from .env import ensure_venv

    python = ensure_venv("s3-clients") / "python"
    _moto_credentials()
    folder = WORK / "s3-clients"
    datasets_clean(folder)
    moto, endpoint = _start_moto(folder)
    size_mb = opts.upload_size // MIB
    case = f"{size_mb} MB in 64 KiB chunks"
    script = Path(__file__).with_name("s3_clients.py")
    try:
        import boto3

        boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
        variants = ("boto3", "boto3 without CRC32", "obstore", "aioboto3")
        for run in range(opts.runs):
            # Rotate the order, so no client always meets moto first (or warmest).
            for variant in variants[run % len(variants) :] + variants[: run % len(variants)]:
                done = subprocess.run(
                    [
                        str(python),
                        str(script),
                        variant,
                        endpoint,
                        S3_BUCKET,
                        f"{run}",
                        f"{size_mb}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"{variant}: {done.stderr.strip().splitlines()[-1:]}")
                figures = json.loads(done.stdout)
                results.add(
                    S3_CLIENTS, case, variant, "MB/s", figures["mb_s"], growth_mb=figures["growth"]
                )
                rate, growth = figures["mb_s"], figures["growth"]
                log(f"{S3_CLIENTS} {variant}: {rate:.0f} MB/s, +{growth:.0f} MB")
    finally:
        procs.stop(moto)


# ------------------------------------------------------------------------- caching mirror

MIRROR = "14 caching mirror"
MIRROR_BIG_MB = 50
# The local project whose page the mirrored one is compared with: as many files as the
# upstream's `bench-small`, so the two pages are about the same size.
MIRROR_LOCAL = "bench-local"


def mirror(results: Results, opts: Options) -> None:
    """(14) issue 15: a keyless mirroring another keyless (its upstream, on 127.0.0.1).

    Pages: the upstream's `bench-small`, cached by the mirror, against the mirror's own
    `bench-local` (10 files too), both from the mirror under the same wrk load (goal: within
    10%). Files: the first download of a fresh 50 MB wheel through the mirror (fetched,
    checked, stored and streamed at once) against the same file straight from the upstream,
    with curl; the two go first in turn (goal: at least 0.8x). CPU seconds of both servers
    per download.
    """
    from .dists import upload_fields

    folder = WORK / "mirror"
    datasets_clean(folder)
    upstream = Keyless(folder / "upstream")
    started: list[Server] = [upstream]
    try:
        datasets.seed_keyless(upstream, 0)
        settings = (
            f'upstream = "{upstream.simple_url()}"\n'
            "upstream-ttl = 3600\n"  # the pages stay cached for the whole scenario
        )
        keyless = Keyless(folder / "mirror", extra_config=settings)
        started.append(keyless)
        keyless.prepare()
        keyless.start()
        keyless.upload([build_wheel(MIRROR_LOCAL, f"1.0.{i}") for i in range(10)])
        _mirror_pages(results, opts, keyless)
        size = MIRROR_BIG_MB * MIB
        case = f"first download of a {MIRROR_BIG_MB} MB upstream file"
        big = BENCH / "work-cache" / "mirror"
        for run in range(opts.runs):
            name, version = f"bench-mirror-{run}", "1.0"
            path = write_big_wheel(big, name, version, size)
            fields = upload_fields(name, version, (), digests_of_file(path))
            status, _ = _curl_upload(
                upstream.upload_url, path, f"__token__:{upstream.token}", fields
            )
            if status not in (200, 201):
                raise RuntimeError(f"upstream: the upload of {path.name} answered {status}")
            direct = _file_url(upstream, name)
            mirrored = _file_url(keyless, name)  # the mirror fetches the upstream's page
            sources = [("keyless", mirrored), ("upstream directly", direct)]
            for label, url in sources if run % 2 == 0 else sources[::-1]:
                servers = {"cpu_s_mirror": keyless, "cpu_s_upstream": upstream}
                cpu_before = {key: procs.cpu_seconds(s.pid) for key, s in servers.items()}
                seconds = _curl_download(url, path.stat().st_size)
                cpu = {
                    key: procs.cpu_seconds(s.pid) - cpu_before[key] for key, s in servers.items()
                }
                results.add(MIRROR, case, label, "MB/s", size / MIB / seconds, **cpu)
                log(f"{MIRROR} {label}: {size / MIB / seconds:.0f} MB/s")
    finally:
        for server in reversed(started):
            server.stop()


def _mirror_pages(results: Results, opts: Options, keyless: Keyless) -> None:
    targets = []
    for label, accept in (("html", HTML_TYPE), ("json", JSON_TYPE)):
        case = f"small project {label}"
        for name, project in (("keyless", datasets.SMALL), ("local page", MIRROR_LOCAL)):
            url = keyless.simple_url(project)
            status, _, size = check(url, accept)  # the first puts the upstream's in the cache
            if status != 200:
                raise RuntimeError(f"mirror: {url} answered {status}")
            results.add(MIRROR, case, name, "bytes", size)
            targets.append((case, name, accept, url))
    for run in range(opts.runs):
        for case, name, accept, url in targets:
            outcome = wrk(url, duration=opts.duration, accept=accept)
            if outcome.errors:
                results.notes.append(f"{MIRROR} {case} {name} run {run + 1}: errors")
            results.add(
                MIRROR,
                case,
                name,
                "req/s",
                outcome.rps,
                p50_ms=outcome.p50_ms,
                p99_ms=outcome.p99_ms,
            )
            log(f"{MIRROR} {case} {name}: {outcome.rps:,.0f} req/s")


def _file_url(server: Keyless, project: str) -> str:
    """The URL of the only file on `project`'s page (JSON), absolute."""
    answer = httpx.get(server.simple_url(project), headers={"Accept": JSON_TYPE}, timeout=60)
    answer.raise_for_status()
    (entry,) = answer.json()["files"]
    return str(httpx.URL(server.simple_url(project)).join(entry["url"]))


def _curl_download(url: str, size: int) -> float:
    """Seconds curl takes to download `url`, checked complete (a refused file ends short)."""
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_total}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    status, received, seconds = out.split()
    if status != "200" or int(received) != size:
        raise RuntimeError(f"{url}: answered {status} with {received} of {size} bytes")
    return float(seconds)
