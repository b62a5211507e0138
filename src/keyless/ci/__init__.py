"""The CI emulator: a local OIDC issuer that gives commands GitHub- or GitLab-shaped job
environments and tokens, for rehearsing a release and testing Trusted Publishing end to end.
"""

from keyless.ci.claims import JobClaims
from keyless.ci.emulator import Emulator, banner
from keyless.ci.errors import EmulatorError

__all__ = ["Emulator", "EmulatorError", "JobClaims", "banner"]
