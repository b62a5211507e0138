"""Validation of uploaded distributions: names, versions, filenames, archives, metadata.

Pure functions over bytes and strings (stdlib, packaging, readme_renderer, trove-classifiers),
reproducing PyPI's rules and user-facing texts, with per-index policy switches.
"""

from keyless.dists.archives import ArchiveLimits, read_core_metadata
from keyless.dists.errors import DistError, InvalidMetadata
from keyless.dists.filenames import (
    DistFilename,
    check_filename_matches_project,
    check_filename_safe,
    parse_dist_filename,
)
from keyless.dists.metadata import (
    check_artifact_agrees,
    check_description_renders,
    metadata_from_form,
    parse_core_metadata,
)
from keyless.dists.names import normalize_name, ultranormalize_name, validate_project_name
from keyless.dists.platforms import is_allowed_platform
from keyless.dists.policy import Policy

__all__ = [
    "ArchiveLimits",
    "DistError",
    "DistFilename",
    "InvalidMetadata",
    "Policy",
    "check_artifact_agrees",
    "check_description_renders",
    "check_filename_matches_project",
    "check_filename_safe",
    "is_allowed_platform",
    "metadata_from_form",
    "normalize_name",
    "parse_core_metadata",
    "parse_dist_filename",
    "read_core_metadata",
    "ultranormalize_name",
    "validate_project_name",
]
