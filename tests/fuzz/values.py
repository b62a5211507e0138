"""Hostile values for hypothesis: the scalars that fill forms, metadata and JSON bodies.

Each keeps close to what a field holds (a name, a version, a requirement, a description) and
includes the shapes known to hurt: numbers with thousands of digits, deep nesting, text built
to make renderers work hard. Sizes are drawn often at the limits that matter (`lengths`).
"""

from __future__ import annotations

from hypothesis import strategies as st

# ----------------------------------------------------------------------------------- scalars


def lengths(most: int) -> st.SearchStrategy[int]:
    """Sizes up to `most`, with the limits that matter drawn often: 256 (python-multipart's
    boundary), 4,300 (digits Python turns into an int), and `most` itself."""
    marks = {64, 255, 256, 257, 1_000, 4_300, 4_301, 5_000, 20_000, 50_000, most}
    return st.one_of(st.integers(1, most), st.sampled_from(sorted(k for k in marks if k <= most)))


def repeated(units: list[str], most: int) -> st.SearchStrategy[str]:
    """`unit * n` for n up to `most`: the cheap way to long, pathological strings."""
    return st.builds(lambda unit, n: unit * n, st.sampled_from(units), lengths(most))


HOSTILE_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", " ", "\x00", "\r\n", "..", "../x", "/", "\\", "%00", "\ud7ff", "é" * 3]),
    repeated(["a", "9", "-", ".", "\x00", "é", "\n"], 5000),
)

PROJECT_NAMES = st.one_of(
    st.from_regex(r"fz[a-z0-9]{1,10}", fullmatch=True),
    st.from_regex(r"fz[a-z0-9._-]{0,20}[a-z0-9]", fullmatch=True),
    st.sampled_from(["requests", "os", "fz", "Fz-", "-fz", "fz..x", "ｆｚ", "fz\x00"]),
    HOSTILE_TEXT,
)

VERSIONS = st.one_of(
    st.sampled_from(
        ["1.0", "0.0.1", "1!2.0", "1.0.post1.dev2", "1.0rc1", "1.0+local", "v1.0", " 1.0 "]
    ),
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,6}){0,4}((a|b|rc)[0-9]{1,3})?", fullmatch=True),
    # Versions whose numbers have thousands of digits (Python refuses int() past 4,300).
    st.builds(
        lambda n, tail: "1." + "9" * n + tail,
        lengths(20_000),
        st.sampled_from(["", ".0", "rc1", ".post1"]),
    ),
    st.builds(lambda n: "9" * n + "!1.0", lengths(20_000)),
    st.builds(lambda n: ".".join(["1"] * n), lengths(5_000)),
    HOSTILE_TEXT,
)

METADATA_VERSIONS = st.one_of(
    st.sampled_from(["1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "3.0"]),
    st.sampled_from(["", "2", "2.4.1", "x", "2.4\x00"]),
    st.builds(lambda n: "2." + "4" * n, lengths(10_000)),
)

CLASSIFIERS = st.one_of(
    st.sampled_from(
        [
            "Programming Language :: Python :: 3",
            "License :: OSI Approved :: MIT License",
            "Development Status :: 5 - Production/Stable",
            "Private :: Do Not Upload",
            "Framework :: Django :: 9.9",
        ]
    ),
    HOSTILE_TEXT,
)

REQUIREMENTS = st.one_of(
    st.sampled_from(
        [
            "httpx>=0.27",
            "a[b,c]>=1; python_version >= '3.8'",
            "b @ https://example.com/b.whl",
            'c; extra == "test"',
            "d (>=1.0)",
            "e===1.0",
        ]
    ),
    # Deeply nested markers and long extras: parsers that recurse or backtrack.
    st.builds(lambda n: "a; " + "(" * n + "python_version > '3'" + ")" * n, lengths(5_000)),
    st.builds(lambda n: "a; " + " and ".join(["os_name == 'x'"] * n), lengths(3_000)),
    st.builds(lambda n: "a[" + ",".join(["x"] * n) + "]", lengths(5_000)),
    st.builds(lambda n: "a>=" + "1" * n, lengths(10_000)),
    HOSTILE_TEXT,
)

CONTENT_TYPES = st.sampled_from(
    [
        "text/markdown",
        "text/markdown; variant=GFM",
        "text/markdown; variant=CommonMark",
        "text/x-rst",
        "text/plain",
        "text/html",
        "text/markdown; charset=latin-1",
        "text/markdown; variant=nope",
        "",
        "junk/;;;=",
    ]
)


def _nested_list(n: int) -> str:
    return "\n".join("  " * i + "* x" for i in range(n)) + "\n"


def _nested_rst_list(n: int) -> str:
    return "\n\n".join("   " * i + "- x" for i in range(n)) + "\n"


DESCRIPTIONS = st.one_of(
    st.none(),
    st.text(max_size=2_000),
    # Shapes that make markdown and reStructuredText renderers work hard.
    repeated(
        [
            "> ",
            "* ",
            "[",
            "`",
            "*a",
            "_a",
            "<a>",
            "**",
            "![",
            "[a](",
            "\\",
            "|a| ",
            ".. ",
            ":a:`b` ",
            "=\n",
            "-\n",
            "::\n\n",
            "  ",
            "&#x",
            "<!--",
        ],
        50_000,
    ),
    st.builds(_nested_list, lengths(1_500)),
    st.builds(_nested_rst_list, lengths(1_200)),
    st.builds(lambda n: ">" * n + " x\n", lengths(50_000)),
    st.builds(lambda n: "[" * n + "a" + "](b)" * n, lengths(20_000)),
)


# Shapes each renderer is known to find hard, paired with that renderer's content type.
def large(most: int) -> st.SearchStrategy[int]:
    """Sizes where a trap springs: a renderer's cost grows with nesting, so small ones are
    plain text (drawn elsewhere) and these stay in the upper part of the range (which
    `st.integers` alone reaches rarely: it favours small numbers)."""
    return st.one_of(
        st.integers(most // 20, most), st.sampled_from([most // 10, most // 4, most // 2, most])
    )


# Shapes each renderer is known to find hard, paired with that renderer's content type.
MARKDOWN_TRAPS = st.one_of(
    st.builds(lambda n: "> " * n + "x\n", large(50_000)),  # nested block quotes
    st.builds(_nested_list, large(1_500)),
    st.builds(lambda n: "[" * n + "a" + "](b)" * n, large(20_000)),
    st.builds(lambda n: "*a " * n + "b*" * n, large(20_000)),
)
RST_TRAPS = st.one_of(
    st.builds(_nested_rst_list, large(1_200)),
    st.builds(lambda n: "".join(f"{' ' * i}x\n\n" for i in range(n)), large(1_200)),
    st.builds(lambda unit, n: unit * n, st.sampled_from(["|a| ", ":a:`b` ", "* "]), large(30_000)),
)
DESCRIPTION_CASES = st.one_of(
    st.tuples(DESCRIPTIONS.map(lambda d: d or ""), CONTENT_TYPES),
    st.tuples(MARKDOWN_TRAPS, st.sampled_from(["text/markdown", "text/markdown; variant=GFM"])),
    st.tuples(RST_TRAPS, st.sampled_from(["text/x-rst", ""])),  # "" renders as rst too
)


# ----------------------------------------------------------------------------------- JSON

# Half a UTF-16 pair: JSON can escape one ("\ud800"), UTF-8 cannot encode it.
LONE_SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.builds(lambda a, b: a + b, st.text(max_size=5), LONE_SURROGATES),
)

JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _nest(open_: str, close: str, n: int, core: str = "1") -> bytes:
    return (open_ * n + core + close * n).encode()


RAW_JSON_BODIES: st.SearchStrategy[bytes] = st.one_of(
    st.builds(lambda n: _nest("[", "]", n), lengths(30_000)),  # bodies stop at 64 KiB
    st.builds(lambda n: _nest('{"a":', "}", n), lengths(10_000)),
    st.builds(lambda n: _nest('{"token":[', "]}", n, '"x"'), lengths(5_000)),
    st.builds(lambda n: b'{"to": ' + b"1" * n + b"}", lengths(60_000)),
    st.builds(lambda n: b'{"token": 1e' + b"9" * n + b"}", lengths(5_000)),
    st.sampled_from(
        [b"", b"null", b"[]", b'"x"', b"NaN", b"{", b'{"token": "\\ud800"}', b"\xff\xfe", b"{}" * 3]
    ),
    st.binary(max_size=200),
)
