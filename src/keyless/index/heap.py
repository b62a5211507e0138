"""Giving the memory uploads used back to the operating system once they end.

An upload's body passes through memory as network chunks and 1 MiB batches (multipart.py,
keyless.store.blobs), and many uploads at once need tens of MiB for a moment. Python frees
it all, but glibc's malloc keeps freed memory in its heap and gives it back only from the
heap's top: one small allocation made meanwhile above the freed space pins all of it. So a
server's resident memory stayed 5 to 14 MiB above its baseline after some rounds of stalled
uploads, and more after others, though no object was kept (tracemalloc saw Python's own
memory flat). Measured with 8 rounds of 40 uploads stalled after 3 MiB: the `[heap]`
mapping ended each round at 34 to 43 MiB, with jumps of 5 to 7 MiB; with `malloc_trim(0)` after
each round, at 17.6 to 18.6 MiB.

`malloc_trim(0)` returns every whole free page of every arena, not only the top. It walks the
heap (a few ms), so it runs on a worker thread (ctypes releases the GIL), once the uploads in
progress have all ended — after a burst, not after each upload — or every 10 s under uploads
that never all end at once. Outside glibc (musl, macOS) there is no such call: nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections.abc import Callable

# Trim this long after the last upload in progress ended (the next may start meanwhile).
DELAY = 0.1
# Under uploads that never all end at once, trim still, but at most this often.
BUSY_INTERVAL = 10.0


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


class HeapTrimmer:
    """Calls `malloc_trim` when the uploads in progress have ended; one per server process."""

    def __init__(self, trim: Callable[[int], int] | None = None) -> None:
        self._trim = trim if trim is not None else _glibc_malloc_trim()
        self.active = 0  # uploads in progress
        self._scheduled = False
        self._last = time.monotonic()
        self.trims = 0  # how many ran

    @property
    def available(self) -> bool:
        """Whether this C library has malloc_trim (glibc)."""
        return self._trim is not None

    def upload_started(self) -> None:
        self.active += 1

    def upload_ended(self) -> None:
        """An upload is over (answered, refused, timed out or cut off)."""
        self.active -= 1
        if self._trim is None or self._scheduled:
            return
        if self.active == 0 or time.monotonic() - self._last > BUSY_INTERVAL:
            self._scheduled = True
            asyncio.get_running_loop().call_later(DELAY, self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self.active and time.monotonic() - self._last <= BUSY_INTERVAL:
            return  # another burst began; its end trims
        self._last = time.monotonic()
        asyncio.get_running_loop().run_in_executor(None, self._run)

    def _run(self) -> None:
        assert self._trim is not None
        self._trim(0)
        self.trims += 1
