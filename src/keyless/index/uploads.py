"""The upload use case: PyPI's validation order and texts, then an atomic store.

Order (as PyPI, so clients see the same error for the same mistake): form fields, metadata
(all errors at once), presence of a file, project and permission, description, filename,
sizes, digests, duplicates, filename reuse, a closed release, one sdist per release, the
archive itself, and — beyond PyPI — the metadata inside the archive against the form and the
filename.

Every answer the database gives is read twice: on a snapshot, to refuse early and in that
order, and again inside the write transaction that stores the file — only what is read there
holds at commit (SQLite runs one writing transaction at a time), so a project created, a token
revoked or a publisher removed meanwhile is seen.

Nothing becomes visible until the end: the bytes sit in a fsynced temp file, are linked into
the content-addressed store, and the row that makes them a file is committed last.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from packaging.metadata import Metadata
from packaging.utils import NormalizedName, canonicalize_name
from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.exc import IntegrityError

from keyless.dists import archives, filenames, metadata
from keyless.dists.errors import DistError, InvalidMetadata
from keyless.dists.names import validate_project_name
from keyless.store import db
from keyless.store.blobs import BlobStore, Digests
from keyless.store.errors import StorageFull

from .accounts import Identity, InvalidCredentials, current_identity
from .errors import Refused
from .indexes import IndexInfo
from .multipart import StagedFile, UploadForm
from .projects import ProjectRow, find_project, role_of
from .releases import (
    HELP,
    Event,
    NewFile,
    NewRelease,
    Taken,
    Target,
    add_files,
    already_exists,
    closed_project,
    closed_release,
    existing_file,
    file_too_large,
    name_reserved_for_another,
    new_project_name_problem,
    project_too_large,
    reserved_filename,
    reserved_name,
    taken,
)
from .rendering import Descriptions, RenderRefused

HEX64 = re.compile(r"[A-Fa-f0-9]{64}\Z")


class UploadRejected(Refused):
    """The upload is refused; `.message` is PyPI's text (or ours where PyPI has none)."""


@dataclass(frozen=True)
class UploadOutcome:
    filename: str
    sha256: str
    project: NormalizedName
    created: bool  # False: the identical file was already there (idempotent re-upload)


def check_form_fields(form: UploadForm) -> None:
    """The upload-protocol fields (not metadata): protocol, action, name, filetype, digests."""
    if form.first("protocol_version") not in ("", "1"):
        raise UploadRejected("Unknown protocol version.")
    action = form.first(":action")
    if action != "file_upload":
        raise UploadRejected(
            f"Unsupported ':action' {action!r}: only 'file_upload' is accepted here."
            if action
            else "Missing ':action' field: send ':action=file_upload'."
        )
    try:
        validate_project_name(form.first("name"))
    except DistError as exc:
        raise UploadRejected(exc.message) from None
    filetype = form.first("filetype")
    if not filetype:
        raise UploadRejected("Invalid value for filetype. Error: This field is required.")
    if filetype not in ("sdist", "bdist_wheel"):
        raise UploadRejected("Invalid value for filetype. Error: Use a known file type.")
    for digest, label in (("sha256_digest", "SHA256"), ("blake2_256_digest", "BLAKE2")):
        value = form.first(digest)
        if value and not HEX64.match(value):  # \Z: no trailing newline
            raise UploadRejected(
                f"Invalid value for {digest}. Error: Use a valid, hex-encoded, {label} "
                "message digest."
            )
    pyversion = form.first("pyversion")
    if filetype != "sdist" and not pyversion:
        raise UploadRejected(
            "Invalid value for pyversion. Error: Python version is required for binary "
            "distribution uploads."
        )
    if filetype == "sdist" and pyversion not in ("", "source"):
        raise UploadRejected(
            "Invalid value for pyversion. Error: Use 'source' as Python version for an sdist."
        )
    if not any(form.first(d) for d in ("md5_digest", "sha256_digest", "blake2_256_digest")):
        raise UploadRejected("Error: Include at least one message digest.")


# Built once, as the statements of `releases.py`: an upload runs about fifteen.
_FILE_BY_SHA256 = select(db.files.c.id).where(db.files.c.sha256 == bindparam("sha256")).limit(1)


def _find_project(conn: Connection, index_id: int, name: NormalizedName) -> ProjectRow | None:
    row = find_project(conn, index_id, name)
    if row is None:
        return None
    return ProjectRow.of(row)


def _check_new_project_name(conn: Connection, index: IndexInfo, name: str) -> None:
    """PyPI's name rules for a project the upload would create."""
    problem = new_project_name_problem(conn, index, name)
    if problem is not None:
        raise UploadRejected(problem)


def check_permission(
    conn: Connection,
    identity: Identity,
    index: IndexInfo,
    project: ProjectRow | None,
    name: NormalizedName,
    *,
    holds_name: bool = False,
) -> None:
    """May `identity` add files to the project (None: create it)? Raises UploadRejected.

    The upload's rule, and an upload session's on each of its requests (`upload2/`).
    `holds_name`: the identity's user holds the name by a live upload session of its own, so
    no other user's session can (creating a session asks, in a writing transaction).
    """
    if identity.is_trusted_publisher:
        _check_trusted_permission(identity, index, project, name)
    elif not identity.may_touch(index.id, name):
        scope = ", ".join(sorted(identity.projects or ()))
        raise UploadRejected(
            f"The user '{identity.username}' isn't allowed to upload to project "
            f"'{project.name if project else name}'. This API token is limited to: {scope}.",
            status=403,
        )
    if project is None:
        # Uploading creates the project and the uploader becomes its owner, unless another
        # user's upload session holds the name (PEP 694 reserves it while the session lives).
        if not holds_name and name_reserved_for_another(conn, index.id, name, identity.user_id):
            raise UploadRejected(reserved_name(name), status=403)
        return
    # A user's token needs a role on the project; a trusted publisher's (no user) is scoped.
    if identity.user_id is not None and role_of(conn, project.id, identity.user_id) is None:
        raise UploadRejected(
            f"The user '{identity.username}' isn't allowed to upload to project "
            f"'{project.name}'. See {HELP}#project-name for more information.",
            status=403,
        )
    closed = closed_project(project.name, project.normalized_name, project.status)
    if closed:
        raise UploadRejected(closed, status=403)


def _check_trusted_permission(
    identity: Identity, index: IndexInfo, project: ProjectRow | None, name: NormalizedName
) -> None:
    if project is None:
        raise UploadRejected(
            "Non-user identities cannot create new projects. This was probably caused by "
            "successfully using a pending publisher but specifying the project name "
            "incorrectly (either in the publisher or in your project's metadata). Please "
            "ensure that both match."
        )
    if not identity.may_touch(index.id, name):
        linked = sorted(p for i, p in identity.scopes if i == index.id)
        raise UploadRejected(
            f"The given token isn't allowed to upload to project '{project.name}'. It was "
            f"minted for a trusted publisher linked to: {', '.join(linked) or 'no project'} "
            f"on index '{index.name}'.",
            status=403,
        )


def _decide(
    conn: Connection,
    identity: Identity,
    index: IndexInfo,
    meta: Metadata,
    staged: StagedFile,
    sdist_of: str | None,
) -> tuple[ProjectRow | None, Taken]:
    """Every question the database answers about an upload, asked on one connection.

    Asked twice: on a snapshot first, to refuse early and in PyPI's order; then again inside
    the write transaction with the identity as it is then (`current_identity`), because only
    answers read there still hold when the file is committed — a project another upload
    created meanwhile needs a role, a publisher removed meanwhile no longer counts.
    """
    name = canonicalize_name(meta.name)
    project = _find_project(conn, index.id, name)
    check_permission(conn, identity, index, project, name)
    if project is None:
        _check_new_project_name(conn, index, meta.name)
    found = taken(
        conn,
        index.id,
        project.id if project else None,
        staged.filename,
        staged.digests.blake2_256,
        sdist_of=sdist_of,
    )
    if project is not None and found.existing is None:  # an identical re-upload still passes
        version = str(meta.version)
        found.release_closed = closed_release(conn, index, project.id, project.name, version)
    return project, found


def check_project_size(index: IndexInfo, project: ProjectRow | None, size: int) -> None:
    if project and project.total_size + size > index.max_project_size:
        raise UploadRejected(project_too_large(project.name, index.max_project_size))


def refuse_taken(found: Taken, filename: str, blake2: str) -> None:
    """Raise for a name or bytes the upload may not take (an identical file passes)."""
    if found.existing is False:
        raise UploadRejected(already_exists(filename, blake2))
    if found.reserved:
        raise UploadRejected(reserved_filename(filename), status=409)
    if found.filename_used_before:
        raise UploadRejected(
            "This filename was previously used by a file that has since been deleted. "
            f"Use a different version. See {HELP}#file-name-reuse for more information."
        )
    if found.release_closed:
        raise UploadRejected(found.release_closed)
    if found.release_has_sdist:
        raise UploadRejected("Only one sdist may be uploaded per release.")


DIGEST_FIELDS = ("md5_digest", "sha256_digest", "blake2_256_digest")
DIGEST_MISMATCH = "The digest supplied does not match a digest calculated from the uploaded file."


def check_file(
    descriptions: Descriptions,
    index: IndexInfo,
    project: ProjectRow | None,
    meta: Metadata,
    filename: str,
    filetype: str,
    digests: Digests,
    sent: dict[str, str],  # the digests the client sent, by form field; "" for none
) -> None:
    """The checks of the file itself, in PyPI's order: description, filename, sizes, digests.

    The upload's, and an upload session's when a file is completed (`upload2/`), so both
    refuse a file with the same texts.
    """
    if meta.description:
        # In a worker process, bounded in time and memory (rendering.py). Before the
        # duplicate checks, as PyPI: repeats of one description hit the cache.
        try:
            descriptions.check(meta.description, meta.description_content_type)
        except RenderRefused as exc:
            raise UploadRejected(exc.message, status=exc.status) from None
    try:
        filenames.check_filename_safe(filename, filetype)
    except DistError as exc:
        raise UploadRejected(exc.message) from None
    if digests.size > index.max_file_size:
        raise UploadRejected(
            file_too_large(project.name if project else meta.name, index.max_file_size)
        )
    check_project_size(index, project, digests.size)
    actual = {
        "md5_digest": digests.md5,
        "sha256_digest": digests.sha256,
        "blake2_256_digest": digests.blake2_256,
    }
    for field in DIGEST_FIELDS:
        value = sent.get(field, "")
        if value and value.lower() != actual[field]:
            raise UploadRejected(DIGEST_MISMATCH)


def current_uploader(conn: Connection, identity: Identity) -> Identity:
    """`current_identity`, refused as an upload is (403, the text authentication gives)."""
    try:
        return current_identity(conn, identity)
    except InvalidCredentials as exc:
        raise UploadRejected(exc.reason, status=403) from None


@dataclass(frozen=True)
class Artifact:
    """What the archive itself says, once it passed every check."""

    dist: filenames.DistFilename
    metadata: Metadata
    metadata_bytes: bytes  # METADATA / PKG-INFO exactly as in the archive (PEP 658 serves it)


def inspect_artifact(
    filename: str, open_archive: Callable[[], BinaryIO], form_meta: Metadata, index: IndexInfo
) -> Artifact:
    """Open the archive, harden-check it, and hold its metadata against the form and filename.

    `form_meta` is what the upload says the file is: the form's metadata, or an upload
    session's name and version.
    """
    policy = index.policy
    try:
        dist = filenames.parse_dist_filename(filename, policy)
        with open_archive() as archive:
            metadata_bytes = archives.read_core_metadata(archive, dist)
        filenames.check_filename_matches_project(dist, form_meta.name, form_meta.version)
        file_meta = metadata.parse_core_metadata(metadata_bytes, policy)
        metadata.check_artifact_agrees(form_meta, file_meta, dist)
    except DistError as exc:
        raise UploadRejected(exc.message) from None
    return Artifact(dist=dist, metadata=file_meta, metadata_bytes=metadata_bytes)


@dataclass
class Uploads:
    """Dependencies of the upload use case, passed in (no globals)."""

    engine: Engine
    blobs: BlobStore
    on_change: Callable[[int, str], None]  # (index id, normalized project) -> invalidate caches
    descriptions: Descriptions  # renders (checks) the long description, bounded

    def upload(self, index: IndexInfo, identity: Identity, form: UploadForm) -> UploadOutcome:
        """Validate and store one uploaded file; raises UploadRejected.

        The staged temp file is always consumed: moved into the store or deleted.
        """
        try:
            return self._upload(index, identity, form)
        finally:
            if form.file is not None:
                form.file.discard()  # the blob store has its own link to the bytes (place)

    def _upload(self, index: IndexInfo, identity: Identity, form: UploadForm) -> UploadOutcome:
        if not identity.allows_index(index.id):
            raise UploadRejected(
                f"This API token is for another index, not '{index.name}'. "
                "Create a token for this index with `keyless token create`.",
                status=403,
            )
        check_form_fields(form)
        policy = index.policy
        try:
            meta = metadata.metadata_from_form(form.fields, policy)
        except InvalidMetadata as exc:
            raise UploadRejected(exc.message) from None
        staged = form.file
        if staged is None:
            raise UploadRejected("Upload payload does not have a file.")
        name = canonicalize_name(meta.name)

        digests = staged.digests
        sdist_of = str(meta.version) if form.first("filetype") == "sdist" else None
        # One snapshot for every question the database answers; the answers are acted on in
        # PyPI's order below (permission first, "File already exists" only after the checks of
        # the file itself), which is why the later ones are only collected here.
        with db.reading(self.engine) as conn:
            project, found = _decide(conn, identity, index, meta, staged, sdist_of)

        sent = {field: form.first(field) for field in DIGEST_FIELDS}
        check_file(
            self.descriptions,
            index,
            project,
            meta,
            staged.filename,
            form.first("filetype"),
            digests,
            sent,
        )

        if found.existing and self.blobs.exists(digests.sha256, digests.size):
            # This very file is stored. Its blob stays: garbage collection only deletes blobs
            # no row refers to, deciding under the write lock (see maintenance.py).
            return UploadOutcome(staged.filename, digests.sha256, name, created=False)
        refuse_taken(found, staged.filename, digests.blake2_256)
        # An identical file whose blob went missing is not inspected again: `_store` puts
        # the blob back from these (digest-checked) bytes.
        artifact = (
            None
            if found.existing
            else inspect_artifact(staged.filename, staged.writer.open, meta, index)
        )
        pyversion = form.first("pyversion")
        return self._store(index, identity, staged, pyversion, meta, sdist_of, artifact)

    def _store(
        self,
        index: IndexInfo,
        identity: Identity,
        staged: StagedFile,
        pyversion: str,
        meta: Metadata,
        sdist_of: str | None,
        artifact: Artifact | None,  # None: the snapshot found this exact file stored
    ) -> UploadOutcome:
        digests = staged.digests
        name = canonicalize_name(meta.name)
        # The bytes go into the store before the write lock is taken: linking and fsyncing
        # take their time here, not while every other upload waits.
        placed = self.blobs.place(staged.writer, digests.sha256, digests.size)
        try:
            with db.writing(self.engine) as conn:
                # Decided again where it holds at commit: one writing transaction at a time.
                uploader = current_uploader(conn, identity)
                project, found = _decide(conn, uploader, index, meta, staged, sdist_of)
                check_project_size(index, project, digests.size)
                refuse_taken(found, staged.filename, digests.blake2_256)
                # Garbage collection deletes a blob only in a writing transaction of its own,
                # having found no row for it: the blob there now stays until this one commits
                # its row. Checked (a stat), and put back from the temp file if gc took it
                # since — also for a file already stored whose blob went missing.
                placed = self.blobs.place(staged.writer, digests.sha256, digests.size) or placed
                if found.existing:
                    return UploadOutcome(staged.filename, digests.sha256, name, created=False)
                # None only if the snapshot saw this very file (rows are never deleted).
                artifact = artifact or inspect_artifact(
                    staged.filename, staged.writer.open, meta, index
                )
                self._insert(conn, index, uploader, project, staged, pyversion, meta, artifact)
        except IntegrityError:
            # A unique index refused a row. While writers take turns (`db.writing`) the checks
            # above see every commit, so only a database running writers side by side could
            # let another client store this filename or these bytes in between; anything else
            # is a fault to report as one, not as "File already exists".
            with db.reading(self.engine) as conn:
                existing = existing_file(conn, index.id, staged.filename, digests.blake2_256)
            if existing is None:
                raise
            if existing:
                return UploadOutcome(staged.filename, digests.sha256, name, created=False)
            raise UploadRejected(already_exists(staged.filename, digests.blake2_256)) from None
        except StorageFull:
            if placed:  # the database is full: the blob must not stay behind without a row
                self._drop_unreferenced_blob(digests.sha256)
            raise
        self.on_change(index.id, name)
        return UploadOutcome(staged.filename, digests.sha256, name, created=True)

    def _insert(
        self,
        conn: Connection,
        index: IndexInfo,
        identity: Identity,
        project: ProjectRow | None,
        staged: StagedFile,
        pyversion: str,
        meta: Metadata,
        artifact: Artifact,
    ) -> None:
        """Write the rows of a new file (and of its release and project when new)."""
        digests = staged.digests
        new_file, release = new_rows(
            staged.filename,
            artifact,
            digests,
            version=str(meta.version),
            python_version=pyversion or "source",
        )
        event = Event(
            "file_upload",
            {
                "filename": staged.filename,
                "sha256": digests.sha256,
                "version": str(meta.version),
                "token_id": identity.token_id,
                "trusted_publishers": list(identity.publishers) or None,
            },
        )
        target = Target(index.id, meta.name, project.id if project else None)
        add_files(conn, target, release, [new_file], identity, [event])

    def _drop_unreferenced_blob(self, sha256: str) -> None:
        """Remove the blob this upload placed for a row the database had no room for.

        Decided and done under the write lock, as garbage collection does, since another upload
        of the same bytes checks for its blob inside its own writing transaction. Reading
        needs no disk space; should even that fail, the blob is left to garbage collection.
        """
        with contextlib.suppress(StorageFull), db.writing(self.engine) as conn:
            if conn.execute(_FILE_BY_SHA256, {"sha256": sha256}).first() is None:
                self.blobs.remove(sha256)


def new_rows(
    filename: str, artifact: Artifact, digests: Digests, *, version: str, python_version: str
) -> tuple[NewFile, NewRelease]:
    """The file and release rows for a checked file: an upload's, and an import's.

    What the artifact says, not the form, except the release's version (the upload's form
    names it, checked equal to the artifact's): the `.metadata` file served for it comes from
    the artifact too.
    """
    dist, file_meta, metadata_bytes = artifact.dist, artifact.metadata, artifact.metadata_bytes
    requires_python = str(file_meta.requires_python or "") or None
    wheel = dist.packagetype == "bdist_wheel"
    new_file = NewFile(
        filename=filename,
        packagetype=dist.packagetype,
        python_version=python_version,
        sha256=digests.sha256,
        md5=digests.md5,
        blake2_256=digests.blake2_256,
        size=digests.size,
        requires_python=requires_python,
        metadata_sha256=hashlib.sha256(metadata_bytes).hexdigest() if wheel else None,
        metadata=metadata_bytes if wheel else None,
    )
    release = NewRelease(
        version=version,
        requires_python=requires_python,
        summary=file_meta.summary,
        info=release_info(file_meta),
    )
    return new_file, release


def release_info(meta: Metadata) -> dict[str, object]:
    """The metadata fields the JSON API serves, as JSON-ready values."""
    urls = dict(meta.project_urls or {})
    return {
        "name": meta.name,
        "version": str(meta.version),
        "summary": meta.summary,
        "description": meta.description,
        "description_content_type": meta.description_content_type,
        "author": meta.author,
        "author_email": meta.author_email,
        "maintainer": meta.maintainer,
        "maintainer_email": meta.maintainer_email,
        "license": meta.license,
        "license_expression": str(meta.license_expression) if meta.license_expression else None,
        "license_files": list(meta.license_files or []) or None,
        "keywords": ",".join(meta.keywords or []) or None,
        "classifiers": list(meta.classifiers or []),
        "platform": list(meta.platforms or []) or None,
        "home_page": meta.home_page,
        "download_url": meta.download_url,
        "requires_python": str(meta.requires_python) if meta.requires_python else None,
        "requires_dist": [str(r) for r in meta.requires_dist or []] or None,
        "provides_extra": [str(e) for e in meta.provides_extra or []] or None,
        "project_urls": urls or None,
        "dynamic": list(meta.dynamic or []) or None,
    }
