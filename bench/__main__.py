"""`python -m bench [setup|run|profile] …` — see bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import env, procs
from .env import BENCH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("setup", help="install wrk, nginx, pypiserver, devpi-server, profilers")
    run = sub.add_parser("run", help="run scenarios and write the results")
    run.add_argument(
        "--only",
        default="1,2,3,4,5,6,7,8,9,10,11,12,13,14",
        help="scenarios to run, e.g. 1,4 (1,2,3,5 share servers)",
    )
    run.add_argument("--runs", type=int, default=3, help="runs per figure (median taken)")
    run.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (≤ 30)")
    run.add_argument(
        "--sizes", default="0,2000,20000", help="filler files for scenarios 1-3 (0 = scenario 1)"
    )
    run.add_argument("--upload-mb", type=int, default=200)
    run.add_argument(
        "--cores",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="cores scenario 11 uses: one (a quarter from 8 on) for wrk, the rest for the servers",
    )
    run.add_argument(
        "--publish-server-workers",
        type=int,
        default=1,
        help="scenario 7 against `keyless serve --workers N` (every client meets the same server)",
    )
    run.add_argument("--peers", default="pypiserver,devpi")
    run.add_argument("--out", type=Path, default=BENCH / "results" / "latest.md")
    run.add_argument("--title", default="keyless benchmarks")
    run.add_argument(
        "--keyless-src",
        help="run the keyless server from this src/ folder (e.g. a worktree of an older "
        "commit) instead of this checkout's",
    )
    prof = sub.add_parser("profile", help="profile keyless under load (py-spy)")
    prof.add_argument("--what", choices=["page-html", "page-json", "upload"], default="page-html")
    prof.add_argument("--duration", type=float, default=10.0)
    prof.add_argument("--out", type=Path, default=BENCH / "results" / "profile.txt")
    args = parser.parse_args(argv)
    if args.command == "setup":
        env.setup()
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "profile":
        from .profile import profile

        env.setup()
        return profile(args.what, args.duration, args.out)
    parser.print_help()
    return 2


def _run(args: argparse.Namespace) -> int:
    from . import report, scenarios

    if not 0 < args.duration <= 30:
        raise SystemExit("--duration must be within (0, 30] seconds")
    only = {s.strip() for s in args.only.split(",")}
    # Scenarios 7 (twine and uv are in keyless' dev environment) and 8 need keyless' own
    # environment and git only: no peers, wrk or nginx to install.
    if only <= {"7", "8"}:
        env.ensure_keyless()
    elif only <= {"8", "9", "10", "11", "12", "13", "14"}:  # wrk, nginx, curl and moto; no peers.
        env.ensure_keyless()
        env.ensure_debian_tools()
    else:
        env.setup()
    if args.keyless_src:
        os.environ["BENCH_KEYLESS_SRC"] = str(Path(args.keyless_src).resolve())
    opts = scenarios.Options(
        runs=args.runs,
        duration=args.duration,
        upload_size=args.upload_mb * scenarios.MIB,
        publish_server_workers=args.publish_server_workers,
        peers=tuple(p for p in args.peers.split(",") if p),
    )
    sizes = tuple(int(s) for s in args.sizes.split(","))
    results = scenarios.Results()
    started, load_before = report.now(), report.load_average()
    versions = env.versions()
    try:
        if only & {"1", "2", "3", "5"}:
            chosen = tuple(
                s for s in sizes if (s == 0 and only & {"1", "5"}) or (s > 0 and only & {"2", "3"})
            )
            scenarios.simple_pages(results, opts, chosen)
        if "4" in only:
            scenarios.upload(results, opts)
        if "6" in only:
            scenarios.mint_tokens(results, opts)
        if "7" in only:
            scenarios.publish(results, opts)
        if "8" in only:
            scenarios.durable_commit(results, opts)
        if "9" in only:
            scenarios.static_tree(results, opts)
        if "10" in only:
            scenarios.s3_upload(results, opts)
        if "11" in only:
            scenarios.workers_scaling(results, opts, args.cores)
        if "12" in only:
            scenarios.shared_state_cost(results, opts, args.cores)
        if "13" in only:
            scenarios.s3_clients(results, opts)
        if "14" in only:
            scenarios.mirror(results, opts)
    finally:
        procs.stop_all()
        if results.records:
            text = report.render(results, opts, versions, started, load_before, args.title)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
            args.out.with_suffix(".json").write_text(
                json.dumps(
                    {
                        "records": [r.as_json() for r in results.records.values()],
                        "notes": results.notes,
                        "versions": versions,
                        "machine": report.machine(),
                    },
                    indent=1,
                )
            )
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
