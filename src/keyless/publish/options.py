"""How the release client uploads: `UploadOptions` (files at once, retries and their backoff,
whether an identical file already on the index counts as done), with its defaults and limits.

The one home of these options: `publish`, `stage` and `publish_in_sessions` take an
`UploadOptions` and hand it down unchanged (to the legacy path's `_Release` and the sessions'
`Transport`); `keyless publish` takes its flags' defaults and limits from here.

Standard library only (and keyless.publish.errors): `keyless publish --help` imports this
module to define its parser and must not pay for httpx (tests/test_cli_imports.py checks what
it loads; tests/test_layers.py's CLI_MODULE_LEVEL lets the CLI import this module early).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from keyless.publish.errors import PublishError

if TYPE_CHECKING:
    import random


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retry number `attempt` (1, 2, …).

    Exponential from `base`, capped at `cap`, with "equal jitter" (half fixed, half random) so
    parallel workers hitting the same outage do not retry in lockstep. A server's Retry-After
    is honoured up to `max_retry_after` (a bigger ask is cut short rather than stalling the
    release for hours).
    """

    base: float = 1.0
    cap: float = 30.0
    max_retry_after: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        exponential = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        jittered = exponential / 2 + rng.uniform(0, exponential / 2)
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.max_retry_after))


@dataclass(frozen=True)
class UploadOptions:
    """How one publish run uploads. Refuses impossible numbers when made (PublishError), so
    nothing downstream checks them again.

    `parallel`: files sent at once (and sessions opened or published at once).
    `retries`: retries of one request (a file, a lookup, a session step) on transport errors,
    5xx and 429. `backoff`: the waits between them.
    `skip_existing`: an identical file already on the index counts as done; False makes it a
    failure (for a release that must be new).
    """

    parallel: int = 4
    retries: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    skip_existing: bool = True

    # The least each number may be; checked in this order.
    MINIMUMS: ClassVar[dict[str, int]] = {"parallel": 1, "retries": 0}

    def __post_init__(self) -> None:
        for name in self.MINIMUMS:
            problem = self.problem(name, getattr(self, name))
            if problem is not None:
                raise PublishError(f"{name} {problem}.")

    @classmethod
    def problem(cls, name: str, value: int) -> str | None:
        """What is wrong with `value` for the number `name` ("must be at least 1, not 0"), or
        None. `keyless publish` refuses its flags with it at parse time."""
        minimum = cls.MINIMUMS[name]
        return f"must be at least {minimum}, not {value}" if value < minimum else None


class Retrier:
    """One run's waits between retries: before each, says what failed and when it is tried
    again (through `warn`), then sleeps the options' backoff, jittered by a generator of the
    run's own. Shared by the run's threads (the jitter needs no lock: any draw will do)."""

    def __init__(self, options: UploadOptions, warn: Callable[[str], None]) -> None:
        import random  # here, not at the top: `keyless publish --help` imports this module

        self.options = options
        self._warn = warn
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets

    def wait(self, attempt: int, retry_after: float | None, what: str, problem: str) -> None:
        """Before retry number `attempt` of `what`, which failed with `problem`."""
        delay = self.options.backoff.delay(attempt, retry_after, self._rng)
        self._warn(f"{what}: {problem}; retry {attempt} of {self.options.retries} in {delay:.1f} s")
        self.options.backoff.sleep(delay)


# The defaults, as one value: the default argument of `publish`, `stage` and
# `publish_in_sessions`, and where `keyless publish` reads its flags' defaults.
DEFAULTS = UploadOptions()
