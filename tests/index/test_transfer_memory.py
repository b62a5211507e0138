"""Export, import and moving in stream: a 200 MB file goes through `keyless import
--from-pypiserver`, `keyless export` and `keyless import` with each process staying far below
the file's size in memory (measured as the peak RSS of the command, in a process of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.dists import write_big_wheel

from tests.conftest import SERVER_CONFIG

MIB = 1024 * 1024
SIZE = 200 * MIB
# What the command itself needs (Python, SQLAlchemy, the server's modules: ~60 MB here) and
# the bounded buffers, well under the file's size.
LIMIT = 140 * MIB

CONFIG = SERVER_CONFIG + '\n[indexes.big]\nprofile = "private"\nmax-file-size = "1GiB"\n'

MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(f"{done.returncode} {peak}")
print(done.stdout + done.stderr)
"""


def peak_rss(folder: Path, *args: str) -> tuple[int, int, str]:
    """(exit status, peak RSS in bytes, output) of `keyless ARGS` on the server in `folder`."""
    config = folder / "keyless.toml"
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG, encoding="utf-8")
    command = [
        *(sys.executable, "-m", "keyless", *args),
        *("--config", str(config), "--data", str(folder / "data")),
    ]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    first, _, output = done.stdout.partition("\n")
    status, peak = map(int, first.split())
    return status, peak, output


def test_a_big_file_moves_in_and_out_in_bounded_memory(tmp_path: Path) -> None:
    wheel = write_big_wheel(tmp_path / "pypiserver", "big-demo", "1.0", SIZE)
    assert wheel.stat().st_size >= SIZE

    source = tmp_path / "source"
    status, peak, out = peak_rss(
        source, "import", "--from-pypiserver", str(wheel.parent), "--index", "big"
    )
    assert status == 0, out
    assert "1 file(s) added" in out
    assert peak < LIMIT, f"import --from-pypiserver peaked at {peak // MIB} MiB"

    archive = tmp_path / "all.tar"
    status, peak, out = peak_rss(source, "export", str(archive))
    assert status == 0, out
    assert peak < LIMIT, f"export peaked at {peak // MIB} MiB"
    assert archive.stat().st_size > SIZE

    target = tmp_path / "target"
    status, peak, out = peak_rss(target, "import", str(archive))
    assert status == 0, out
    assert peak < LIMIT, f"import peaked at {peak // MIB} MiB"
    status, _, out = peak_rss(target, "fsck", "--json")
    assert status == 0, out
    assert json.loads(out)["files"] == 1
