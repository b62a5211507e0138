"""Moving in from another index: a pypiserver folder, or a `devpi-export` dump.

Each file is added as an upload adds one: its name, archive and metadata are checked by
`dists/` with the index's policy, the name and bytes rules and the write are those of
`releases.py` (`taken`, `new_project_name_problem`, `add_files`), and the blob is placed before
the rows commit. A file that fails a check is skipped with the reason (the rest goes on); a file
already on the index with the same bytes is left as it is, so an import can be run again.

What an import does not do that an upload does: render the long description (the files were
published already; their pages show the description as it renders), check an uploader's
permission (the administrator runs it on the server's machine), and refuse files for a closed
release (`releases.closed_release`): an import restores history, and a wheel the old index took
on day 20 of its release is one people install today — refusing it would lose it, not protect
it; an import run again to catch up with the old server would lose the latest ones. Each file
keeps its own upload time, so a release moved in closes on keyless for later uploads as if it
had been published here (the rule counts from the release's first file). The files' uploader in the
journal is `ACTOR` (or the owner given), with `imported_from` in the event's details.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from sqlalchemy import Engine, select, update

from keyless.config import ConfigError
from keyless.dists import archives, filenames, metadata
from keyless.dists.errors import DistError
from keyless.store import db
from keyless.store.blobs import BlobStore, write_all

from .accounts import AccountError, Identity, add_user_without_password, user_id
from .indexes import IndexAdmin, IndexInfo
from .projects import ProjectAdmin, ProjectError, find_project, no_cached_pages, record_event
from .releases import (
    Added,
    Event,
    Target,
    add_files,
    already_exists,
    closed_project,
    file_too_large,
    new_project_name_problem,
    project_too_large,
    taken,
)
from .uploads import Artifact, new_rows

# Who the journal names for an imported file when no owner is given.
ACTOR = "import"
CHUNK = 1024 * 1024


class Skip(Exception):
    """This file is not imported; the message says why."""


class ImportRefused(Exception):
    """The import cannot start (no such folder or index); the message says what to fix."""


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class ImportReport:
    """What an import did, file by file."""

    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # the same bytes were there already
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the person should know or do


@dataclass
class FileImporter:
    """Adds one file at a time to an index, as an upload would (see the module's docstring)."""

    engine: Engine
    blobs: BlobStore

    def add(
        self,
        index: IndexInfo,
        path: Path,
        actor: Identity,
        source: str,
        *,
        moment: datetime | None = None,
        yanked: str | None = None,  # the reason, when the release is yanked
        sha256: str | None = None,  # what the source recorded, checked
    ) -> Added | None:
        """Add the file at `path`; None when the identical file was there. Raises Skip."""
        filename = path.name
        policy = index.policy
        try:
            dist = filenames.parse_dist_filename(filename, policy)
            filenames.check_filename_safe(filename, dist.packagetype)
        except DistError as exc:
            raise Skip(exc.message) from None
        size = path.stat().st_size
        if size > index.max_file_size:
            raise Skip(file_too_large(dist.name, index.max_file_size))
        writer = self.blobs.new_writer(sha256)  # when the source recorded one
        placed = False
        try:
            with path.open("rb") as source_file:
                write_all(writer, iter(lambda: source_file.read(CHUNK), b""))
            digests = writer.finish()
            if sha256 is not None and sha256 != digests.sha256:
                raise Skip(
                    f"its bytes have sha256 {digests.sha256}, not the {sha256} {source} "
                    "recorded: the file was changed or damaged."
                )
            try:
                with writer.open() as archive:
                    metadata_bytes = archives.read_core_metadata(archive, dist)
                file_meta = metadata.parse_core_metadata(metadata_bytes, policy)
                filenames.check_filename_matches_project(dist, file_meta.name, file_meta.version)
            except DistError as exc:
                raise Skip(exc.message) from None
            # The slow part (link or copy, fsync) outside the write lock, as an upload does.
            placed = self.blobs.place(writer, digests.sha256, digests.size)
            with db.writing(self.engine) as conn:
                project = find_project(conn, index.id, canonicalize_name(file_meta.name))
                project_id = None if project is None else int(project.id)
                sdist_of = str(file_meta.version) if dist.packagetype == "sdist" else None
                found = taken(conn, index.id, project_id, filename, digests.blake2_256, sdist_of)
                if found.existing:
                    return None
                if found.existing is False or found.filename_used_before:
                    raise Skip(already_exists(filename, digests.blake2_256))
                if found.release_has_sdist:
                    raise Skip("Only one sdist may be uploaded per release.")
                if project is None:
                    problem = new_project_name_problem(conn, index, file_meta.name)
                else:
                    problem = closed_project(project.name, project.normalized_name, project.status)
                    if problem is None and project.total_size + size > index.max_project_size:
                        problem = project_too_large(project.name, index.max_project_size)
                if problem:
                    raise Skip(problem)
                # Under the write lock, where garbage collection cannot run: certainly there.
                placed = self.blobs.place(writer, digests.sha256, digests.size) or placed
                wheel = dist.packagetype == "bdist_wheel"
                new_file, release = new_rows(
                    filename,
                    Artifact(dist=dist, metadata=file_meta, metadata_bytes=metadata_bytes),
                    digests,
                    version=str(file_meta.version),
                    python_version=(
                        ".".join(sorted({tag.interpreter for tag in dist.tags}))
                        if wheel
                        else "source"
                    ),
                )
                event = Event(
                    "file_upload",
                    {
                        "filename": filename,
                        "sha256": digests.sha256,
                        "version": str(file_meta.version),
                        "imported_from": source,
                    },
                )
                target = Target(index.id, file_meta.name, project_id)
                added = add_files(conn, target, release, [new_file], actor, [event], moment=moment)
                if yanked is not None:
                    conn.execute(
                        update(db.releases)
                        .where(db.releases.c.id == added.release_id, ~db.releases.c.yanked)
                        .values(yanked=True, yanked_reason=yanked)
                    )
                    record_event(
                        conn,
                        index.id,
                        target.normalized,
                        "yank_release",
                        actor.username,
                        {"version": release.version, "reason": yanked, "imported_from": source},
                    )
            return added
        except BaseException:
            if placed:
                self._drop_unreferenced(digests.sha256)
            raise
        finally:
            writer.discard()

    def _drop_unreferenced(self, sha256: str) -> None:
        """Remove a blob this import placed for a file it then did not add (as uploads do)."""
        with contextlib.suppress(Exception), db.writing(self.engine) as conn:
            used = select(db.files.c.id).where(db.files.c.sha256 == sha256).limit(1)
            if conn.execute(used).first() is None:
                self.blobs.remove(sha256)


# ------------------------------------------------------------------------------ pypiserver


def pypiserver_files(folder: Path) -> Iterator[Path]:
    """Every file of a pypiserver packages folder, flat or in subfolders (as pypiserver reads
    it: any depth, names starting with a dot ignored), in a stable order."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(root) / name


# ------------------------------------------------------------------------------ devpi

# The dump formats of `devpi-export` read here (dataindex.json's "dumpversion").
DEVPI_DUMP_VERSIONS = ("1", "2")


def keyless_index_name(devpi_stage: str) -> str:
    """devpi's `user/index` as a keyless index name: `user-index`, lowercased, any character
    keyless does not allow in a name turned into '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", devpi_stage.lower()).strip("-")
    return name[:63]


def _http_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Imports:
    """Moving in from another index into one server's database and blob store (see the module)."""

    engine: Engine
    blobs: BlobStore

    def index_named(self, name: str | None) -> IndexInfo:
        """The index an import goes to; `None` is allowed when the server has only one."""
        known = IndexAdmin(self.engine).load_indexes()
        if name is None and len(known) == 1:
            return next(iter(known.values()))
        if name is None or name not in known:
            said = "name the index to import into" if name is None else f"no index {name!r}"
            raise ImportRefused(
                f"{said}: --index one of {', '.join(known)} (or create it: keyless index create)."
            )
        return known[name]

    def importer_identity(self, index: IndexInfo, owner: str | None) -> Identity:
        """Who imports: `owner` (who then owns the projects the import creates) or `ACTOR`."""
        if owner is None:
            return Identity(None, ACTOR, 0, index.id, None)
        with db.reading(self.engine) as conn:
            return Identity(user_id(conn, owner), owner, 0, index.id, None)

    def import_pypiserver(self, index: IndexInfo, folder: Path, owner: str | None) -> ImportReport:
        """Add every distribution of a pypiserver folder to `index` (see the module docstring)."""
        if not folder.is_dir():
            raise ImportRefused(f"{folder} is not a folder: give pypiserver's packages folder.")
        report = ImportReport()
        files = FileImporter(self.engine, self.blobs)
        actor = self.importer_identity(index, owner)
        created = 0
        for path in pypiserver_files(folder):
            shown = str(path.relative_to(folder))
            # pypiserver has no upload time but the file's: keep it as the upload time.
            moment = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            try:
                added = files.add(index, path, actor, "pypiserver", moment=moment)
            except Skip as exc:
                report.skipped.append(Skipped(shown, str(exc)))
                continue
            (report.added if added else report.present).append(shown)
            created += bool(added and added.created_project)
        if owner is None and created:
            report.notes.append(
                "the new projects have no owner: give them one with "
                f"`keyless role add PROJECT USER --index {index.name} --role owner`."
            )
        return report

    def import_devpi_export(self, folder: Path) -> ImportReport:
        """Users, indexes, projects, releases and files of a `devpi-export` dump.

        The dump's `dataindex.json` lists the users (with their password hashes, not carried
        over), the indexes by `user/index` with their configuration, each index's projects by
        version (devpi's metadata) and its files (`relpath` in the dump, the sha256 devpi
        recorded, the upload log). Each devpi stage becomes a private keyless index named by
        `keyless_index_name`; its projects are owned by the stage's user and maintained by the
        others in its `acl_upload`. Mirror indexes (a cache of another index), documentation zips
        and tox results have no keyless equivalent and are left out, said in the report.
        """
        dataindex = folder / "dataindex.json"
        try:
            dump = json.loads(dataindex.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ImportRefused(
                f"{folder} has no dataindex.json: give the folder `devpi-export` wrote."
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImportRefused(f"{dataindex} is not JSON ({exc}).") from None
        version = str(dump.get("dumpversion")) if isinstance(dump, dict) else None
        if version not in DEVPI_DUMP_VERSIONS:
            raise ImportRefused(
                f"{dataindex}: devpi dump version {version!r} is not one this keyless reads "
                f"({', '.join(DEVPI_DUMP_VERSIONS)})."
            )
        report = ImportReport()
        users = self._devpi_users(dump.get("users", {}), report)
        files = FileImporter(self.engine, self.blobs)
        for stage, meta in sorted(dump.get("indexes", {}).items()):
            config = meta.get("indexconfig", {})
            if config.get("type") != "stage":
                report.notes.append(
                    f"devpi {stage}: a {config.get('type')} index (a cache of another index), "
                    "not imported."
                )
                continue
            index = self._devpi_index(stage, config, report)
            owner_name = stage.split("/", 1)[0]
            actor = Identity(users.get(owner_name), owner_name, 0, index.id, None)
            versions = meta.get("projects", {})
            projects: set[str] = set()
            for desc in meta.get("files", []):
                relpath = str(desc.get("relpath", ""))
                if desc.get("type") != "releasefile":
                    report.skipped.append(Skipped(relpath, f"a devpi {desc.get('type')}, not kept"))
                    continue
                mapping = desc.get("entrymapping", {})
                project = str(desc.get("projectname", ""))
                version_meta = versions.get(canonicalize_name(project), {}).get(
                    str(desc.get("version")), {}
                )
                yanked = version_meta.get("yanked")
                path = (folder / relpath).resolve()
                if not path.is_relative_to(folder.resolve()) or not path.is_file():
                    report.skipped.append(Skipped(relpath, "not in the dump"))
                    continue
                try:
                    added = files.add(
                        index,
                        path,
                        actor,
                        "devpi",
                        moment=_http_date(mapping.get("last_modified")),
                        yanked=(yanked if isinstance(yanked, str) else "") if yanked else None,
                        sha256=mapping.get("hashes", {}).get("sha256"),
                    )
                except Skip as exc:
                    report.skipped.append(Skipped(relpath, str(exc)))
                    continue
                (report.added if added else report.present).append(relpath)
                if added and added.created_project:  # roles given once, as the project is made
                    projects.add(project)
            self._devpi_maintainers(index, projects, owner_name, config, users, report)
        return report

    def _devpi_users(self, wanted: dict[str, Any], report: ImportReport) -> dict[str, int]:
        """Keyless accounts for devpi's users (`root`, devpi's own administrator, excepted): new
        ones without a password; a name keyless has already is taken to be the same person."""
        ids: dict[str, int] = {}
        made: list[str] = []
        with db.writing(self.engine) as conn:
            for username in sorted(wanted):
                if username == "root":
                    continue
                row = conn.execute(
                    select(db.users.c.id).where(db.users.c.username == username)
                ).first()
                if row is not None:
                    ids[username] = int(row.id)
                    report.notes.append(
                        f"user {username!r} exists already: the same account is used."
                    )
                    continue
                try:
                    ids[username] = add_user_without_password(conn, username)
                except AccountError:
                    report.notes.append(
                        f"devpi user {username!r}: not a keyless username, left out."
                    )
                    continue
                made.append(username)
        if made:
            report.notes.append(
                f"users {', '.join(made)} created without a password (devpi's are not carried "
                "over): give each one with `keyless user passwd NAME`; API tokens with "
                "`keyless token create`."
            )
        return ids

    def _devpi_index(self, stage: str, config: dict[str, Any], report: ImportReport) -> IndexInfo:
        name = keyless_index_name(stage)
        known = IndexAdmin(self.engine).load_indexes()
        if name not in known:
            try:
                IndexAdmin(self.engine).create_index(name, "private")
            except ConfigError as exc:
                raise ImportRefused(
                    f"devpi {stage}: no keyless index can be named for it ({exc})"
                ) from None
            known = IndexAdmin(self.engine).load_indexes()
        bases = ", ".join(config.get("bases", []))
        inherits = f"; it inherited from {bases}, which keyless indexes do not do" if bases else ""
        report.notes.append(f"devpi {stage} -> keyless index {name!r} (profile private){inherits}.")
        return known[name]

    def _devpi_maintainers(
        self,
        index: IndexInfo,
        projects: set[str],
        owner: str,
        config: dict[str, Any],
        users: dict[str, int],
        report: ImportReport,
    ) -> None:
        """Who could upload to the devpi index (its `acl_upload`) maintains its projects here."""
        uploaders = [u for u in config.get("acl_upload", []) if u != owner and u in users]
        roles = ProjectAdmin(self.engine, no_cached_pages)
        for project in sorted(projects):
            for username in uploaders:
                with contextlib.suppress(ProjectError):  # already has a role
                    roles.add_role(index.id, project, username, "maintainer")
        if uploaders and projects:
            report.notes.append(
                f"maintainers of the new projects of {index.name!r} (devpi's acl_upload): "
                f"{', '.join(uploaders)}."
            )
