"""Issuers' signing keys kept in the database, so every server process shares one cache."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine, select

from keyless.store import db

FETCH_TIMEOUT = 10.0
MAX_DOCUMENT = 1024 * 1024


class DatabaseKeyStore:
    """The `KeyStore` of keyless.oidc.keys, on the `jwks_cache` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, issuer: str) -> tuple[dict[str, Any], float] | None:
        with db.reading(self.engine) as conn:
            row = conn.execute(
                select(db.jwks_cache).where(db.jwks_cache.c.issuer == issuer)
            ).first()
        return None if row is None else (row.jwks, row.fetched_at)

    def save(self, issuer: str, jwks: dict[str, Any], fetched_at: float) -> None:
        with db.writing(self.engine) as conn:
            conn.execute(db.jwks_cache.delete().where(db.jwks_cache.c.issuer == issuer))
            conn.execute(
                db.jwks_cache.insert().values(issuer=issuer, jwks=jwks, fetched_at=fetched_at)
            )


def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON object (an issuer's discovery document or JWKS); raises on any failure."""
    with httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True) as client:
        response = client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_DOCUMENT:
            raise ValueError(f"{url}: the document is larger than {MAX_DOCUMENT} bytes")
        document = response.json()
    if not isinstance(document, dict):
        raise ValueError(f"{url}: expected a JSON object")
    return document
