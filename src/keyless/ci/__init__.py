"""The CI emulator: a local OIDC issuer that gives commands GitHub- or GitLab-shaped job
environments and tokens, for rehearsing a release and testing Trusted Publishing end to end.
"""

from typing import Any

from keyless import lazy_attribute

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
