"""metadata_from_form: the upload form's metadata fields, validated with PyPI's rules/texts."""

from __future__ import annotations

from typing import Any

import pytest
from packaging.version import Version

from keyless.dists import InvalidMetadata, Policy, metadata_from_form
from tests.builders import core_metadata, form_mapping, upload_form_fields

PYPI = Policy.for_profile("pypi")
PRIVATE = Policy.for_profile("private")
SPEC = "https://packaging.python.org/specifications/core-metadata"
LOCAL = (
    "https://packaging.python.org/en/latest/specifications/"
    "version-specifiers/#local-version-identifiers"
)


def form(**fields: Any) -> dict[str, list[str]]:
    """The form twine sends for demo 1.0 (Metadata-Version 2.4) plus ``fields``."""
    return form_mapping(upload_form_fields(core_metadata(**fields)))


def errors_of(data: dict[str, list[str]], policy: Policy = PYPI) -> list[str]:
    with pytest.raises(InvalidMetadata) as exc:
        metadata_from_form(data, policy)
    assert exc.value.message == "\n".join(exc.value.errors)
    return exc.value.errors


def first_error(data: dict[str, list[str]], policy: Policy = PYPI) -> str:
    return errors_of(data, policy)[0]


def spec(text: str) -> str:
    return f"{text} See {SPEC} for more information."


def test_full_metadata_parses() -> None:
    meta = metadata_from_form(
        form(
            summary="A demo",
            description="Hello\n=====\n",
            description_content_type="text/x-rst",
            keywords=["a", "b"],
            author="Ann",
            author_email="Ann <ann@example.org>",
            license_expression="MIT OR Apache-2.0",
            license_files=["LICENSE", "licenses/NOTICE"],
            classifiers=["Programming Language :: Python :: 3", "Typing :: Typed"],
            requires_dist=["httpx>=0.27", "rich; extra == 'cli'"],
            requires_python=">=3.11",
            project_urls={"Homepage": "https://example.org", "Source": "https://example.org/src"},
            provides_extra=["cli"],
            platforms=["Linux"],
            dynamic=["Requires-Dist"],
        ),
        PYPI,
    )
    assert (meta.name, meta.version, meta.metadata_version) == ("demo", Version("1.0"), "2.4")
    assert meta.keywords == ["a", "b"]
    assert meta.license_expression == "MIT OR Apache-2.0"
    assert meta.license_files == ["LICENSE", "licenses/NOTICE"]
    assert [str(r) for r in meta.requires_dist or []] == ["httpx>=0.27", 'rich; extra == "cli"']
    assert meta.project_urls == {
        "Homepage": "https://example.org",
        "Source": "https://example.org/src",
    }
    assert str(meta.requires_python) == ">=3.11"
    assert meta.provides_extra == ["cli"]
    assert meta.platforms == ["Linux"]
    assert meta.dynamic == ["requires-dist"]


def test_non_metadata_and_unknown_fields_are_ignored() -> None:
    data = form()
    data.update(
        {
            ":action": ["file_upload"],
            "protocol_version": ["1"],
            "content": ["<file>"],
            "filetype": ["sdist"],
            "pyversion": ["source"],
            "md5_digest": ["x"],
            "sha256_digest": ["x"],
            "blake2_256_digest": ["x"],
            "attestations": ["[]"],
            "comment": ["hi"],
            "gpg_signature": ["sig"],
            "x_custom": ["whatever", "twice"],
        }
    )
    assert metadata_from_form(data, PYPI).name == "demo"


def test_empty_and_unknown_values_count_as_absent() -> None:
    data = form()
    data.update(
        summary=[""],
        home_page=["UNKNOWN"],
        license=[" UNKNOWN "],
        platform=["UNKNOWN"],
        classifiers=["", "Typing :: Typed", "UNKNOWN"],
    )
    meta = metadata_from_form(data, PYPI)
    assert (meta.summary, meta.home_page, meta.license, meta.platforms) == (None, None, None, None)
    assert meta.classifiers == ["Typing :: Typed"]


def test_unknown_version_is_missing_version() -> None:
    assert first_error(form(version="UNKNOWN")) == spec("'version' is a required field.")


def test_a_version_with_a_number_too_long_for_int_is_invalid() -> None:
    # packaging lets int()'s ValueError (over 4300 digits) through: it was a 500.
    shown = "1" * 30 + "..." + "1" * 30
    assert errors_of(form(version="1" * 5000)) == [
        spec(f"'{shown}' is invalid for 'version': a number in it has more than 4300 digits.")
    ]


def test_nul_characters_are_escaped() -> None:
    assert metadata_from_form(form(summary="a\x00b"), PYPI).summary == "a\\x00b"


def test_single_strings_are_accepted_as_values() -> None:
    data: dict[str, Any] = {"metadata_version": "2.4", "name": "demo", "version": "1.0"}
    assert metadata_from_form(data, PYPI).version == Version("1.0")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # Metadata-Version
        ({"metadata_version": None}, spec("None is not a valid metadata version.")),
        ({"metadata_version": "-1"}, spec("'-1' is not a valid metadata version.")),
        ({"metadata_version": "3.0"}, spec("'3.0' is not a valid metadata version.")),
        ({"metadata_version": "2.6"}, spec("'2.6' is not a valid metadata version.")),
        # Name (the upload form's own check and wording)
        (
            {"name": None},
            spec("'' is an invalid value for Name. Error: This field is required."),
        ),
        (
            {"name": "foo-"},
            spec(
                "'foo-' is an invalid value for Name. Error: Start and end with a letter or "
                "numeral containing only ASCII numeric and '.', '_' and '-'."
            ),
        ),
        # Version
        ({"version": None}, spec("'version' is a required field.")),
        ({"version": "dog"}, spec("'dog' is invalid for 'version'.")),
        ({"version": "1.0.dev.a1"}, spec("'1.0.dev.a1' is invalid for 'version'.")),
        (
            {"version": "1.0+local"},
            f"The use of local versions in '1.0+local' is not allowed. "
            f"See {LOCAL} for more information.",
        ),
        # Summary
        ({"summary": "A" * 513}, spec("'summary' field must be 512 characters or less.")),
        ({"summary": "A\nB"}, spec("'summary' must be a single line.")),
        # A field newer than the declared Metadata-Version
        (
            {"metadata_version": "2.1", "license_expression": "MIT"},
            spec("license-expression introduced in metadata version 2.4, not 2.1."),
        ),
        (
            {"metadata_version": "2.4", "import_names": ["demo"]},
            spec("import-name introduced in metadata version 2.5, not 2.4."),
        ),
        (
            {"metadata_version": "1.0", "classifiers": ["Typing :: Typed"]},
            spec("classifier introduced in metadata version 1.1, not 1.0."),
        ),
        # Description-Content-Type
        (
            {"description_content_type": "text/markdown; charset=latin-1"},
            spec("'description-content-type' can only specify the UTF-8 charset, not 'latin-1'."),
        ),
        # Requires-Dist
        (
            {"requires_dist": ["demo2 @ https://example.org/demo2-1.0-py3-none-any.whl"]},
            spec(
                "Can't have direct dependency: demo2 @ "
                "https://example.org/demo2-1.0-py3-none-any.whl."
            ),
        ),
        ({"requires_dist": ["demo2 >>> 1"]}, spec("'demo2 >>> 1' is invalid for 'requires-dist'.")),
        # Requires-Python
        ({"requires_python": ">=3.x"}, spec("'>=3.x' is invalid for 'requires-python'.")),
        # License-Expression (PEP 639)
        (
            {"license_expression": "Not-A-License"},
            spec("'Not-A-License' is invalid for 'license-expression'."),
        ),
        (
            {"license_expression": "MIT", "license": "MIT License"},
            spec(
                "License is deprecated when License-Expression is present. "
                "Only License-Expression should be present."
            ),
        ),
        (
            {"license_files": ["../LICENSE"]},
            spec(
                "'../LICENSE' is invalid for 'license-file', "
                "parent directory indicators are not allowed."
            ),
        ),
        # Classifiers
        (
            {"classifiers": ["Invalid :: Classifier"]},
            spec("'Invalid :: Classifier' is not a valid classifier."),
        ),
        (
            {"classifiers": ["Private :: Do Not Upload"]},
            spec("'Private :: Do Not Upload' is not a valid classifier."),
        ),
        (
            {"classifiers": ["Framework :: Django CMS :: 4.2"]},
            spec(
                "The classifier 'Framework :: Django CMS :: 4.2' has been deprecated, use one of "
                "['Framework :: Django CMS :: 5.0'] instead."
            ),
        ),
        (
            {"classifiers": ["License :: OSI Approved :: Intel Open Source License"]},
            spec(
                "The classifier 'License :: OSI Approved :: Intel Open Source License' "
                "has been deprecated."
            ),
        ),
        # URLs
        ({"home_page": "ftp://example.org"}, spec("'ftp://example.org' is not a valid url.")),
        ({"home_page": "example.org"}, spec("'example.org' is not a valid url.")),
        (
            {"download_url": "https://exa mple.org"},
            spec("'https://exa mple.org' is not a valid url."),
        ),
        (
            {"download_url": "https://example.org:99999/"},
            spec("'https://example.org:99999/' is not a valid url."),
        ),
        ({"project_urls": ["Homepage"]}, spec("Must have a URL.")),
        ({"project_urls": [", https://example.org"]}, spec("Must have a label.")),
        (
            {"project_urls": {"L" * 33: "https://example.org"}},
            spec(f"'{'L' * 33}' must be 32 characters or less."),
        ),
        (
            {"project_urls": {"Home": "javascript:alert(1)"}},
            spec("'javascript:alert(1)' is not a valid url."),
        ),
        (
            {"project_urls": ["Home, https://a.example", "Home, https://b.example"]},
            spec("'project_urls' has invalid data."),
        ),
        # E-mail addresses
        (
            {"author_email": "ann"},
            spec("'ann' is not a valid email address: An email address must have an @-sign."),
        ),
        (
            {"maintainer_email": "Ann <ann@localhost>"},
            spec(
                "'ann@localhost' is not a valid email address: "
                "The part after the @-sign is not valid. It should have a period."
            ),
        ),
        # Provides-Dist / Obsoletes-Dist
        (
            {"provides_dist": ["demo @ https://example.org/x.whl"]},
            spec("Can't have direct dependency: 'demo @ https://example.org/x.whl'."),
        ),
        (
            {"obsoletes_dist": ["demo (<"]},
            "'demo (<' is invalid: Expected matching RIGHT_PARENTHESIS for LEFT_PARENTHESIS, "
            "after version specifier\n    demo (<\n         ~^. "
            f"See {SPEC} for more information.",
        ),
        # Dynamic
        ({"dynamic": ["Dynamic"]}, spec("Dynamic field 'dynamic' is not a valid dynamic field.")),
        ({"dynamic": ["Version"]}, spec("'version' is not allowed as a dynamic field.")),
        ({"dynamic": ["Colour"]}, spec("'colour' is not a valid dynamic field.")),
        # Provides-Extra
        ({"provides_extra": ["-cli"]}, spec("'-cli' is invalid for 'provides-extra'.")),
    ],
)
def test_each_rule_with_pypis_text(fields: dict[str, Any], message: str) -> None:
    data = form(**{k: v for k, v in fields.items() if v is not None})
    for key, value in fields.items():
        if value is None:
            data.pop(key, None)
    assert first_error(data) == message


def test_description_content_type_must_be_a_supported_type() -> None:
    # packaging lists the allowed types from a set, so their order varies between runs.
    message = first_error(form(description_content_type="text/html"))
    assert message.startswith("'description-content-type' must be one of [")
    assert message.endswith(spec("], not 'text/html'."))
    for allowed in ("'text/plain'", "'text/x-rst'", "'text/markdown'"):
        assert allowed in message


@pytest.mark.parametrize("field", ["summary", "name", "version", "keywords", "metadata_version"])
def test_single_use_field_sent_twice_is_invalid_data(field: str) -> None:
    data = form(summary="one", keywords=["a"])
    data[field] = [*data[field], "2.0"]
    assert errors_of(data)[0] == spec(f"'{field}' has invalid data.")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"version": "1.0+local"}, "The use of local versions in '1.0+local' is not allowed."),
        (
            {"classifiers": ["Private :: Internal"]},
            "'Private :: Internal' is not a valid classifier.",
        ),
    ],
)
def test_private_profile_accepts_what_pypi_forbids(fields: dict[str, Any], error: str) -> None:
    assert first_error(form(**fields)).startswith(error)
    metadata_from_form(form(**fields), PRIVATE)


def test_private_profile_still_refuses_unknown_public_classifiers() -> None:
    data = form(classifiers=["Private :: Internal", "Bogus :: Classifier"])
    assert errors_of(data, PRIVATE) == [spec("'Bogus :: Classifier' is not a valid classifier.")]


def test_metadata_2_6_needs_the_setting() -> None:
    data = form(metadata_version="2.6")
    assert first_error(data) == spec("'2.6' is not a valid metadata version.")
    allowing = Policy.for_profile("pypi", max_metadata_version="2.6")
    assert metadata_from_form(data, allowing).metadata_version == "2.6"


@pytest.mark.parametrize(
    "email", ["ann@example.org", "Ann Example <ann@example.org>", "a.b+c@sub.example.co.uk"]
)
def test_valid_email_addresses(email: str) -> None:
    assert metadata_from_form(form(author_email=email), PYPI).author_email == email


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org",
        "http://example.org:8080/a/b?c=d&e=%20#frag",
        "https://[::1]/x",
        "https://user@example.org/~me/",
    ],
)
def test_valid_urls(url: str) -> None:
    assert metadata_from_form(form(home_page=url), PYPI).home_page == url


def test_all_errors_are_reported_together() -> None:
    errors = errors_of(
        form(
            version="1.0+local",
            summary="A" * 600,
            classifiers=["Bogus :: One"],
            home_page="nope",
            author_email="nope",
        )
    )
    assert errors == [
        f"The use of local versions in '1.0+local' is not allowed. See {LOCAL} for more information.",  # noqa: E501
        spec("'nope' is not a valid email address: An email address must have an @-sign."),
        spec("'Bogus :: One' is not a valid classifier."),
        spec("'nope' is not a valid url."),
        spec("'summary' field must be 512 characters or less."),
    ]


def test_the_first_error_is_the_one_pypi_reports() -> None:
    # PyPI stops at the first failing stage (standard rules before its own), and within a
    # stage reports Metadata-Version, Name, Version before other fields (alphabetically).
    errors = errors_of(
        form(
            version="1.0+local",  # PyPI's own rule
            classifiers=["Bogus :: One"],  # PyPI's own rule
            requires_python=">=x",  # standard rule
            requires_dist=["!!"],  # standard rule
        )
    )
    assert errors[0] == spec("'!!' is invalid for 'requires-dist'.")
    assert errors[1] == spec("'>=x' is invalid for 'requires-python'.")
    assert errors[2].startswith("The use of local versions")
    assert len(errors) == 4


def test_form_name_error_comes_first_and_is_not_repeated() -> None:
    errors = errors_of(form(name="foo-", metadata_version="9.9"))
    assert errors[0].startswith("'foo-' is an invalid value for Name.")
    assert errors[1:] == [spec("'9.9' is not a valid metadata version.")]
