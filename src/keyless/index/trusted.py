"""Trusted Publishing on the index: exchange a CI's OIDC token for a short-lived upload token.

The flow for one mint request:
1. read the token's issuer (unverified) and refuse issuers this server does not trust;
2. verify the signature and the standard claims against the issuer's keys and our audience;
3. find the publishers registered for the identity the token claims (its repository, project
   or subject) on the indexes this endpoint serves — never anyone else's;
4. keep those whose claim checks pass (none: say which claims failed and what was expected);
5. refuse a token used before (replay), pin claims on first use, turn a matching pending
   publisher into a project;
6. mint an API token whose scope is what those publishers are linked to, and audit it.

`TrustedPublishing.dry_run` answers "would this token be allowed to upload to project P?" with
the very same steps 1-5 (the same functions; it only reads), then the scope and the project's
status — minting, pinning, recording and auditing nothing. It speaks only of the publishers of
the token's own identity, as the mint does: of a project none of them names it says only that.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from packaging.utils import canonicalize_name
from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from keyless.config import TrustedPublishingSettings
from keyless.dists.errors import DistError
from keyless.dists.names import validate_project_name
from keyless.oidc.errors import TokenError
from keyless.oidc.keys import JWKSCache
from keyless.oidc.matching import Candidate, match_publishers
from keyless.oidc.providers import PROVIDERS
from keyless.oidc.verify import token_replay_key, unverified_claims, verify_token
from keyless.store import db

from .accounts import TOKEN_PREFIX, as_utc, hash_token, now
from .indexes import IndexInfo
from .projects import create_project, find_project, record_event


class NotAProjectName(ValueError):
    """The dry run was asked about a name no project can have (the question is malformed)."""


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires: int  # unix time
    projects: tuple[str, ...]


@dataclass(frozen=True)
class DryRunAnswer:
    """Whether a token would be allowed to upload to ``project`` on ``index``, and why not.

    Refused: ``code`` is the mint's PyPI error code (or ``project-archived`` /
    ``project-quarantined``, which the upload would refuse) and ``description`` its text.
    Allowed: ``publisher`` is the matching publisher of the project (its summary), and
    ``pending`` says the first publish creates the project.
    """

    allowed: bool
    index: str
    project: str
    code: str = ""
    description: str = ""
    publisher: str = ""
    pending: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The answer as the dry-run endpoint sends it."""
        errors = [{"code": self.code, "description": self.description}] if self.code else []
        answer: dict[str, Any] = {
            "allowed": self.allowed,
            "index": self.index,
            "project": self.project,
            "errors": errors,
        }
        if self.allowed:
            answer.update(publisher=self.publisher, pending=self.pending)
        return answer


@dataclass(frozen=True)
class _Verified:
    """A mint request's token once its issuer is trusted and its signature and claims hold."""

    token: str
    provider: Any
    kind: str
    issuer: str
    claims: dict[str, Any]


@dataclass(frozen=True)
class _Publisher:
    """A publisher of the token's identity, with what the dry run must know about it."""

    candidate: Candidate
    index_id: int
    projects: frozenset[str]  # normalized names of the linked projects
    pending: str | None  # the project a pending publisher would create, as registered
    expired: bool  # a pending publisher past its expiry: matches nothing

    def names(self) -> frozenset[str]:
        """The normalized projects a token it matched could upload to."""
        if self.pending:
            return self.projects | {canonicalize_name(self.pending)}
        return self.projects


@dataclass(frozen=True)
class RequestInfo:
    """Where a mint request came from, for the audit trail."""

    client_ip: str
    user_agent: str


# How long a used OIDC token is remembered at most (see `_refuse_replay`).
REPLAY_RECORD_CAP = timedelta(days=36500)


@dataclass
class TrustedPublishing:
    """The mint use case; dependencies passed in (engine, key cache, settings)."""

    engine: Engine
    keys: JWKSCache
    settings: TrustedPublishingSettings
    on_change: Callable[[int, str], None]

    def mint(
        self, token: object, audience: str, indexes: Sequence[IndexInfo], request: RequestInfo
    ) -> MintedToken:
        """Exchange an OIDC token; raises TokenError with PyPI's codes."""
        verified = self._verified(token, audience)
        provider, claims = verified.provider, verified.claims
        by_id = {index.id: index for index in indexes}
        with db.writing(self.engine) as conn:
            found = self._publishers(conn, verified, by_id)
            candidates = [p.candidate for p in found if not p.expired]
            # Raises, naming every failed claim of every candidate, when none matches.
            best, passing = match_publishers(candidates, claims)
            self._refuse_replay(conn, verified.token, claims)
            self._pin(conn, provider, passing, claims)
            created = [self._activate_pending(conn, candidate.id) for candidate in passing]
            minted = self._issue(conn, provider, best, passing, claims, request)
        for project in filter(None, created):
            self.on_change(*project)  # after the commit, so no page is rendered from before it
        return minted

    def dry_run(self, token: object, audience: str, index: IndexInfo, project: str) -> DryRunAnswer:
        """Would the mint for ``index`` accept ``token``, and its token upload to ``project``?

        Verifies and matches exactly as `mint` (same functions), then checks the scope and the
        project's status; reads only. Never raises for the token: a refusal is the answer.

        It answers for the index's own (PEP 807) mint endpoint, which `keyless publish` uses.
        The root endpoint (uv) serves every index of the host's audience at once; it differs
        only when a pending publisher of this identity on another index lost its project.
        """
        try:
            validate_project_name(project)
        except DistError:
            raise NotAProjectName(f"{project!r} is not a valid project name.") from None
        name = canonicalize_name(project)
        try:
            verified = self._verified(token, audience)
            provider, claims = verified.provider, verified.claims
            with db.reading(self.engine) as conn:
                found = self._publishers(conn, verified, {index.id: index})
                live = [p for p in found if not p.expired]
                mine = [p for p in found if name in p.names()]
                try:
                    _, passing = match_publishers([p.candidate for p in live], claims)
                except TokenError:
                    raise _not_for(provider, claims, index, project, mine) from None
                if self._used_before(conn, verified.token, claims):
                    raise _reused()
                by_id = {p.candidate.id: p for p in live}
                for candidate in passing:
                    pending = by_id[candidate.id].pending
                    if pending and find_project(conn, index.id, canonicalize_name(pending)):
                        raise _pending_taken(pending)
                for_project = [c for c in passing if name in by_id[c.id].names()]
                if not for_project:
                    raise _not_for(provider, claims, index, project, mine)
                row = find_project(conn, index.id, name)
        except TokenError as exc:
            return DryRunAnswer(False, index.name, project, exc.code, exc.description)
        if row is not None and row.status in ("archived", "quarantined"):
            # The mint would succeed; the upload would not (PEP 792).
            return DryRunAnswer(
                False,
                index.name,
                project,
                f"project-{row.status}",
                f"Project '{row.name}' is {row.status} on index '{index.name}' and accepts no "
                "new uploads; an owner can make it active again.",
            )
        best, _ = match_publishers(for_project, claims)  # the same choice as the mint's
        return DryRunAnswer(
            True,
            index.name,
            project,
            publisher=provider.summary(best.config),
            pending=row is None,
        )

    def _verified(self, token: object, audience: str) -> _Verified:
        """Steps 1-2: the token's issuer is trusted, its signature and claims hold."""
        if not self.settings.enabled:
            raise TokenError("not-enabled", "Trusted publishing is not enabled on this server.")
        if not isinstance(token, str) or not token:
            raise TokenError(
                "invalid-payload", 'The request body must be JSON: {"token": "<OIDC token>"}.'
            )
        issuer = str(unverified_claims(token)["iss"])
        kind = self.settings.trusted_issuers().get(issuer.rstrip("/"))
        if kind is None:
            raise TokenError(
                "invalid-payload",
                f"This server does not trust tokens from the issuer {issuer!r}. An admin can "
                "add it to [trusted-publishing.issuers] in the server settings.",
            )
        claims = verify_token(token, issuer=issuer, audience=audience, keys=self.keys)
        return _Verified(token, PROVIDERS[kind], kind, issuer, claims)

    def _publishers(
        self, conn: Connection, verified: _Verified, indexes: dict[int, IndexInfo]
    ) -> list[_Publisher]:
        """Step 3: the publishers of the token's identity on these indexes (only those)."""
        provider, kind = verified.provider, verified.kind
        keys = provider.lookup_keys_from_claims(verified.issuer, verified.claims)
        if not keys:
            raise TokenError(
                "invalid-publisher",
                f"The token lacks the claims a {provider.title} publisher is identified by.",
            )
        rows = conn.execute(
            select(db.publishers).where(
                db.publishers.c.lookup_key.in_(keys),
                db.publishers.c.kind == kind,
                db.publishers.c.index_id.in_(list(indexes)),
            )
        ).all()
        moment = now()
        found = []
        for row in rows:
            linked = self._linked(conn, row.id)
            project = row.pending_project or ", ".join(linked) or "?"
            found.append(
                _Publisher(
                    candidate=Candidate(
                        id=row.id,
                        kind=row.kind,
                        config=row.config,
                        pinned=row.pinned,
                        label=(
                            f"the publisher for '{project}' on index '{indexes[row.index_id].name}'"
                        ),
                    ),
                    index_id=row.index_id,
                    projects=frozenset(canonicalize_name(n) for n in linked),
                    pending=row.pending_project or None,
                    # An expired pending publisher reserves nothing and matches nothing.
                    expired=bool(
                        row.pending_project and row.expires and as_utc(row.expires) < moment
                    ),
                )
            )
        return found

    def _linked(self, conn: Connection, publisher_id: int) -> list[str]:
        return list(
            conn.execute(
                select(db.projects.c.name)
                .join(db.publisher_projects, db.publisher_projects.c.project_id == db.projects.c.id)
                .where(db.publisher_projects.c.publisher_id == publisher_id)
                .order_by(db.projects.c.name)
            ).scalars()
        )

    def _refuse_replay(self, conn: Connection, token: str, claims: dict[str, Any]) -> None:
        moment = now()
        conn.execute(delete(db.used_oidc_tokens).where(db.used_oidc_tokens.c.expires < moment))
        # Kept until the token expires (a minute's grace for clock skew). A signed `exp` can be
        # absurdly far away: capped at a century, which still outlives any use of the token.
        remaining = max(0.0, float(claims["exp"]) - moment.timestamp()) + 60
        expires = moment + timedelta(seconds=min(remaining, REPLAY_RECORD_CAP.total_seconds()))
        try:
            with conn.begin_nested():
                conn.execute(
                    db.used_oidc_tokens.insert().values(
                        key=token_replay_key(token, claims), expires=expires
                    )
                )
        except IntegrityError:
            raise _reused() from None

    def _used_before(self, conn: Connection, token: str, claims: dict[str, Any]) -> bool:
        """What `_refuse_replay` would find, without recording the token."""
        return (
            conn.execute(
                select(db.used_oidc_tokens.c.key).where(
                    db.used_oidc_tokens.c.key == token_replay_key(token, claims),
                    db.used_oidc_tokens.c.expires >= now(),
                )
            ).first()
            is not None
        )

    def _pin(
        self, conn: Connection, provider: Any, passing: list[Candidate], claims: dict[str, Any]
    ) -> None:
        for candidate in passing:
            pins = provider.pins(claims, candidate.config)
            missing = {k: v for k, v in pins.items() if k not in candidate.pinned}
            if missing:
                conn.execute(
                    update(db.publishers)
                    .where(db.publishers.c.id == candidate.id)
                    .values(pinned={**candidate.pinned, **missing})
                )

    def _activate_pending(self, conn: Connection, publisher_id: int) -> tuple[int, str] | None:
        """Create the project of a pending publisher; returns (index id, project) if it did."""
        row = conn.execute(select(db.publishers).where(db.publishers.c.id == publisher_id)).one()
        if not row.pending_project:
            return None
        name = canonicalize_name(row.pending_project)
        if find_project(conn, row.index_id, name):
            raise _pending_taken(row.pending_project)
        project_id = create_project(conn, row.index_id, row.pending_project, row.created_by)
        conn.execute(
            db.publisher_projects.insert().values(publisher_id=row.id, project_id=project_id)
        )
        conn.execute(
            update(db.publishers)
            .where(db.publishers.c.id == row.id)
            .values(pending_project=None, expires=None)
        )
        record_event(
            conn,
            row.index_id,
            name,
            "create_project_from_pending_publisher",
            "trusted publisher",
            {"publisher_id": row.id},
        )
        return row.index_id, name

    def _issue(
        self,
        conn: Connection,
        provider: Any,
        best: Candidate,
        passing: list[Candidate],
        claims: dict[str, Any],
        request: RequestInfo,
    ) -> MintedToken:
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        moment = now()
        expires = moment + timedelta(seconds=self.settings.token_lifetime)
        token_id = db.inserted_id(
            conn,
            db.api_tokens.insert().values(
                token_hash=hash_token(secret),
                kind="trusted",
                user_id=None,
                index_id=None,
                projects=None,
                description=f"trusted publisher: {provider.summary(best.config)}",
                created=moment,
                expires=expires,
            ),
        )
        for candidate in passing:
            conn.execute(
                db.token_publishers.insert().values(token_id=token_id, publisher_id=candidate.id)
            )
        linked = conn.execute(
            select(db.projects.c.index_id, db.projects.c.normalized_name)
            .join(db.publisher_projects, db.publisher_projects.c.project_id == db.projects.c.id)
            .where(db.publisher_projects.c.publisher_id.in_([c.id for c in passing]))
        ).all()
        details = {
            **provider.describe(claims),
            "publisher_ids": [c.id for c in passing],
            "publisher": provider.summary(best.config),
            "token_id": token_id,
            "expires": int(expires.timestamp()),
            "client_ip": request.client_ip,
            "user_agent": request.user_agent[:300],
        }
        for index_id, project in linked:
            record_event(
                conn,
                index_id,
                project,
                "mint_token",
                "trusted publisher",
                details,
                changes_project=False,
            )
        return MintedToken(
            token=secret,
            expires=int(expires.timestamp()),
            projects=tuple(sorted({project for _, project in linked})),
        )


# ------------------------------------------------------------- refusals shared by mint and dry run


def _reused() -> TokenError:
    return TokenError(
        "invalid-reuse-token",
        "This OIDC token was already exchanged; request a fresh one from the CI.",
    )


def _pending_taken(project: str) -> TokenError:
    return TokenError(
        "invalid-pending-publisher",
        f"The project '{project}' was created by someone else after this pending publisher "
        "was registered; ask its owners to add the publisher.",
    )


def _not_for(
    provider: Any,
    claims: dict[str, Any],
    index: IndexInfo,
    project: str,
    mine: list[_Publisher],
) -> TokenError:
    """Why the token may not upload to ``project``, from the project's publishers of the
    token's own identity (``mine``) only: of any other publisher of the project, nothing."""
    live = [p.candidate for p in mine if not p.expired]
    if live:
        try:
            match_publishers(live, claims)
        except TokenError as exc:
            return exc
    if any(p.expired for p in mine):
        return TokenError(
            "invalid-publisher",
            f"valid token, but the pending publisher for '{project}' on index '{index.name}' "
            "that names it has expired; register it again.",
        )
    return TokenError(
        "invalid-publisher",
        f"valid token, but no publisher of '{project}' on index '{index.name}' trusts "
        f"{provider.identity(claims)}; {provider.registration_hint(claims)}",
    )
