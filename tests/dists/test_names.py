from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyless.dists import DistError, normalize_name, ultranormalize_name, validate_project_name

SPEC = "https://packaging.python.org/specifications/core-metadata"
RULE = "Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'."


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("Django", "django"),
        ("zope.interface", "zope-interface"),
        ("Foo__Bar--baz..QUX", "foo-bar-baz-qux"),
        ("a-_.b", "a-b"),
    ],
)
def test_normalize_name_is_pep_503(name: str, normalized: str) -> None:
    assert normalize_name(name) == normalized


@pytest.mark.parametrize("name", ["a", "A1", "requests", "zope.interface", "a_b-c.d", "0x"])
def test_valid_project_names(name: str) -> None:
    validate_project_name(name)


@pytest.mark.parametrize(
    "name", ["foo-", "-foo", ".foo", "foo_", "fo o", "föö", "foo!", "foo\n", "a/b", "_"]
)
def test_invalid_project_names_get_pypis_form_text(name: str) -> None:
    with pytest.raises(DistError) as exc:
        validate_project_name(name)
    assert exc.value.message == (
        f"{name!r} is an invalid value for Name. Error: {RULE} See {SPEC} for more information."
    )


def test_empty_project_name_is_required() -> None:
    with pytest.raises(DistError) as exc:
        validate_project_name("")
    assert exc.value.message == (
        "'' is an invalid value for Name. Error: This field is required. "
        f"See {SPEC} for more information."
    )


def test_long_invalid_name_is_abbreviated_like_pypi() -> None:
    name = "a" * 40 + "!" + "b" * 40
    with pytest.raises(DistError) as exc:
        validate_project_name(name)
    assert exc.value.message.startswith(f"'{'a' * 30}...{'b' * 30}' is an invalid value for Name.")


@pytest.mark.parametrize(
    "similar",
    ["toast1ng", "toastlng", "t0asting", "toast-ing", "toast.ing", "toast_ing", "TOASTING"],
)
def test_ultranormalize_catches_pypis_confusables(similar: str) -> None:
    assert ultranormalize_name(similar) == ultranormalize_name("toasting") == "t0ast1ng"


def test_ultranormalize_keeps_distinct_names_distinct() -> None:
    assert ultranormalize_name("toasting") != ultranormalize_name("roasting")


@given(st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?\Z"))
def test_every_name_matching_the_rule_is_valid_and_normalizes_idempotently(name: str) -> None:
    validate_project_name(name)
    assert normalize_name(normalize_name(name)) == normalize_name(name)
    assert ultranormalize_name(name) == ultranormalize_name(normalize_name(name))
