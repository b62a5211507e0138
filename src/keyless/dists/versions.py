"""PEP 440 versions from untrusted text: packaging's parser, without the way it crashes.

packaging converts each number in a version (and a wheel's build tag) with `int()`, which
refuses more than `sys.get_int_max_str_digits()` digits (4300 by default) with a plain
ValueError — not packaging's InvalidVersion, so no caller expected it and one request with
such a version was a 500. Text from a request is checked here first.
"""

from __future__ import annotations

import re
import sys

from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

from keyless.dists._texts import abbreviated

_DIGITS = re.compile(r"[0-9]+")


def oversized_number(text: str) -> str | None:
    """Why `text` cannot be parsed by packaging at all (a number too long for `int`), or None."""
    limit = sys.get_int_max_str_digits()
    # A scan of the runs, not a `[0-9]{limit+1}` pattern: that one backtracks limit-fold.
    if limit and any(m.end() - m.start() > limit for m in _DIGITS.finditer(text)):
        return f"a number in it has more than {limit} digits"
    return None


def parse_version(text: str) -> Version:
    """`Version(text)`; raises InvalidVersion for whatever packaging cannot parse."""
    problem = oversized_number(text)
    if problem:
        raise InvalidVersion(f"Invalid version: {abbreviated(text)!r} ({problem})")
    return Version(text)


def canonical_version(text: str) -> str:
    """PEP 440's canonical form of `text` (1.0.0 -> 1); raises InvalidVersion."""
    return canonicalize_version(parse_version(text))


def not_a_version(text: str) -> str:
    """The message for a version a request names that is not PEP 440 (or too long to parse)."""
    problem = oversized_number(text)
    detail = f": {problem}" if problem else ""
    return f"{abbreviated(text)!r} is not a valid version (PEP 440){detail}."
