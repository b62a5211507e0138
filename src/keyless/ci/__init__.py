"""The CI emulator: a local OIDC issuer that gives commands GitHub- or GitLab-shaped job
environments and tokens, for rehearsing a release and testing Trusted Publishing end to end.
"""

from typing import TYPE_CHECKING, Any

from keyless import lazy_attribute

if TYPE_CHECKING:
    # The exports' own types for mypy (else each is the Any of `__getattr__`); at run time
    # nothing is imported here. tests/test_cli_imports.py keeps this list and _EXPORTS alike.
    from keyless.ci.claims import JobClaims
    from keyless.ci.emulator import Emulator, banner
    from keyless.ci.errors import EmulatorError

# Imported on first use (PEP 562): `keyless init` and `keyless doctor` need only the workflow
# templates and keyless.ci.claims, not the emulator (PyJWT, cryptography, an HTTP server).
_EXPORTS = {
    "Emulator": "keyless.ci.emulator",
    "EmulatorError": "keyless.ci.errors",
    "JobClaims": "keyless.ci.claims",
    "banner": "keyless.ci.emulator",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, globals(), name)


__all__ = ["Emulator", "EmulatorError", "JobClaims", "banner"]
