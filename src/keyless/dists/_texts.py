"""User-facing texts that are part of the upload protocol.

Clients (twine, uv, poetry, CI log scrapers) and people searching the web match on PyPI's
exact wording, so every text PyPI has is reproduced here verbatim, in one place, where it can
be audited against PyPI's behaviour. Texts PyPI has no equivalent for are keyless' own and are
marked as such.
"""

from __future__ import annotations

CORE_METADATA_URL = "https://packaging.python.org/specifications/core-metadata"
LOCAL_VERSION_URL = (
    "https://packaging.python.org/en/latest/specifications/"
    "version-specifiers/#local-version-identifiers"
)
PEP_527_URL = "https://www.python.org/dev/peps/pep-0527"
PEP_715_URL = "https://peps.python.org/pep-0715/"
ARCHIVES_URL = "https://docs.pypi.org/archives"
DESCRIPTION_HELP_URL = "https://pypi.org/help/#description-content-type"

NAME_RULE = (
    "Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'."
)
FIELD_REQUIRED = "This field is required."
UNKNOWN_FILETYPE = "Invalid value for filetype. Error: Use a known file type."


def abbreviated(value: str) -> str:
    """A long value as PyPI shows it in a message, so the reason phrase stays readable."""
    return value[:30] + "..." + value[-30:] if len(value) > 60 else value


def form_field_error(label: str, value: str, reason: str) -> str:
    """PyPI's text for an upload-form field that fails before metadata is parsed."""
    return (
        f"{abbreviated(value)!r} is an invalid value for {label}. Error: {reason} "
        f"See {CORE_METADATA_URL} for more information."
    )


def metadata_error(message: str, *, url: str = CORE_METADATA_URL) -> str:
    """PyPI's text for one core-metadata problem: the reason, a full stop, the spec link."""
    if not message.endswith("."):
        message += "."
    return f"{message} See {url} for more information."


def invalid_distribution(reason: str) -> str:
    """PyPI's prefix for archives that are not acceptable distribution files."""
    return f"Invalid distribution file. {reason}"


def zip_not_accepted(reason: str) -> str:
    return invalid_distribution(
        f"ZIP archive not accepted: {reason}. See {ARCHIVES_URL} for more information"
    )


def tar_not_accepted(reason: str) -> str:
    return invalid_distribution(
        f"tar archive not accepted: {reason}. See {ARCHIVES_URL} for more information"
    )


def compression_ratio_exceeded(ratio: int) -> str:
    return invalid_distribution(f"File exceeds compression ratio of {ratio}")
