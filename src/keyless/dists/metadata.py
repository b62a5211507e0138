"""Core metadata from the upload form and from the artifact, validated as PyPI does.

Parsing and the standard rules come from ``packaging.metadata``; PyPI's additional rules
(supported metadata versions, local versions, classifiers, URLs, e-mails, direct references,
PEP 639's License/License-Expression exclusivity, ...) are layered on top, with PyPI's texts.
Every problem is collected and reported at once through ``InvalidMetadata``.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from packaging.metadata import InvalidMetadata as FieldError
from packaging.metadata import Metadata, RawMetadata, parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from trove_classifiers import all_classifiers, deprecated_classifiers

from keyless.dists import _texts, versions
from keyless.dists._formats import email_problem, is_valid_url
from keyless.dists.errors import DistError, InvalidMetadata
from keyless.dists.filenames import SDIST, DistFilename
from keyless.dists.names import validate_project_name
from keyless.dists.policy import METADATA_VERSIONS, Policy
from keyless.dists.readme import render_description, render_failure


@dataclass(frozen=True)
class _Field:
    raw: str  # key in packaging's RawMetadata
    header: str  # core metadata header name
    form: str  # multipart field name used by twine, uv, hatch, poetry, flit
    kind: str  # "single" | "multi" | "keywords" | "urls"


_FIELDS: tuple[_Field, ...] = (
    _Field("metadata_version", "Metadata-Version", "metadata_version", "single"),
    _Field("name", "Name", "name", "single"),
    _Field("version", "Version", "version", "single"),
    _Field("dynamic", "Dynamic", "dynamic", "multi"),
    _Field("platforms", "Platform", "platform", "multi"),
    _Field("supported_platforms", "Supported-Platform", "supported_platform", "multi"),
    _Field("summary", "Summary", "summary", "single"),
    _Field("description", "Description", "description", "single"),
    _Field(
        "description_content_type",
        "Description-Content-Type",
        "description_content_type",
        "single",
    ),
    _Field("keywords", "Keywords", "keywords", "keywords"),
    _Field("home_page", "Home-page", "home_page", "single"),
    _Field("download_url", "Download-URL", "download_url", "single"),
    _Field("author", "Author", "author", "single"),
    _Field("author_email", "Author-email", "author_email", "single"),
    _Field("maintainer", "Maintainer", "maintainer", "single"),
    _Field("maintainer_email", "Maintainer-email", "maintainer_email", "single"),
    _Field("license", "License", "license", "single"),
    _Field("license_expression", "License-Expression", "license_expression", "single"),
    _Field("license_files", "License-File", "license_file", "multi"),
    _Field("classifiers", "Classifier", "classifiers", "multi"),
    _Field("requires_dist", "Requires-Dist", "requires_dist", "multi"),
    _Field("requires_python", "Requires-Python", "requires_python", "single"),
    _Field("requires_external", "Requires-External", "requires_external", "multi"),
    _Field("project_urls", "Project-URL", "project_urls", "urls"),
    _Field("provides_extra", "Provides-Extra", "provides_extra", "multi"),
    _Field("provides_dist", "Provides-Dist", "provides_dist", "multi"),
    _Field("obsoletes_dist", "Obsoletes-Dist", "obsoletes_dist", "multi"),
    _Field("requires", "Requires", "requires", "multi"),
    _Field("provides", "Provides", "provides", "multi"),
    _Field("obsoletes", "Obsoletes", "obsoletes", "multi"),
    _Field("import_names", "Import-Name", "import_name", "multi"),
    _Field("import_namespaces", "Import-Namespace", "import_namespace", "multi"),
)
_BY_FORM = {f.form: f for f in _FIELDS}
_BY_RAW = {f.raw: f for f in _FIELDS}
_BY_HEADER = {f.header.lower(): f for f in _FIELDS}

# Errors on these fields explain most others, so PyPI reports them first; after them, fields
# in alphabetical order.
_PRIORITY = ("metadata-version", "name", "version")

# PEP 643 lets a field be dynamic unless it identifies the distribution; PyPI also refuses
# "Dynamic" itself.
_NOT_DYNAMIC = frozenset({"metadata-version", "name", "version", "dynamic"})

_BEFORE_LICENSE_FILE = frozenset(METADATA_VERSIONS[: METADATA_VERSIONS.index("2.4")])

_MAX_SUMMARY = 512
_MAX_URL_LABEL = 32


def _header(raw_key: str) -> str:
    return _BY_RAW[raw_key].header.lower()


def _clean(value: str) -> str | None:
    # distutils filled required-but-unknown fields with "UNKNOWN"; it never means anything.
    # NUL is escaped, not dropped, because PostgreSQL text columns cannot hold it.
    if value == "" or value.strip() == "UNKNOWN":
        return None
    return value.replace("\x00", "\\x00")


def _clean_all(values: Iterable[str]) -> list[str]:
    return [v for v in map(_clean, values) if v is not None]


def _sort(errors: list[FieldError]) -> list[FieldError]:
    def key(e: FieldError) -> tuple[int, str]:
        if e.field in _PRIORITY:
            return (_PRIORITY.index(e.field), "")
        return (len(_PRIORITY), e.field)

    return sorted(errors, key=key)


def _render(error: FieldError) -> str:
    message = str(error)
    url = _texts.CORE_METADATA_URL
    if error.field == "version" and "use of local versions" in message:
        url = _texts.LOCAL_VERSION_URL
    return _texts.metadata_error(message, url=url)


def _flatten(group: BaseExceptionGroup[Exception]) -> list[FieldError]:
    found: list[FieldError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_flatten(exc))
        elif isinstance(exc, FieldError):
            found.append(exc)
        else:  # packaging only collects InvalidMetadata; anything else is a bug to surface
            raise exc
    return found


def _get(meta: Metadata, attr: str) -> Any:
    """A field's enriched value, or None when packaging already reported it as invalid."""
    try:
        return getattr(meta, attr)
    except FieldError:
        return None


def _policy_errors(meta: Metadata, policy: Policy) -> list[FieldError]:
    """PyPI's rules on top of the core metadata standard."""
    errors: list[FieldError] = []

    version_declared = _get(meta, "metadata_version")
    if version_declared is not None and version_declared not in policy.metadata_versions:
        errors.append(
            FieldError("metadata-version", f"{version_declared!r} is not a valid metadata version")
        )

    version = _get(meta, "version")
    if version is not None and version.local and not policy.allow_local_versions:
        errors.append(
            FieldError("version", f"The use of local versions in '{version}' is not allowed.")
        )

    summary = _get(meta, "summary")
    if isinstance(summary, str) and len(summary) > _MAX_SUMMARY:
        errors.append(
            FieldError("summary", f"'summary' field must be {_MAX_SUMMARY} characters or less.")
        )

    for attr in ("author_email", "maintainer_email"):
        value = _get(meta, attr)
        if value is None:
            continue
        _, address = email.utils.parseaddr(value)
        if address and (problem := email_problem(address)):
            errors.append(
                FieldError(_header(attr), f"{address!r} is not a valid email address: {problem}")
            )

    classifiers = set(_get(meta, "classifiers") or [])
    unknown = classifiers - set(all_classifiers)
    if policy.allow_private_classifiers:
        unknown = {c for c in unknown if not c.startswith("Private ::")}
    errors.extend(
        FieldError("classifier", f"{c!r} is not a valid classifier.") for c in sorted(unknown)
    )
    for c in sorted(classifiers & deprecated_classifiers.keys()):
        replacements = deprecated_classifiers[c]
        if replacements:
            text = f"The classifier {c!r} has been deprecated, use one of {replacements} instead."
        else:
            text = f"The classifier {c!r} has been deprecated."
        errors.append(FieldError("classifier", text))

    for attr in ("home_page", "download_url"):
        url = _get(meta, attr)
        if url is not None and not is_valid_url(url):
            errors.append(FieldError(_header(attr), f"{url!r} is not a valid url."))

    for label, url in (_get(meta, "project_urls") or {}).items():
        if not label:
            errors.append(FieldError("project-url", "Must have a label"))
        elif len(label) > _MAX_URL_LABEL:
            errors.append(
                FieldError("project-url", f"{label!r} must be {_MAX_URL_LABEL} characters or less.")
            )
        elif not url:
            errors.append(FieldError("project-url", "Must have a URL"))
        elif not is_valid_url(url):
            errors.append(FieldError("project-url", f"{url!r} is not a valid url"))

    # packaging leaves Provides-Dist and Obsoletes-Dist unparsed; PyPI requires PEP 508.
    for attr in ("provides_dist", "obsoletes_dist"):
        for text in _get(meta, attr) or []:
            try:
                req = Requirement(text)
            except InvalidRequirement as exc:
                errors.append(FieldError(_header(attr), f"{text!r} is invalid: {exc}"))
            else:
                if req.url is not None:
                    errors.append(
                        FieldError(_header(attr), f"Can't have direct dependency: {text!r}")
                    )

    # A direct reference would let a package pull arbitrary code from outside the index.
    for req in _get(meta, "requires_dist") or []:
        if req.url is not None:
            errors.append(FieldError("requires-dist", f"Can't have direct dependency: {req}"))

    for field in _get(meta, "dynamic") or []:
        if field in _NOT_DYNAMIC:
            errors.append(
                FieldError("dynamic", f"Dynamic field {field!r} is not a valid dynamic field.")
            )

    # PEP 639: License-Expression supersedes License.
    if _get(meta, "license") and _get(meta, "license_expression"):
        errors.append(
            FieldError(
                "license",
                "License is deprecated when License-Expression is present. "
                "Only License-Expression should be present.",
            )
        )
    return errors


def _validate(
    raw: dict[str, Any],
    policy: Policy,
    *,
    leading: Sequence[str] = (),
    unparsed: Sequence[FieldError] = (),
    skip_fields: frozenset[str] = frozenset(),
) -> Metadata:
    """Validate raw metadata with packaging, then with the policy; raise all problems."""
    version = raw.get("version")
    problem = versions.oversized_number(version) if isinstance(version, str) else None
    if problem:
        # packaging would crash on it, not report it: reported here, left out of its check.
        raw = {k: v for k, v in raw.items() if k != "version"}
        shown = _texts.abbreviated(str(version))
        unparsed = [
            *unparsed,
            FieldError("version", f"{shown!r} is invalid for 'version': {problem}"),
        ]
        skip_fields = skip_fields | {"version"}
    standard: list[FieldError] = []
    try:
        meta = Metadata.from_raw(cast(RawMetadata, raw), validate=True)
    except ExceptionGroup as group:
        standard = [e for e in _flatten(group) if e.field not in skip_fields]
        meta = Metadata.from_raw(cast(RawMetadata, raw), validate=False)
    custom = _policy_errors(meta, policy)
    # PyPI stops at the first stage that fails: unparsable values, then the standard's rules,
    # then its own. Keeping the stages in that order makes errors[0] the text PyPI reports.
    ordered = [*leading, *map(_render, [*_sort(list(unparsed)), *_sort(standard), *_sort(custom)])]
    if ordered:
        raise InvalidMetadata(ordered)
    return meta


def _parse_project_urls(values: Sequence[str]) -> dict[str, str] | None:
    """Parse "Label, URL" values into a mapping; None when a label repeats (ambiguous)."""
    urls: dict[str, str] = {}
    for value in values:
        label, _, url = value.partition(",")
        label, url = label.strip(), url.strip()
        if label in urls:
            return None
        urls[label] = url
    return urls


def metadata_from_form(form: Mapping[str, Sequence[str]], policy: Policy) -> Metadata:
    """Core metadata from the fields of an upload request.

    ``form`` maps each multipart field name to all values sent for it. Non-metadata and unknown
    fields are ignored; empty and ``UNKNOWN`` values count as absent.

    Raises ``InvalidMetadata`` listing every problem in PyPI's wording, PyPI's choice first.
    """
    raw: dict[str, Any] = {}
    unparsed: list[FieldError] = []
    for key, given in form.items():
        spec = _BY_FORM.get(key)
        if spec is None:
            continue
        values = _clean_all([given] if isinstance(given, str) else given)
        if not values:
            continue
        parsed: Any = None
        if spec.kind == "multi":
            parsed = values
        elif spec.kind == "urls":
            parsed = _parse_project_urls(values)
        elif len(values) == 1:  # a single-use field sent twice stays None: ambiguous
            if spec.kind == "single":
                parsed = values[0]
            else:  # keywords: one comma-separated string
                parsed = [k.strip() for k in values[0].split(",")]
        if parsed is None:
            unparsed.append(FieldError(key, f"{key!r} has invalid data"))
        else:
            raw[spec.raw] = parsed

    # The upload form's Name check runs before metadata parsing, has its own wording, and
    # (like any HTML form field) looks at the first value only.
    leading: list[str] = []
    given_names = form.get("name") or []
    names = _clean_all([given_names] if isinstance(given_names, str) else given_names)
    try:
        validate_project_name(names[0] if names else "")
    except DistError as exc:
        leading.append(exc.message)
    return _validate(
        raw,
        policy,
        leading=leading,
        unparsed=unparsed,
        skip_fields=frozenset(
            # Reported once: as the form's Name error, or as unparsable.
            [*(["name"] if leading else []), *(_BY_FORM[e.field].header.lower() for e in unparsed)]
        ),
    )


def parse_core_metadata(data: bytes, policy: Policy) -> Metadata:
    """Core metadata from a METADATA or PKG-INFO file, validated like the upload form.

    Raises ``InvalidMetadata`` listing every problem.
    """
    return validate_core_metadata(*parse_email(data), policy)


def validate_core_metadata(
    parsed: RawMetadata, leftovers: Mapping[str, list[str]], policy: Policy
) -> Metadata:
    """`parse_core_metadata` of a file that packaging's `parse_email` has read already (for a
    caller that needs its raw fields too: parsing is most of the cost). Neither is changed.
    """
    leftovers = dict(leftovers)
    raw: dict[str, Any] = {}
    for key, value in cast(Mapping[str, Any], parsed).items():
        if isinstance(value, str):
            if (cleaned := _clean(value)) is not None:
                raw[key] = cleaned
        elif isinstance(value, list):
            if cleaned_list := _clean_all(value):
                raw[key] = cleaned_list
        else:
            raw[key] = value
    if raw.get("metadata_version") in _BEFORE_LICENSE_FILE:
        # setuptools wrote License-File (with other semantics) long before PEP 639 defined it
        # in 2.4; twine drops those entries rather than fail, so PyPI never sees them.
        raw.pop("license_files", None)
        leftovers.pop("license-file", None)
    unparsed = [
        FieldError(
            key,
            f"{key!r} has invalid data" if key in _BY_HEADER else f"unrecognized field: {key!r}",
        )
        for key in leftovers
    ]
    # A required field that could not be parsed is reported once, as unparsable.
    skip = frozenset(k for k in leftovers if k in _PRIORITY and _BY_HEADER[k].raw not in raw)
    return _validate(raw, policy, unparsed=unparsed, skip_fields=skip)


def check_description_renders(meta: Metadata) -> None:
    """Check that the long description renders with readme_renderer, as PyPI requires.

    The content type selects the renderer (reStructuredText when none is declared). Raises
    ``DistError`` with PyPI's text when rendering fails. Unbounded in time and memory: see
    keyless.dists.readme.
    """
    if (
        meta.description
        and render_description(meta.description, meta.description_content_type) is None
    ):
        raise DistError(render_failure(meta.description_content_type))


def check_artifact_agrees(form_meta: Metadata, file_meta: Metadata, dist: DistFilename) -> None:
    """Check that the upload form, the file name and the artifact's own metadata agree.

    PyPI trusts the form; keyless also reads METADATA/PKG-INFO from the artifact, because that
    file is what installers see (it is served as the PEP 658 metadata). Names are compared
    normalized and versions by PEP 440 equality (1.0 == 1.0.0). Raises ``DistError`` naming
    which source says what.
    """
    inside = "METADATA" if dist.packagetype != SDIST else "PKG-INFO"
    where = f"the uploaded file's {inside}"
    if canonicalize_name(file_meta.name) != canonicalize_name(form_meta.name):
        raise DistError(
            f"The name in {where} is {file_meta.name!r} but the upload form says "
            f"{form_meta.name!r}. Rebuild the distribution or fix the upload."
        )
    if canonicalize_name(file_meta.name) != dist.name:
        raise DistError(
            f"The name in {where} is {file_meta.name!r} but the file name "
            f"{dist.filename!r} says {dist.name!r}. Rebuild the distribution."
        )
    if file_meta.version != form_meta.version:
        raise DistError(
            f"The version in {where} is '{file_meta.version}' but the upload form says "
            f"'{form_meta.version}'. Rebuild the distribution or fix the upload."
        )
    if file_meta.version != dist.version:
        raise DistError(
            f"The version in {where} is '{file_meta.version}' but the file name "
            f"{dist.filename!r} says '{dist.version}'. Rebuild the distribution."
        )


def declared_license_files(data: bytes) -> list[str]:
    """The License-File entries of a METADATA/PKG-INFO file that the artifact must contain.

    Entries under a Metadata-Version before 2.4 are setuptools' older, different convention
    and are ignored, as twine (and so PyPI) ignores them. Never raises.
    """
    if b"license-file" not in data.lower():
        return []  # most files: no need to parse them (header names are case-insensitive)
    parsed, _ = parse_email(data)
    if parsed.get("metadata_version") in _BEFORE_LICENSE_FILE:
        return []
    return _clean_all(parsed.get("license_files") or [])
