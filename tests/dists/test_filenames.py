from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.tags import Tag
from packaging.utils import canonicalize_name
from packaging.version import Version

from keyless.dists import (
    DistError,
    Policy,
    check_filename_matches_project,
    check_filename_safe,
    parse_dist_filename,
)

PYPI = Policy.for_profile("pypi")
PRIVATE = Policy.for_profile("private")
CONTROL = "Cannot upload a file with non-printable characters (ordinals 0-31) or the DEL character (ordinal 127) in the name."  # noqa: E501
SEPARATOR = "Cannot upload a file with '/' or '\\' in the name."
USE_EXTENSION = (
    "Invalid file extension: Use .tar.gz or .whl extension. "
    "See https://www.python.org/dev/peps/pep-0527 and https://peps.python.org/pep-0715/ "
    "for more information"
)


def wrong_extension(extension: str, filetype: str) -> str:
    return (
        f"Invalid file extension: Extension {extension} is invalid for filetype {filetype}. "
        "See https://www.python.org/dev/peps/pep-0527 for more information."
    )


def raises(call: object, *args: object) -> str:
    with pytest.raises(DistError) as exc:
        call(*args)  # type: ignore[operator]
    return exc.value.message


# --------------------------------------------------------------------------------- safety


@pytest.mark.parametrize(
    ("filename", "filetype"),
    [("demo-1.0-py3-none-any.whl", "bdist_wheel"), ("demo-1.0.tar.gz", "sdist")],
)
def test_safe_filenames_pass(filename: str, filetype: str) -> None:
    check_filename_safe(filename, filetype)


@pytest.mark.parametrize("char", [*map(chr, range(32)), chr(127)])
def test_control_characters_are_refused(char: str) -> None:
    assert raises(check_filename_safe, f"demo{char}-1.0.tar.gz", "sdist") == CONTROL


@pytest.mark.parametrize(
    "filename", ["../demo-1.0.tar.gz", "a/demo-1.0.tar.gz", "a\\demo-1.0.tar.gz"]
)
def test_path_separators_are_refused(filename: str) -> None:
    assert raises(check_filename_safe, filename, "sdist") == SEPARATOR


def test_control_characters_are_reported_before_separators() -> None:
    assert raises(check_filename_safe, "a/\x00demo-1.0.tar.gz", "sdist") == CONTROL


def test_separators_are_reported_before_the_extension() -> None:
    assert raises(check_filename_safe, "a/demo.exe", "sdist") == SEPARATOR


@pytest.mark.parametrize(
    ("filename", "filetype", "extension"),
    [
        ("demo-1.0.zip", "sdist", ".zip"),  # PyPI still takes .zip sdists; keyless does not
        ("demo-1.0-py3-none-any.whl", "sdist", ".whl"),
        ("demo-1.0.tar.gz", "bdist_wheel", ".tar.gz"),
        ("demo-1.0.zip", "bdist_wheel", ".zip"),
        ("demo-1.0-py3-none-any.WHL", "bdist_wheel", ".WHL"),
        ("demo-1.0.TAR.GZ", "sdist", ".TAR.GZ"),
    ],
)
def test_extension_must_match_filetype(filename: str, filetype: str, extension: str) -> None:
    assert raises(check_filename_safe, filename, filetype) == wrong_extension(extension, filetype)


@pytest.mark.parametrize(
    "filename", ["demo-1.0.egg", "demo-1.0.exe", "demo-1.0.tar.bz2", "demo-1.0.tgz", ".whl", "demo"]
)
def test_unknown_extensions_are_refused(filename: str) -> None:
    assert raises(check_filename_safe, filename, "sdist") == USE_EXTENSION


@pytest.mark.parametrize("filetype", ["bdist_egg", "bdist_wininst", "", "wheel"])
def test_unknown_filetype_is_refused(filetype: str) -> None:
    message = raises(check_filename_safe, "demo-1.0.tar.gz", filetype)
    assert message == "Invalid value for filetype. Error: Use a known file type."


# -------------------------------------------------------------------------------- parsing


def test_parse_wheel_filename() -> None:
    dist = parse_dist_filename("Demo_Pkg-1.0.0-1-cp312-cp312-manylinux_2_17_x86_64.whl", PYPI)
    assert dist.packagetype == "bdist_wheel"
    assert dist.name == "demo-pkg"
    assert dist.version == Version("1.0.0")
    assert dist.tags == frozenset({Tag("cp312", "cp312", "manylinux_2_17_x86_64")})


def test_parse_wheel_with_compressed_tag_set() -> None:
    dist = parse_dist_filename("demo-1.0-py2.py3-none-any.whl", PYPI)
    assert dist.tags == {Tag("py2", "none", "any"), Tag("py3", "none", "any")}


def test_parse_sdist_filename() -> None:
    dist = parse_dist_filename("demo_pkg-2.0rc1.tar.gz", PYPI)
    assert (dist.packagetype, dist.name, dist.version, dist.tags) == (
        "sdist",
        "demo-pkg",
        Version("2.0rc1"),
        frozenset(),
    )


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("foo-1.0.whl", "Invalid wheel filename (wrong number of parts): 'foo-1.0'"),
        ("foo-1.0-q-py3-none-any.whl", "Invalid build number: q in 'foo-1.0-q-py3-none-any'"),
        (
            "foo-0.0.4test1-py3-none-any.whl",
            "Invalid wheel filename (invalid version): 'foo-0.0.4test1-py3-none-any'",
        ),
        ("something.tar.gz", "Invalid source distribution filename: something.tar.gz"),
        ("foo-notaversion.tar.gz", "Invalid source distribution filename: foo-notaversion.tar.gz"),
        ("demo-1.0.egg", USE_EXTENSION),
        ("demo\x00-1.0.tar.gz", CONTROL),
    ],
)
def test_invalid_filenames_get_pypis_texts(filename: str, message: str) -> None:
    assert raises(parse_dist_filename, filename, PYPI) == message


HUGE = "1" * 5000  # Python's int() refuses more than 4300 digits


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        (f"demo-{HUGE}-py3-none-any.whl", "wheel"),
        (f"demo-1.0-{HUGE}-py3-none-any.whl", "wheel"),  # the build tag is an int too
        (f"demo-{HUGE}.tar.gz", "source distribution"),
    ],
)
def test_a_number_too_long_for_int_is_an_invalid_filename(filename: str, kind: str) -> None:
    message = raises(parse_dist_filename, filename, PYPI)
    assert message.startswith(f"Invalid {kind} filename (a number in it has more than 4300 digits)")
    assert len(message) < 200  # the filename is abbreviated, not repeated whole


@pytest.mark.parametrize("platform", ["linux_x86_64", "linux_aarch64", "macosx_11_1_arm64"])
def test_pypi_profile_refuses_unsupported_platform_tags(platform: str) -> None:
    filename = f"demo-1.0-cp312-cp312-{platform}.whl"
    assert raises(parse_dist_filename, filename, PYPI) == (
        f"Binary wheel '{filename}' has an unsupported platform tag '{platform}'."
    )
    assert parse_dist_filename(filename, PRIVATE).tags == {Tag("cp312", "cp312", platform)}


def test_every_platform_of_a_compressed_tag_set_is_checked() -> None:
    filename = "demo-1.0-py3-none-manylinux_2_17_x86_64.linux_x86_64.whl"
    assert "unsupported platform tag 'linux_x86_64'" in raises(parse_dist_filename, filename, PYPI)


# ------------------------------------------------------------------- filename vs. project


def matches(filename: str, project: str, version: str) -> None:
    check_filename_matches_project(
        parse_dist_filename(filename, PRIVATE), project, Version(version)
    )


@pytest.mark.parametrize(
    ("filename", "project", "version"),
    [
        ("demo-1.0.tar.gz", "demo", "1.0"),
        ("demo_pkg-1.0.tar.gz", "Demo.Pkg", "1.0"),
        ("demo_pkg-1.0-py3-none-any.whl", "demo-pkg", "1.0"),
        ("demo-1.0-py3-none-any.whl", "demo", "1.0.0"),  # PEP 440 equal versions
        ("demo-1.0.post1.tar.gz", "demo", "1.0.post1"),
    ],
)
def test_matching_filenames_pass(filename: str, project: str, version: str) -> None:
    matches(filename, project, version)


@pytest.mark.parametrize(
    ("filename", "project", "version", "message"),
    [
        ("other-1.0.tar.gz", "demo", "1.0", "Start filename for 'demo' with 'demo'."),
        ("demox-1.0.tar.gz", "demo-pkg", "1.0", "Start filename for 'demo-pkg' with 'demo_pkg'."),
        (
            "wutang-6.6.6.tar.gz",
            "wutang",
            "1.2.3",
            "Filename 'wutang-6.6.6.tar.gz' is invalid, should be 'wutang-1.2.3.tar.gz'.",
        ),
        (
            "Demo.Pkg-1.0.tar.gz",
            "demo-pkg",
            "1.0",
            "Filename 'Demo.Pkg-1.0.tar.gz' is invalid, should be 'demo_pkg-1.0.tar.gz'.",
        ),
        (
            "demo-1.0.0.tar.gz",
            "demo",
            "1.0",
            "Filename 'demo-1.0.0.tar.gz' is invalid, should be 'demo-1.0.tar.gz'.",
        ),
        (
            # A legacy '-' post release: the name still matches, the spelling does not.
            "demo-1.0-1.tar.gz",
            "demo",
            "1.0.post1",
            "Filename 'demo-1.0-1.tar.gz' is invalid, should be 'demo-1.0.post1.tar.gz'.",
        ),
        ("other-1.0-py3-none-any.whl", "demo", "1.0", "Start filename for 'demo' with 'demo'."),
        (
            "Demo-1.0-py3-none-any.whl",
            "demo",
            "1.0",
            "Filename 'Demo-1.0-py3-none-any.whl' should contain the normalized project name "
            "'demo', not 'Demo'.",
        ),
        (
            "demo.pkg-1.0-py3-none-any.whl",
            "demo-pkg",
            "1.0",
            "Filename 'demo.pkg-1.0-py3-none-any.whl' should contain the normalized project name "
            "'demo_pkg', not 'demo.pkg'.",
        ),
        (
            "wutang-6.6.6-py3-none-any.whl",
            "wutang",
            "1.2.3",
            "Version in filename should be '1.2.3' not '6.6.6'.",
        ),
    ],
)
def test_mismatching_filenames_get_pypis_texts(
    filename: str, project: str, version: str, message: str
) -> None:
    with pytest.raises(DistError) as exc:
        matches(filename, project, version)
    assert exc.value.message == message


# ------------------------------------------------------------------------ round trips

names = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?\Z")
versions = st.builds(
    lambda epoch, release, pre, post, dev: Version(
        f"{epoch}!" * bool(epoch)
        + ".".join(map(str, release))
        + (f"{pre[0]}{pre[1]}" if pre else "")
        + (f".post{post}" if post is not None else "")
        + (f".dev{dev}" if dev is not None else "")
    ),
    st.integers(0, 3),
    st.lists(st.integers(0, 2000), min_size=1, max_size=4),
    st.none() | st.tuples(st.sampled_from(["a", "b", "rc"]), st.integers(0, 20)),
    st.none() | st.integers(0, 20),
    st.none() | st.integers(0, 20),
)
tags = st.sampled_from(
    [
        "py3-none-any",
        "py2.py3-none-any",
        "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64",
        "cp313-abi3-win_amd64",
        "cp311-cp311-macosx_11_0_arm64",
        "cp312-cp312-musllinux_1_2_aarch64",
    ]
)


@given(names, versions, tags, st.none() | st.integers(0, 99))
def test_wheel_filenames_round_trip(
    name: str, version: Version, tag: str, build: int | None
) -> None:
    escaped = canonicalize_name(name).replace("-", "_")
    filename = f"{escaped}-{version}{'' if build is None else f'-{build}'}-{tag}.whl"
    check_filename_safe(filename, "bdist_wheel")
    dist = parse_dist_filename(filename, PYPI)
    assert (dist.filename, dist.packagetype) == (filename, "bdist_wheel")
    assert dist.name == canonicalize_name(name)
    assert dist.version == version
    assert {t.platform for t in dist.tags} == set(tag.split("-")[2].split("."))
    check_filename_matches_project(dist, name, version)


@given(names, versions)
def test_sdist_filenames_round_trip(name: str, version: Version) -> None:
    filename = f"{canonicalize_name(name).replace('-', '_')}-{version}.tar.gz"
    check_filename_safe(filename, "sdist")
    dist = parse_dist_filename(filename, PYPI)
    assert (dist.packagetype, dist.name, dist.version) == (
        "sdist",
        canonicalize_name(name),
        version,
    )
    check_filename_matches_project(dist, name, version)


@given(names, versions, versions)
def test_a_different_version_never_matches(name: str, version: Version, other: Version) -> None:
    filename = f"{canonicalize_name(name).replace('-', '_')}-{version}.tar.gz"
    dist = parse_dist_filename(filename, PYPI)
    if str(other) != str(version):
        with pytest.raises(DistError):
            check_filename_matches_project(dist, name, other)
