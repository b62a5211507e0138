"""JWTs and JSON request bodies for the token exchange and the owners' JSON APIs."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

from .values import HOSTILE_TEXT, JSON_VALUES, PROJECT_NAMES, RAW_JSON_BODIES

# ----------------------------------------------------------------------------------- JWTs


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_segment(value: Any) -> str:
    return b64url(json.dumps(value).encode())


JWT_HEADERS = st.fixed_dictionaries(
    {
        "alg": st.one_of(
            st.sampled_from(["RS256", "none", "HS256", "ES256", "PS256", ""]), JSON_VALUES
        )
    },
    optional={
        "kid": st.one_of(st.text(max_size=100), JSON_VALUES),
        "typ": st.sampled_from(["JWT", "at+jwt", ""]),
        "jku": st.sampled_from(["http://127.0.0.1:1/jwks", "file:///etc/passwd"]),
        "x5u": st.just("http://127.0.0.1:1/cert"),
        "crit": st.lists(st.text(max_size=10), max_size=3),
        "jwk": JSON_VALUES,
    },
)

CLAIM_NAMES = [
    "iss", "aud", "sub", "exp", "nbf", "iat", "jti", "repository", "repository_owner",
    "repository_owner_id", "repository_id", "workflow_ref", "job_workflow_ref", "ref",
    "ref_type", "environment", "event_name", "sha", "run_id", "run_attempt", "actor",
]  # fmt: skip

CLAIM_VALUES = st.one_of(
    JSON_VALUES,
    HOSTILE_TEXT,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(
        [
            "octo-org/demo",
            "octo-org/demo/.github/workflows/release.yml@refs/tags/v1.0.0",
            "refs/tags/v1.0.0",
            "keyless",
            "keyless-test",
            ["keyless", "other"],
            1e308,
            -1,
            0,
            2**63,
            2**64 + 1,
        ]
    ),
)


@st.composite
def mutated_claims(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A real job's claims with some replaced, dropped or added."""
    claims = dict(base)
    for name in draw(st.lists(st.sampled_from(CLAIM_NAMES), max_size=4, unique=True)):
        if draw(st.booleans()):
            claims[name] = draw(CLAIM_VALUES)
        else:
            claims.pop(name, None)
    claims.update(draw(st.dictionaries(st.text(max_size=12), CLAIM_VALUES, max_size=2)))
    return claims


@st.composite
def forged_jwts(draw: st.DrawFn, base_claims: dict[str, Any]) -> str:
    """Three base64url segments (or not quite): header, claims and a signature no key made."""
    header = _json_segment(draw(JWT_HEADERS))
    payload = _json_segment(draw(mutated_claims(base_claims)))
    signature = b64url(draw(st.binary(max_size=300)))
    segments = [header, payload, signature]
    mangle = draw(st.sampled_from(["none", "segments", "padding", "junk", "count"]))
    if mangle == "segments":
        index = draw(st.integers(0, 2))
        segments[index] = draw(st.one_of(st.text(max_size=50), st.just(b64url(b"\xff" * 9))))
    elif mangle == "padding":
        segments = [s + "==" for s in segments]
    elif mangle == "junk":
        segments[1] = b64url(draw(st.binary(max_size=100)))
    elif mangle == "count":
        segments = segments[: draw(st.integers(0, 2))] + ["x"] * draw(st.integers(0, 3))
    return ".".join(segments)


# ----------------------------------------------------------------------------------- JSON calls


def json_body(value: Any) -> bytes:
    """`value` as JSON text the way a careless client might send it (NaN and all)."""
    return json.dumps(value).encode()


CONFIG_KEYS = [
    "owner", "repository", "workflow", "environment", "ref", "namespace", "project",
    "workflow_filepath", "email", "sub", "issuer", "claims",
]  # fmt: skip

PUBLISHER_KINDS = st.one_of(
    st.sampled_from(["github", "gitlab", "google", "generic", "", "GitHub"]), HOSTILE_TEXT
)

PUBLISHER_CONFIGS = st.one_of(
    st.dictionaries(st.sampled_from(CONFIG_KEYS), HOSTILE_TEXT, max_size=6),
    st.dictionaries(
        st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=10)), JSON_VALUES, max_size=4
    ),
    st.just({"owner": "octo-org", "repository": "demo", "workflow": "release.yml"}),
    JSON_VALUES,
)

# The object each JSON endpoint reads, with its fields' values made hostile.
BODY_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    "none": st.none(),
    "token": st.fixed_dictionaries({"token": st.one_of(HOSTILE_TEXT, JSON_VALUES)}),
    "reason": st.fixed_dictionaries({}, optional={"reason": st.one_of(HOSTILE_TEXT, JSON_VALUES)}),
    "status": st.fixed_dictionaries(
        {
            "status": st.one_of(
                st.sampled_from(["active", "archived", "quarantined", "deprecated", ""]),
                JSON_VALUES,
            )
        },
        optional={"reason": st.one_of(HOSTILE_TEXT, JSON_VALUES)},
    ),
    "publisher": st.fixed_dictionaries({"kind": PUBLISHER_KINDS, "config": PUBLISHER_CONFIGS}),
    "pending": st.fixed_dictionaries(
        {
            "project": st.one_of(PROJECT_NAMES, JSON_VALUES),
            "kind": PUBLISHER_KINDS,
            "config": PUBLISHER_CONFIGS,
        }
    ),
    "promote": st.fixed_dictionaries(
        {
            "to": st.one_of(
                st.sampled_from(["prod", "test", "private", "tiny", "nowhere", ""]), JSON_VALUES
            )
        }
    ),
}


@st.composite
def json_bodies(draw: st.DrawFn, shape: str) -> bytes | None:
    """Mostly the endpoint's own shape with hostile values; else any JSON, or raw bytes."""
    choice = draw(st.integers(0, 9))
    if choice < 6:
        value = draw(BODY_SHAPES[shape])
        if isinstance(value, dict) and draw(st.integers(0, 3)) == 0:
            value.update(draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3)))
        return None if value is None else json_body(value)
    if choice < 8:
        return json_body(draw(JSON_VALUES))
    return draw(RAW_JSON_BODIES)


# Form fields that are core metadata, and the builders' name for each (tests/builders.FIELDS).
