"""parse_core_metadata (METADATA / PKG-INFO bytes), description rendering, and agreement of
form, filename and artifact."""

from __future__ import annotations

from typing import Any

import pytest
from packaging.metadata import Metadata
from packaging.version import Version

from keyless.dists import (
    DistError,
    InvalidMetadata,
    Policy,
    check_artifact_agrees,
    check_description_renders,
    metadata_from_form,
    parse_core_metadata,
    parse_dist_filename,
)
from tests.builders import core_metadata, core_metadata_text, form_mapping, upload_form_fields

PYPI = Policy.for_profile("pypi")
PRIVATE = Policy.for_profile("private")
SPEC = "https://packaging.python.org/specifications/core-metadata"
HELP = "https://pypi.org/help/#description-content-type"


def spec(text: str) -> str:
    return f"{text} See {SPEC} for more information."


def parse(text: str, policy: Policy = PYPI) -> Metadata:
    return parse_core_metadata(text.encode(), policy)


def file_errors(text: str, policy: Policy = PYPI) -> list[str]:
    with pytest.raises(InvalidMetadata) as exc:
        parse(text, policy)
    return exc.value.errors


# ------------------------------------------------------------------------ METADATA files


def test_file_and_form_give_the_same_metadata() -> None:
    fields: dict[str, Any] = {
        "summary": "A demo",
        "description": "Hello\n=====\n\nWorld.\n",
        "description_content_type": "text/x-rst",
        "keywords": ["a", "b"],
        "classifiers": ["Typing :: Typed"],
        "requires_dist": ["httpx>=0.27"],
        "requires_python": ">=3.11",
        "project_urls": {"Homepage": "https://example.org"},
        "license_expression": "MIT",
        "license_files": ["LICENSE"],
    }
    from_file = parse(core_metadata_text("Demo.Pkg", "1.0", **fields))
    from_form = metadata_from_form(
        form_mapping(upload_form_fields(core_metadata("Demo.Pkg", "1.0", **fields))), PYPI
    )
    for attr in (
        "name",
        "version",
        "summary",
        "description",
        "keywords",
        "classifiers",
        "requires_python",
        "project_urls",
        "license_expression",
        "license_files",
    ):
        assert getattr(from_file, attr) == getattr(from_form, attr), attr
    assert from_file.description == "Hello\n=====\n\nWorld.\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (core_metadata_text(version="1.0+local"), "The use of local versions in '1.0+local'"),
        (
            core_metadata_text(classifiers=["Bogus :: Classifier"]),
            spec("'Bogus :: Classifier' is not a valid classifier."),
        ),
        (
            core_metadata_text(requires_dist=["x @ https://example.org/x.whl"]),
            spec("Can't have direct dependency: x @ https://example.org/x.whl."),
        ),
        (
            core_metadata_text(metadata_version="2.6"),
            spec("'2.6' is not a valid metadata version."),
        ),
        ("Name: demo\nVersion: 1.0\n", spec("None is not a valid metadata version.")),
        ("Metadata-Version: 2.4\nVersion: 1.0\n", spec("'name' is a required field.")),
        ("Metadata-Version: 2.4\nName: demo\n", spec("'version' is a required field.")),
        (core_metadata_text() + "X-Custom: 1\n", spec("unrecognized field: 'x-custom'.")),
        (
            core_metadata_text(metadata_version="2.1", license_expression="MIT"),
            spec("license-expression introduced in metadata version 2.4, not 2.1."),
        ),
    ],
)
def test_file_rules_match_the_form_rules(text: str, message: str) -> None:
    assert file_errors(text)[0].startswith(message)


def test_a_version_with_a_number_too_long_for_int_is_invalid_in_files_too() -> None:
    text = core_metadata_text(version="1." + "2" * 5000)
    assert file_errors(text) == [
        spec(
            f"'1.{'2' * 28}...{'2' * 30}' is invalid for 'version': "
            "a number in it has more than 4300 digits."
        )
    ]


def test_unparsable_description_is_invalid_data() -> None:
    data = core_metadata_text().encode() + b"\n\xff\xfe not utf-8"
    with pytest.raises(InvalidMetadata) as exc:
        parse_core_metadata(data, PYPI)
    assert exc.value.errors == [spec("'description' has invalid data.")]


def test_private_profile_applies_to_files_too() -> None:
    text = core_metadata_text(version="1.0+cu121", classifiers=["Private :: Do Not Upload"])
    assert len(file_errors(text)) == 2
    assert parse(text, PRIVATE).version == Version("1.0+cu121")


def test_unknown_values_in_files_count_as_absent() -> None:
    meta = parse(
        core_metadata_text(metadata_version="2.1", home_page="UNKNOWN", platforms=["UNKNOWN"])
    )
    assert (meta.home_page, meta.platforms) == (None, None)


def test_pre_2_4_license_file_entries_are_ignored_like_twine_does() -> None:
    text = core_metadata_text(metadata_version="2.1") + "License-File: LICENSE\n"
    assert parse(text).license_files is None
    assert parse(core_metadata_text(license_files=["LICENSE"])).license_files == ["LICENSE"]


# --------------------------------------------------------------------- description render


def with_description(description: str, content_type: str | None) -> Metadata:
    fields: dict[str, Any] = {"description": description}
    if content_type:
        fields["description_content_type"] = content_type
    return parse(core_metadata_text(**fields))


@pytest.mark.parametrize(
    ("description", "content_type"),
    [
        ("Title\n=====\n\nText with *emphasis*.\n", None),
        ("Title\n=====\n", "text/x-rst"),
        ("# Title\n\n.. invalid-directive::\n", "text/markdown"),
        ("# Title\n", "text/markdown; variant=CommonMark"),
        (".. invalid-directive::\n", "text/plain"),
        ("", None),
    ],
)
def test_descriptions_that_render(description: str, content_type: str | None) -> None:
    check_description_renders(with_description(description, content_type))


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (
            None,
            "The description failed to render in the default format of reStructuredText. "
            f"See {HELP} for more information.",
        ),
        (
            "text/x-rst",
            f"The description failed to render for 'text/x-rst'. See {HELP} for more information.",
        ),
        (
            "text/x-rst; charset=UTF-8",
            "The description failed to render for 'text/x-rst; charset=UTF-8'. "
            f"See {HELP} for more information.",
        ),
    ],
)
def test_broken_rst_is_refused_with_pypis_text(content_type: str | None, message: str) -> None:
    with pytest.raises(DistError) as exc:
        check_description_renders(with_description(".. invalid-directive::\n", content_type))
    assert exc.value.message == message


# ------------------------------------------------------------------------- agreement


def agree(
    form_name: str, form_version: str, file_name: str, file_version: str, filename: str
) -> None:
    form_meta = metadata_from_form(
        form_mapping(upload_form_fields(core_metadata(form_name, form_version))), PRIVATE
    )
    file_meta = parse(core_metadata_text(file_name, file_version), PRIVATE)
    check_artifact_agrees(form_meta, file_meta, parse_dist_filename(filename, PRIVATE))


@pytest.mark.parametrize(
    ("form_name", "form_version", "file_name", "file_version", "filename"),
    [
        ("demo", "1.0", "demo", "1.0", "demo-1.0-py3-none-any.whl"),
        ("Demo.Pkg", "1.0", "demo_pkg", "1.0.0", "demo_pkg-1.0-py3-none-any.whl"),
        ("demo", "1.0.0", "DEMO", "1.0", "demo-1.0.tar.gz"),
    ],
)
def test_sources_that_agree(
    form_name: str, form_version: str, file_name: str, file_version: str, filename: str
) -> None:
    agree(form_name, form_version, file_name, file_version, filename)


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (
            ("demo", "1.0", "other", "1.0", "demo-1.0-py3-none-any.whl"),
            "The name in the uploaded file's METADATA is 'other' but the upload form says "
            "'demo'. Rebuild the distribution or fix the upload.",
        ),
        (
            ("other", "1.0", "other", "1.0", "demo-1.0-py3-none-any.whl"),
            "The name in the uploaded file's METADATA is 'other' but the file name "
            "'demo-1.0-py3-none-any.whl' says 'demo'. Rebuild the distribution.",
        ),
        (
            ("demo", "1.0", "demo", "1.0.1", "demo-1.0-py3-none-any.whl"),
            "The version in the uploaded file's METADATA is '1.0.1' but the upload form says "
            "'1.0'. Rebuild the distribution or fix the upload.",
        ),
        (
            ("demo", "6.6.6", "demo", "6.6.6", "demo-1.0.tar.gz"),
            "The version in the uploaded file's PKG-INFO is '6.6.6' but the file name "
            "'demo-1.0.tar.gz' says '1.0'. Rebuild the distribution.",
        ),
    ],
)
def test_disagreement_names_each_source(sources: tuple[str, ...], message: str) -> None:
    with pytest.raises(DistError) as exc:
        agree(*sources)
    assert exc.value.message == message
