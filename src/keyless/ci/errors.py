"""The one error the CI emulator raises for a setup it cannot use."""

from __future__ import annotations


class EmulatorError(ValueError):
    """Bad job claims, an unusable key folder, or an issuer that cannot start.

    The message names the setting and the fix.
    """
