"""Which names of an index with an upstream may be served from the upstream.

One rule, asked before anything is fetched: a name the index owns (a project of its own, or one
a pending publisher reserves: `Catalog.owns_name`) or one matching a pattern its admin reserves
(`reserved-names`, e.g. `acme-*`) is the index's alone. Whatever versions the upstream publishes
under such a name never reach a client (dependency confusion).
"""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.utils import NormalizedName

from keyless.config import IndexSettings


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    # Patterns are normalized names (config.py): `*` is the only character with a meaning.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def reserved_by(settings: IndexSettings, name: NormalizedName) -> str | None:
    """The first of the index's reserved name patterns that `name` matches, else None."""
    return next((p for p in settings.reserved_names if _compiled(p).fullmatch(name)), None)
