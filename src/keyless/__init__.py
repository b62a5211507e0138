"""keyless: a self-hosted Python package index with Trusted Publishing built in."""

import importlib
from collections.abc import Mapping, MutableMapping
from typing import Any

__version__ = "0.1.0"


def lazy_attribute(
    package: str, exports: Mapping[str, str], namespace: MutableMapping[str, Any], name: str
) -> Any:
    """A package's export ``name``, imported from its module on first use (PEP 562).

    A package's ``__getattr__`` calls this with its ``{name: module}`` table and ``globals()``,
    so that importing the package loads none of its modules; the value is cached in the
    namespace, so ``__getattr__`` runs once a name.
    """
    module = exports.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    namespace[name] = value
    return value
