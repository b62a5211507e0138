"""Project names: PEP 503 normalization, PyPI's name rule, and the confusable form."""

from __future__ import annotations

import re

from packaging.utils import NormalizedName, canonicalize_name

from keyless.dists import _texts
from keyless.dists.errors import DistError

# PyPI's rule (identical to the core metadata spec's): ASCII letters and digits at both ends,
# '.', '_' and '-' allowed inside. \Z, not $, so a trailing newline cannot sneak through.
_PROJECT_NAME = re.compile(r"[A-Z0-9]([A-Z0-9._-]*[A-Z0-9])?\Z", re.IGNORECASE | re.ASCII)

# Characters that render alike in many fonts collapse onto one; separators vanish.
_CONFUSABLES = str.maketrans({"l": "1", "L": "1", "i": "1", "I": "1", "o": "0", "O": "0"})
_SEPARATORS = re.compile(r"[._-]")


def normalize_name(name: str) -> NormalizedName:
    """PEP 503 normalized form: runs of ``-``, ``_``, ``.`` become ``-``; lowercase."""
    return canonicalize_name(name)


def is_project_name(name: str) -> bool:
    """Whether `name` follows PyPI's rule (for callers with texts of their own)."""
    return _PROJECT_NAME.match(name) is not None


def validate_project_name(name: str) -> None:
    """Check a project name against PyPI's rule.

    Raises ``DistError`` with PyPI's upload-form text when the name is empty or invalid.
    """
    if not name:
        raise DistError(_texts.form_field_error("Name", name, _texts.FIELD_REQUIRED))
    if not is_project_name(name):
        raise DistError(_texts.form_field_error("Name", name, _texts.NAME_RULE))


def ultranormalize_name(name: str) -> str:
    """A name's confusable form, for "too similar to an existing project" checks.

    Separators are removed, ``l``/``L``/``i``/``I`` become ``1`` and ``o``/``O`` become ``0``,
    then everything is lowercased, so ``Toast-ing``, ``t0asting`` and ``toastlng`` collide.
    """
    return _SEPARATORS.sub("", name).translate(_CONFUSABLES).lower()
