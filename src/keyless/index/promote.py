"""The promote use case: put a release of one index on another, same bytes, same hashes.

Blobs are content-addressed, so promoting copies no bytes: the target gets new `files` rows
that point at the same sha256 (and the same PEP 658 metadata blob), and the release and the
project are created there if missing. Everything the upload path enforces on the target
still holds — permissions, archived/quarantined projects, "File already exists", the filename
log, one sdist per release, closed releases, size limits and, when the target's policy differs
from the source's, its filename and metadata rules — so a promoted file is one that could have
been uploaded there.

Authorization (the choice, and why):
- a **user API token** must be a token for the TARGET index (a token acts on one index, and
  the write happens on the target), may touch the project there (its project limit), and its
  user must be an **owner** of the project on the target (or the project is created, with the
  caller as owner) AND an owner of the project on the source. Owners, not maintainers: promote
  moves a whole release between trust boundaries, which is an owner's decision.
- a **trusted-publisher token** (minted from a CI's OIDC token) must have the target (index,
  project) in its scope. Nothing is required of the source: its files are public (anyone can
  download them and upload them to the target with that very token), so asking for a source
  scope too would add no protection, and a token minted at one index's PEP 807 endpoint would
  otherwise be unable to promote. As with uploads, such a token cannot create a project.

Idempotent: a file already on the target with the same bytes is reported as `existing`; a
repeated promote changes nothing (no journal rows, no serial bump).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from keyless.dists import archives, filenames, metadata
from keyless.dists.errors import DistError
from keyless.dists.versions import canonical_version, not_a_version
from keyless.store import db
from keyless.store.blobs import BlobStore

from .accounts import Identity, InvalidCredentials, current_identity
from .errors import Refused
from .indexes import IndexInfo
from .projects import find_project, role_of
from .releases import (
    GIB,
    HELP,
    Event,
    NewFile,
    NewRelease,
    Target,
    add_files,
    already_exists,
    closed_release,
    file_too_large,
    new_project_name_problem,
    size_text,
    taken,
)


class PromoteRejected(Refused):
    """The promotion is refused."""


@dataclass(frozen=True)
class PromotedFile:
    filename: str
    sha256: str
    size: int
    status: str  # "promoted" (new on the target) | "existing" (the same bytes were there)


@dataclass(frozen=True)
class PromoteOutcome:
    project: str
    version: str
    source: str
    target: str
    files: list[PromotedFile]
    created_project: bool = False

    @property
    def changed(self) -> bool:
        return any(f.status == "promoted" for f in self.files)

    def as_json(self, file_url: Callable[[str, str], str]) -> dict[str, Any]:
        """The API's answer; `file_url(sha256, filename)` makes each download URL."""
        return {
            "project": self.project,
            "version": self.version,
            "from": self.source,
            "to": self.target,
            "created_project": self.created_project,
            "changed": self.changed,
            "files": [
                {
                    "filename": f.filename,
                    "sha256": f.sha256,
                    "size": f.size,
                    "status": f.status,
                    "url": file_url(f.sha256, f.filename),
                }
                for f in self.files
            ],
        }


@dataclass(frozen=True)
class _Asked:
    """What a promotion request names: the two indexes, the project and the version."""

    source: IndexInfo
    target: IndexInfo
    name: NormalizedName  # the project's normalized name
    shown: str  # the project as the request spells it, for messages
    version: str  # as asked, for messages
    canonical: str  # its PEP 440 canonical form, which finds the release


@dataclass
class _Plan:
    """What one promotion would do, decided inside one transaction."""

    source_project: Any
    release: Any
    files: list[Any]  # source `files` rows
    target_project: Any | None
    new: list[Any] = field(default_factory=list)  # source rows to add to the target
    existing: list[Any] = field(default_factory=list)  # already on the target, same bytes


def _release(conn: Connection, project_id: int, canonical: str) -> Any:
    return conn.execute(
        select(db.releases).where(
            db.releases.c.project_id == project_id, db.releases.c.canonical_version == canonical
        )
    ).first()


@dataclass
class Promotion:
    """Dependencies of the promote use case, passed in (no globals)."""

    engine: Engine
    blobs: BlobStore
    on_change: Callable[[int, str], None]  # (index id, normalized project) -> invalidate caches

    def promote(
        self,
        source: IndexInfo,
        target: IndexInfo,
        identity: Identity,
        project: str,
        version: str,
    ) -> PromoteOutcome:
        """Put every file of `project` `version` on `source` onto `target` as well.

        Raises PromoteRejected: 400 for a bad request (same index, invalid version, a file name
        taken by other bytes, a policy the target enforces), 403 when the identity may not
        promote or the target project takes no files, 404 for an unknown project or release.
        """
        if source.id == target.id:
            raise PromoteRejected(
                f"The release is already on index {source.name!r}: name another index as 'to'."
            )
        try:
            canonical = canonical_version(version)
        except InvalidVersion:
            raise PromoteRejected(not_a_version(version)) from None
        asked = _Asked(source, target, canonicalize_name(project), project, version, canonical)
        self._check_token(identity, target, asked.name)  # early, on the request's snapshot
        try:
            return self._promote(asked, identity)
        except IntegrityError:
            # Someone stored one of these filenames on the target between our checks and our
            # commit (an upload or a concurrent promote): decide again from what is there now.
            return self._promote(asked, identity)

    def _promote(self, asked: _Asked, identity: Identity) -> PromoteOutcome:
        source, target, name = asked.source, asked.target, asked.name
        with db.writing(self.engine) as conn:
            # Decided again where it holds at commit (one writing transaction at a time): the
            # token may have been revoked, or its publisher removed, since the request began.
            try:
                identity = current_identity(conn, identity)
            except InvalidCredentials as exc:
                raise PromoteRejected(exc.reason, status=403) from None
            self._check_token(identity, target, name)
            plan = self._plan(conn, asked, identity)
            created_project = False
            if plan.new:
                created_project = self._apply(conn, source, target, identity, name, plan)
        if plan.new:
            # After the commit, so no page is rendered from before it.
            self.on_change(target.id, name)
        by_filename = {row.filename for row in plan.new}
        return PromoteOutcome(
            project=plan.source_project.name,
            version=plan.release.version,
            source=source.name,
            target=target.name,
            files=[
                PromotedFile(
                    row.filename,
                    row.sha256,
                    row.size,
                    "promoted" if row.filename in by_filename else "existing",
                )
                for row in plan.files
            ],
            created_project=created_project,
        )

    # ------------------------------------------------------------------ checks

    def _check_token(self, identity: Identity, target: IndexInfo, name: NormalizedName) -> None:
        if identity.is_trusted_publisher:
            if not identity.may_touch(target.id, name):
                linked = sorted(p for i, p in identity.scopes if i == target.id)
                raise PromoteRejected(
                    f"The given token isn't allowed to promote to project {name!r} on index "
                    f"{target.name!r}. It was minted for a trusted publisher linked to: "
                    f"{', '.join(linked) or 'no project'} on that index. Register a publisher "
                    f"for {name!r} on {target.name!r} (or use a token minted for the target "
                    "index).",
                    status=403,
                )
            return
        if identity.index_id != target.id:
            raise PromoteRejected(
                f"Promoting to index {target.name!r} needs an API token for {target.name!r} "
                "(the target); this token is for another index. The token's user must own the "
                "project on both indexes.",
                status=403,
            )
        if not identity.may_touch(target.id, name):
            scope = ", ".join(sorted(identity.projects or ()))
            raise PromoteRejected(
                f"This API token is limited to: {scope}; it may not promote {name!r}.",
                status=403,
            )

    def _check_owner(self, conn: Connection, identity: Identity, project: Any, index: str) -> None:
        if identity.user_id is None:
            return
        if role_of(conn, project.id, identity.user_id) != "owner":
            raise PromoteRejected(
                f"The user '{identity.username}' is not an owner of project "
                f"'{project.name}' on index {index!r}; promoting needs an owner of the project "
                "on both indexes.",
                status=403,
            )

    def _plan(self, conn: Connection, asked: _Asked, identity: Identity) -> _Plan:
        source, target, name, shown = asked.source, asked.target, asked.name, asked.shown
        version, canonical = asked.version, asked.canonical
        source_project = find_project(conn, source.id, name)
        if source_project is None:
            raise PromoteRejected(f"No project named {shown!r} on index {source.name!r}.", 404)
        self._check_owner(conn, identity, source_project, source.name)
        if source_project.status == "quarantined":
            raise PromoteRejected(
                f"Project '{source_project.name}' is quarantined on index {source.name!r}: its "
                "files are not offered, so they cannot be promoted.",
                status=403,
            )
        release = _release(conn, source_project.id, canonical)
        if release is None:
            raise PromoteRejected(
                f"Project '{source_project.name}' has no release {version!r} on index "
                f"{source.name!r}.",
                status=404,
            )
        if release.yanked:
            raise PromoteRejected(
                f"Release {release.version} of '{source_project.name}' is yanked on index "
                f"{source.name!r}; unyank it there first if it should be promoted."
            )
        files = conn.execute(
            select(db.files).where(db.files.c.release_id == release.id).order_by(db.files.c.id)
        ).all()
        if not files:
            raise PromoteRejected(
                f"Release {release.version} of '{source_project.name}' has no files on index "
                f"{source.name!r}.",
                status=404,
            )
        target_project = find_project(conn, target.id, name)
        if target_project is None:
            if identity.is_trusted_publisher:  # unreachable: its scope names existing projects
                raise PromoteRejected("Non-user identities cannot create new projects.", status=403)
            problem = new_project_name_problem(conn, target, source_project.name)
            if problem is not None:
                raise PromoteRejected(problem)
        else:
            self._check_owner(conn, identity, target_project, target.name)
            if target_project.status in ("archived", "quarantined"):
                raise PromoteRejected(
                    f"Project '{target_project.name}' is {target_project.status} on index "
                    f"{target.name!r} and accepts no new files. An owner can make it active "
                    f"again with `keyless project status {target_project.normalized_name} "
                    "active`.",
                    status=403,
                )
        plan = _Plan(source_project, release, list(files), target_project)
        for row in files:
            self._place(conn, target, row, plan)
        if plan.new and target_project is not None:
            # A release the target closed takes no promoted files either: its first file there
            # counts, not the source's (a release promoted whole in one step opens and closes
            # on the target like an upload's).
            closed = closed_release(
                conn, target, target_project.id, target_project.name, release.version
            )
            if closed is not None:
                raise PromoteRejected(closed)  # the text names the target index
        self._check_sizes(target, plan)
        if source.policy != target.policy:
            for row in plan.new:
                self._check_policy(target, row)
        return plan

    def _place(self, conn: Connection, target: IndexInfo, row: Any, plan: _Plan) -> None:
        """Decide for one file: already there (same bytes), new, or refused (as uploads)."""
        found = taken(
            conn,
            target.id,
            plan.target_project.id if plan.target_project is not None else None,
            row.filename,
            row.blake2_256,
            sdist_of=plan.release.version if row.packagetype == "sdist" else None,
        )
        if found.existing:
            plan.existing.append(row)
            return
        if found.existing is False:
            why = f"index {target.name!r} holds other bytes under it"
            raise PromoteRejected(already_exists(row.filename, row.blake2_256, why))
        if found.filename_used_before:
            raise PromoteRejected(
                f"{row.filename!r}: this filename was previously used on index "
                f"{target.name!r} by a file that has since been deleted. Use a different "
                f"version. See {HELP}#file-name-reuse for more information."
            )
        if found.release_has_sdist:
            raise PromoteRejected(
                f"{row.filename!r}: only one sdist may be uploaded per release, and "
                f"release {plan.release.version} on index {target.name!r} has another."
            )
        if not self.blobs.exists(row.sha256, row.size):
            raise PromoteRejected(
                f"The stored bytes of {row.filename!r} (sha256 {row.sha256}) are missing on "
                "this server; upload the file again instead.",
                status=409,
            )
        plan.new.append(row)

    def _check_sizes(self, target: IndexInfo, plan: _Plan) -> None:
        shown = plan.source_project.name
        for row in plan.new:
            if row.size > target.max_file_size:
                raise PromoteRejected(
                    f"{row.filename!r}: " + file_too_large(shown, target.max_file_size)
                )
        current = plan.target_project.total_size if plan.target_project is not None else 0
        if current + sum(row.size for row in plan.new) > target.max_project_size:
            raise PromoteRejected(
                f"Project size too large. Limit for project {shown!r} total size on index "
                f"{target.name!r} is {size_text(target.max_project_size, GIB, 'GB')}. "
                f"See {HELP}#project-size-limit for more information."
            )

    def _check_policy(self, target: IndexInfo, row: Any) -> None:
        # Only when the policies differ: what passed the source's rules passes identical ones.
        policy = target.policy
        try:
            dist = filenames.parse_dist_filename(row.filename, policy)
            with self.blobs.open(row.sha256) as archive:
                data = archives.read_core_metadata(archive, dist)
            metadata.parse_core_metadata(data, policy)
        except DistError as exc:
            raise PromoteRejected(
                f"{row.filename!r} is not accepted by index {target.name!r} "
                f"(profile {target.profile}): {exc.message}"
            ) from None

    # ------------------------------------------------------------------ writes

    def _apply(
        self,
        conn: Connection,
        source: IndexInfo,
        target: IndexInfo,
        identity: Identity,
        name: NormalizedName,
        plan: _Plan,
    ) -> bool:
        """Write the new rows; returns True if the project was created on the target."""
        release = plan.release
        # The same rows as on the source: the bytes, and so the metadata blob, are the same.
        files = [
            NewFile(
                filename=row.filename,
                packagetype=row.packagetype,
                python_version=row.python_version,
                sha256=row.sha256,
                md5=row.md5,
                blake2_256=row.blake2_256,
                size=row.size,
                requires_python=row.requires_python,
                metadata_sha256=row.metadata_sha256,
            )
            for row in plan.new
        ]
        created = plan.target_project is None
        common = {
            "version": release.version,
            "files": [{"filename": row.filename, "sha256": row.sha256} for row in plan.new],
            "token_id": identity.token_id,
            "trusted_publishers": list(identity.publishers) or None,
        }
        events = [
            Event("promote_release", {**common, "from": source.name, "created_project": created}),
            # On the source nothing served changed: an audit-only row, its serial stays.
            Event(
                "promote_release",
                {**common, "to": target.name},
                index_id=source.id,
                changes_project=False,
            ),
        ]
        add_files(
            conn,
            Target(
                target.id,
                plan.source_project.name,
                None if plan.target_project is None else plan.target_project.id,
            ),
            NewRelease(release.version, release.requires_python, release.summary, release.info),
            files,
            identity,
            events,
        )
        return created
