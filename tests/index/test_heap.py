"""The heap is trimmed once a burst of uploads is over, not after each upload (index/heap.py).

The effect on a live server is checked by tests/index/test_resources.py (memory returns to its
baseline after rounds of stalled uploads); here, when the trim runs.
"""

from __future__ import annotations

import asyncio

import pytest

from keyless.index import heap
from keyless.index.heap import HeapTrimmer


class Calls:
    def __init__(self) -> None:
        self.args: list[int] = []

    def __call__(self, pad: int) -> int:
        self.args.append(pad)
        return 1


async def settle() -> None:
    await asyncio.sleep(heap.DELAY + 0.2)


def test_one_trim_after_the_last_upload_of_a_burst_ends() -> None:
    calls = Calls()
    trimmer = HeapTrimmer(calls)

    async def burst() -> None:
        for _ in range(3):
            trimmer.upload_started()
        trimmer.upload_ended()
        trimmer.upload_ended()
        await settle()
        assert calls.args == [], "no trim while an upload is still in progress"
        trimmer.upload_ended()
        await settle()
        assert calls.args == [0]  # malloc_trim(0): keep no padding at the top

    asyncio.run(burst())
    assert trimmer.trims == 1


def test_an_upload_starting_before_the_trim_postpones_it_to_its_own_end() -> None:
    calls = Calls()
    trimmer = HeapTrimmer(calls)

    async def overlap() -> None:
        trimmer.upload_started()
        trimmer.upload_ended()
        trimmer.upload_started()  # within DELAY
        await settle()
        assert calls.args == []
        trimmer.upload_ended()
        await settle()
        assert calls.args == [0]

    asyncio.run(overlap())


def test_uploads_that_never_all_end_still_trim_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = Calls()
    trimmer = HeapTrimmer(calls)
    monkeypatch.setattr(heap, "BUSY_INTERVAL", 0.0)

    async def busy() -> None:
        trimmer.upload_started()
        trimmer.upload_started()
        trimmer.upload_ended()  # one still in progress
        await settle()
        assert calls.args == [0]

    asyncio.run(busy())


def test_glibc_malloc_trim_is_found_here() -> None:
    """This machine runs glibc: a server here trims (elsewhere it does nothing)."""
    assert HeapTrimmer().available
