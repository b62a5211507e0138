"""A token revoked between a request's authentication and its write acts no more.

The interleaving a race between `keyless token revoke` (or a publisher's removal) and a
request produces, forced: the request authenticated, then the token was revoked, then the use
case runs with the identity the request holds. The decision must be taken on the token as it
is inside the write transaction, not as it was when the request came in.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from keyless.config import TrustedPublishingSettings
from keyless.index.accounts import Accounts, Identity
from keyless.index.indexes import IndexAdmin
from keyless.index.projects import ProjectAdmin, ProjectError
from keyless.index.promote import PromoteRejected, Promotion
from keyless.index.publishers import Actor, Publishers
from keyless.store.db import open_database
from tests.conftest import LiveServer, make_project

REVOKED = "Invalid or non-existent authentication information."
PUBLISHER = {"owner": "octo-org", "repository": "commit-time", "workflow": "release.yml"}
TP = TrustedPublishingSettings()  # GitHub's own issuer is trusted by default


def acting(identity: Identity) -> Actor:
    """The actor a publisher route hands its use case for a request with `identity`."""
    return Actor(identity.username, identity.user_id, token=identity)


def publishers_on_prod(server: LiveServer) -> tuple[Publishers, int]:
    """The publishers use case on `server`'s database, and the id of its index 'prod'."""
    engine = open_database(server.database)
    return Publishers(engine, TP), IndexAdmin(engine).load_indexes()["prod"].id


def nothing_to_invalidate(index_id: int, project: str) -> None:
    """The use cases' page-cache hook; these tests read the database, not cached pages."""


def revoked_after_authenticating(
    server: LiveServer, user: str, index: str, projects: list[str] | None = None
) -> Identity:
    """The identity a request authenticated with a token revoked a moment later."""
    engine = open_database(server.database)
    new = Accounts(engine).create_token(server.user(user), index, projects=projects)
    identity = Accounts(engine).authenticate(new.token)
    Accounts(engine).revoke_token(new.id)
    return identity


def valid_identity(server: LiveServer, user: str, index: str) -> Identity:
    return Accounts(open_database(server.database)).authenticate(server.token(user, index))


def test_yank_and_status_refuse_a_token_revoked_after_authentication(
    server: LiveServer, http: httpx.Client
) -> None:
    make_project(server, http, "commit-time-admin")
    owner = "owner-commit-time-admin"
    admin = ProjectAdmin(open_database(server.database), nothing_to_invalidate)
    stale = revoked_after_authenticating(server, owner, "prod")
    acts: list[Callable[[], object]] = [
        lambda: admin.set_status(stale, "commit-time-admin", "archived"),
        lambda: admin.set_yanked(stale, "commit-time-admin", "0.0.1", yanked=True),
    ]
    for act in acts:
        with pytest.raises(ProjectError) as refused:
            act()
        assert (refused.value.status, refused.value.message) == (403, REVOKED)
    release = http.get("/prod/pypi/commit-time-admin/0.0.1/json").json()
    assert release["urls"][0]["yanked"] is False
    # The same owner with a live token may.
    assert admin.set_status(valid_identity(server, owner, "prod"), "commit-time-admin", "active")


def test_promote_refuses_a_token_revoked_after_authentication(
    server: LiveServer, http: httpx.Client
) -> None:
    make_project(server, http, "commit-time-promote", index="test")
    owner = "owner-commit-time-promote"
    engine = open_database(server.database)
    indexes = IndexAdmin(engine).load_indexes()
    promotion = Promotion(engine, server.blobs(), nothing_to_invalidate)
    stale = revoked_after_authenticating(server, owner, "prod")
    with pytest.raises(PromoteRejected) as refused:
        promotion.promote(indexes["test"], indexes["prod"], stale, "commit-time-promote", "0.0.1")
    assert (refused.value.status, refused.value.message) == (403, REVOKED)
    assert http.get("/prod/simple/commit-time-promote/").status_code == 404
    live = valid_identity(server, owner, "prod")
    promoted = promotion.promote(
        indexes["test"], indexes["prod"], live, "commit-time-promote", "0.0.1"
    )
    assert promoted.changed


def test_publisher_changes_refuse_a_token_revoked_after_authentication(
    server: LiveServer, http: httpx.Client
) -> None:
    make_project(server, http, "commit-time-publishers")
    owner = "owner-commit-time-publishers"
    publishers, prod = publishers_on_prod(server)
    stale = acting(revoked_after_authenticating(server, owner, "prod"))
    with pytest.raises(ProjectError) as refused:
        publishers.add_publisher(prod, ["commit-time-publishers"], "github", PUBLISHER, stale)
    assert (refused.value.status, refused.value.message) == (403, REVOKED)
    assert publishers.list_publishers(prod, "commit-time-publishers") == []

    live = acting(valid_identity(server, owner, "prod"))
    added = publishers.add_publisher(prod, ["commit-time-publishers"], "github", PUBLISHER, live)
    stale = acting(revoked_after_authenticating(server, owner, "prod"))
    with pytest.raises(ProjectError) as refused:
        publishers.remove_publisher(prod, added["id"], stale)
    assert (refused.value.status, refused.value.message) == (403, REVOKED)
    assert [p["id"] for p in publishers.list_publishers(prod, "commit-time-publishers")] == [
        added["id"]
    ]


def test_a_token_limited_to_other_projects_cannot_change_publishers(
    server: LiveServer, http: httpx.Client
) -> None:
    make_project(server, http, "commit-time-scoped")
    owner = "owner-commit-time-scoped"
    publishers, prod = publishers_on_prod(server)
    token = server.token(owner, "prod", projects=["something-else"])
    actor = acting(Accounts(open_database(server.database)).authenticate(token))
    with pytest.raises(ProjectError) as refused:
        publishers.add_publisher(prod, ["commit-time-scoped"], "github", PUBLISHER, actor)
    assert refused.value.status == 403
    assert "limited to: something-else" in refused.value.message
    assert publishers.list_publishers(prod, "commit-time-scoped") == []
