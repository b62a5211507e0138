"""Syntax checks for URL and e-mail fields (stdlib only).

PyPI checks these with rfc3986 and email-validator; keyless reimplements the same rules on the
stdlib so ``dists`` keeps its small dependency set. The e-mail reasons reuse email-validator's
wording for the common mistakes.
"""

from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

_WEB_SCHEMES = frozenset({"http", "https"})

# RFC 3986 character classes; anything else (spaces, non-ASCII, quotes, ...) must be
# percent-encoded to appear in a URI.
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_SUB_DELIMS = "!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PATH = re.compile(rf"(?:[{re.escape(_UNRESERVED + _SUB_DELIMS)}:@/]|{_PCT})*\Z")
_QUERY = re.compile(rf"(?:[{re.escape(_UNRESERVED + _SUB_DELIMS)}:@/?]|{_PCT})*\Z")
_REG_NAME = re.compile(rf"(?:[{re.escape(_UNRESERVED + _SUB_DELIMS)}]|{_PCT})*\Z")
_IP_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z|\[v[0-9A-Fa-f]+\.[^\]\s]+\]\Z")


def is_valid_url(url: str) -> bool:
    """An absolute http(s) URL whose host, port, path and query are RFC 3986 valid.

    Like PyPI, an authority (host) is not required: ``https:example`` passes.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return False
    del port
    if parts.scheme.lower() not in _WEB_SCHEMES:
        return False
    host = parts.hostname or ""
    if parts.netloc:
        host_part = parts.netloc.rpartition("@")[2]
        if host_part.startswith("["):
            if not _IP_LITERAL.match(host_part.partition("]")[0] + "]"):
                return False
        elif not _REG_NAME.match(host):
            return False
    return bool(_PATH.match(parts.path) and _QUERY.match(parts.query))


_LOCAL_ATEXT = set(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.")
_DOMAIN_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def email_problem(address: str) -> str | None:
    """Why ``address`` is not a usable e-mail address, or ``None`` if it is."""
    if "@" not in address:
        return "An email address must have an @-sign."
    local, _, domain = address.rpartition("@")
    if not local:
        return "There must be something before the @-sign."
    if not domain:
        return "There must be something after the @-sign."
    bad_local = sorted({c for c in local if c not in _LOCAL_ATEXT and ord(c) < 128})
    if bad_local:
        shown = ", ".join(repr(c) for c in bad_local)
        return f"The email address contains invalid characters before the @-sign: {shown}."
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "The email address contains a period in an invalid position."
    labels = domain.split(".")
    if len(labels) < 2:
        return "The part after the @-sign is not valid. It should have a period."
    if not all(_DOMAIN_LABEL.match(label) or not label.isascii() for label in labels):
        return "The part after the @-sign contains invalid characters."
    if labels[-1].isdigit():
        return "The part after the @-sign is not valid. It is not within a valid top-level domain."
    return None
