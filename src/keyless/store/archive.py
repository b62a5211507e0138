"""A whole server in one portable archive (`keyless export` / `keyless import`), and back.

The archive is an uncompressed tar (the files in it are compressed archives already):

- `manifest.json` first, so a reader refuses an archive of an unknown format or version
  before it reads anything else: the format name and `VERSION`, the schema revision the rows
  were written at, each table's member with its row count and sha256, and the number and
  bytes of the blobs;
- `tables/<name>.jsonl`: every row of every table of `db.metadata` but the pure caches
  (`SKIPPED`), one JSON object a line, columns by name;
- `blobs/<sha256>`: the bytes of every file the rows list, once per digest.

Only SQLAlchemy Core and the `BlobStore` interface are used, so an archive written from SQLite
and a folder loads into PostgreSQL and a bucket. Memory stays bounded whatever the files'
sizes: rows go through temp files in batches, blobs are copied in chunks (an import holds only
the set of digests, ~100 bytes a file, to check that every file's blob arrived).

Loading is all-or-nothing. The target must hold no data (the indexes its configuration created
are replaced); every table member is checked against the manifest and every blob against its
name before any row is written; the rows go in one transaction; the blobs this load placed
are removed again if anything fails. So a truncated or altered archive leaves the target as it
was, with a message that says what is wrong.

This is a restore, not an upload: rows are copied as they are (ids, serials, the journal, the
token hashes), so it does not go through `index.releases.add_files`, which makes new rows.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from sqlalchemy import Connection, DateTime, Engine, LargeBinary, Table, delete, func, select, text
from sqlalchemy.exc import DataError, IntegrityError

from keyless import __version__
from keyless.store import db
from keyless.store.blobs import BlobStore, write_all
from keyless.store.changes import record_change

FORMAT = "keyless-export"
VERSION = 1
MANIFEST = "manifest.json"
# Tables whose rows are a cache the server fills again by itself; everything else is exported.
SKIPPED = {
    "jwks_cache": "issuers' signing keys, fetched again when the next OIDC token comes",
    # The target's own feed to its running processes' caches: an import adds a change of
    # every index to it instead (below), so a server that was running drops what it cached.
    "change_serial": "the target's own change serial (the import records a change per index)",
    "changes": "the target's own change feed (the import records a change per index)",
}
# Rows a batch inserts at once, and bytes a blob is copied by.
BATCH = 500
CHUNK = 1024 * 1024


class ArchiveError(Exception):
    """The archive cannot be written or loaded; the message says what and what to do."""


@dataclass
class Summary:
    """What an export wrote or an import loaded."""

    rows: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0


def exported_tables() -> list[Table]:
    """Every table of the schema but the caches, parents before children (foreign keys)."""
    return [t for t in db.metadata.sorted_tables if t.name not in SKIPPED]


# ------------------------------------------------------------------------------ export


def export_archive(
    engine: Engine, blobs: BlobStore, path: Path, schema: tuple[str, ...]
) -> Summary:
    """Write every row and every file's blob to a new archive at `path`.

    One read transaction, so the rows agree with each other; garbage collection never removes
    a blob a row refers to, so the blobs they list stay while they are copied. The archive is
    written beside `path` and renamed into place when complete.
    """
    summary = Summary()
    partial = path.with_name(path.name + ".partial")
    largest = func.max(db.files.c.size).label("size")
    by_digest = (
        select(db.files.c.sha256, largest).group_by(db.files.c.sha256).order_by(db.files.c.sha256)
    )
    with (
        tempfile.TemporaryDirectory(prefix="keyless-export-") as scratch,
        db.reading(engine) as conn,
    ):
        members: dict[str, dict[str, Any]] = {}
        for table in exported_tables():
            member = Path(scratch) / f"{table.name}.jsonl"
            count, digest = _dump_table(conn, table, member)
            members[table.name] = {"rows": count, "sha256": digest}
            summary.rows[table.name] = count
        listed = by_digest.subquery()
        totals = select(func.count(), func.coalesce(func.sum(listed.c.size), 0))
        count, size = conn.execute(totals).one()
        summary.blobs, summary.blob_bytes = int(count), int(size)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "schema": list(schema),
            "keyless": __version__,  # what wrote it, for the person reading a refusal
            "created": datetime.now().astimezone().isoformat(),
            "tables": members,
            "skipped": SKIPPED,
            "blobs": {"count": summary.blobs, "bytes": summary.blob_bytes},
        }
        try:
            with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
                data = json.dumps(manifest, indent=2).encode()
                _add(tar, MANIFEST, len(data), io.BytesIO(data))
                for name in members:
                    member = Path(scratch) / f"{name}.jsonl"
                    with member.open("rb") as rows:
                        _add(tar, f"tables/{name}.jsonl", member.stat().st_size, rows)
                # Streamed from the same snapshot as the rows, a digest at a time.
                for row in conn.execute(by_digest):
                    _add_blob(tar, blobs, row.sha256, int(row.size))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return summary


def _dump_table(conn: Connection, table: Table, member: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    order = list(table.primary_key.columns) or list(table.columns)
    with member.open("wb") as out:
        for row in conn.execute(select(table).order_by(*order)).mappings():
            line = json.dumps(_encode(table, dict(row))).encode() + b"\n"
            out.write(line)
            digest.update(line)
            count += 1
    return count, digest.hexdigest()


def _encode(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    for column in table.columns:
        value = row.get(column.name)
        if value is None:
            continue
        if isinstance(column.type, DateTime):
            # keyless writes UTC; SQLite hands it back without a zone. Said in the archive,
            # so a database that keeps zones (PostgreSQL) reads the same moment.
            row[column.name] = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        elif isinstance(column.type, LargeBinary):
            row[column.name] = base64.b64encode(value).decode()
    return row


def _decode(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    columns = table.columns
    unknown = set(row) - set(columns.keys())
    if unknown:
        raise ArchiveError(
            f"table {table.name}: column(s) {', '.join(sorted(unknown))} are not in this "
            "keyless's schema; import with the keyless version that exported it."
        )
    for column in columns:
        value = row.get(column.name)
        if value is None:
            continue
        if isinstance(column.type, DateTime):
            row[column.name] = datetime.fromisoformat(value)
        elif isinstance(column.type, LargeBinary):
            row[column.name] = base64.b64decode(value)
    return row


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _add(tar: tarfile.TarFile, name: str, size: int, data: _Readable) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    tar.addfile(info, data)


def _add_blob(tar: tarfile.TarFile, blobs: BlobStore, sha256: str, size: int) -> None:
    try:
        source = blobs.open(sha256)
    except FileNotFoundError:
        raise ArchiveError(
            f"the blob {sha256} of a file is missing from the blob store; run `keyless fsck` "
            "and upload that file again before exporting."
        ) from None
    with source:
        reader = _HashingReader(source)
        try:
            _add(tar, f"blobs/{sha256}", size, reader)
        except OSError as exc:  # tarfile: "unexpected end of data" for a short blob
            raise ArchiveError(
                f"the blob {sha256} is shorter than its file row says; run `keyless fsck`."
            ) from exc
    if reader.sha256.hexdigest() != sha256:
        raise ArchiveError(
            f"the blob {sha256} in the blob store does not hold the bytes of that digest; run "
            "`keyless fsck --repair` and upload that file again before exporting."
        )


class _HashingReader:
    """A file whose reads are hashed on the way (the export checks every blob it copies)."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.sha256.update(data)
        return data


# ------------------------------------------------------------------------------ import


def _replaced() -> tuple[Table, ...]:
    """What a server holds before it has data, which an import replaces: the indexes its
    configuration created at start, and failed sign-ins counted while it stood empty."""
    return (db.indexes, db.web_login_failures)


def occupied_tables(conn: Connection) -> list[str]:
    """The tables with data in them (the `_replaced` ones do not count)."""
    return [
        table.name
        for table in exported_tables()
        if table not in _replaced() and conn.execute(select(1).select_from(table).limit(1)).first()
    ]


def import_archive(
    engine: Engine, blobs: BlobStore, path: Path, schema: tuple[str, ...]
) -> Summary:
    """Load an archive of `export_archive` into an empty server; all or nothing."""
    with db.reading(engine) as conn:
        occupied = occupied_tables(conn)
    if occupied:
        raise ArchiveError(_not_empty(occupied))
    placed: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="keyless-import-") as scratch:
            summary = _load(engine, blobs, path, schema, Path(scratch), placed)
    except BaseException:
        for sha256 in placed:  # no row refers to them: nothing was committed
            with contextlib.suppress(Exception):
                blobs.remove(sha256)
        raise
    return summary


def _not_empty(occupied: list[str]) -> str:
    return (
        f"the target server already holds data (rows in {', '.join(occupied)}); import into "
        "a new data folder (and an empty database and bucket)."
    )


def _load(
    engine: Engine,
    blobs: BlobStore,
    path: Path,
    schema: tuple[str, ...],
    scratch: Path,
    placed: list[str],
) -> Summary:
    try:
        tar = tarfile.open(path, "r:")  # noqa: SIM115 (closed by the `with` below)
    except OSError as exc:
        raise ArchiveError(
            f"{path} cannot be read as a keyless export archive ({exc.strerror})."
        ) from None
    except tarfile.TarError as exc:
        raise ArchiveError(
            f"{path} is not a keyless export archive (not a tar file: {exc})."
        ) from None
    summary = Summary()
    with tar:
        members = _members(tar, path)
        manifest = _manifest(tar, next(members, None), path, schema)
        tables: dict[str, dict[str, Any]] = manifest["tables"]
        expected = {t.name for t in exported_tables()}
        if set(tables) != expected:
            raise ArchiveError(
                f"{path}: its tables ({', '.join(sorted(tables))}) are not this keyless's "
                f"({', '.join(sorted(expected))}); import with the keyless version that "
                "exported it."
            )
        seen_tables: set[str] = set()
        arrived: set[str] = set()
        for member in members:
            if member.name.startswith("tables/") and member.name.endswith(".jsonl"):
                name = member.name[len("tables/") : -len(".jsonl")]
                if name not in tables or name in seen_tables:
                    raise ArchiveError(f"{path}: unexpected member {member.name!r}.")
                _check_table(tar, member, tables[name], scratch / f"{name}.jsonl", path)
                seen_tables.add(name)
            elif member.name.startswith("blobs/"):
                sha256 = member.name[len("blobs/") :]
                _place_blob(tar, member, sha256, blobs, placed, path)
                arrived.add(sha256)
                summary.blobs += 1
                summary.blob_bytes += member.size
            else:
                raise ArchiveError(f"{path}: unexpected member {member.name!r}.")
        missing_tables = set(tables) - seen_tables
        if missing_tables:
            raise ArchiveError(
                f"{path} is truncated: the table(s) {', '.join(sorted(missing_tables))} are "
                "missing."
            )
        wanted = manifest["blobs"]
        needed = _blobs_listed(scratch / "files.jsonl")
        if summary.blobs != wanted["count"] or not needed <= arrived:
            raise ArchiveError(
                f"{path} is truncated: {wanted['count']} file blob(s) listed, "
                f"{summary.blobs} found."
            )
    table = db.indexes
    try:
        with db.writing(engine) as conn:
            occupied = occupied_tables(conn)  # again, where it holds at commit
            if occupied:
                raise ArchiveError(_not_empty(occupied))
            for replaced in _replaced():
                conn.execute(delete(replaced))
            for table in exported_tables():
                rows = scratch / f"{table.name}.jsonl"
                summary.rows[table.name] = _insert_rows(conn, table, rows)
            if conn.dialect.name == "postgresql":
                _advance_sequences(conn)
            for (index_id,) in conn.execute(select(db.indexes.c.id)).all():
                record_change(conn, index_id, None)
    except (IntegrityError, DataError) as exc:
        # Rows that agree with their checksums but not with the schema: made by hand.
        raise ArchiveError(
            f"{path}: the rows of {table.name} cannot be loaded ({exc.orig})."
        ) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ArchiveError(f"{path}: the rows of {table.name} cannot be read ({exc!r}).") from None
    return summary


def _members(tar: tarfile.TarFile, path: Path) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{path} is damaged or truncated ({exc}).") from None


def _manifest(
    tar: tarfile.TarFile, member: tarfile.TarInfo | None, path: Path, schema: tuple[str, ...]
) -> dict[str, Any]:
    if member is None or member.name != MANIFEST:
        raise ArchiveError(f"{path} is not a keyless export archive (no {MANIFEST} first).")
    try:
        manifest = json.loads(_read_member(tar, member, path))
    except ValueError:
        raise ArchiveError(f"{path}: its {MANIFEST} is not JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not a keyless export archive (format {FORMAT!r} expected).")
    if manifest.get("version") != VERSION:
        raise ArchiveError(
            f"{path} is a keyless export of format version {manifest.get('version')!r}; this "
            f"keyless reads version {VERSION}: import with a keyless that knows it."
        )
    exported = manifest.get("schema")
    if not isinstance(exported, list) or tuple(exported) != schema:
        by = manifest.get("keyless", "?")
        raise ArchiveError(
            f"{path} was exported by keyless {by} at schema revision "
            f"{', '.join(map(str, exported or []))}; this keyless is at {', '.join(schema)}: "
            f"import it with keyless {by}, then `keyless db upgrade`."
        )
    tables, blobs = manifest.get("tables"), manifest.get("blobs")
    if not (
        isinstance(tables, dict)
        and all(
            isinstance(t, dict)
            and isinstance(t.get("rows"), int)
            and isinstance(t.get("sha256"), str)
            for t in tables.values()
        )
        and isinstance(blobs, dict)
        and isinstance(blobs.get("count"), int)
    ):
        raise ArchiveError(f"{path}: its {MANIFEST} does not list the tables and blobs.")
    return manifest


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    source = tar.extractfile(member)
    if source is None:
        raise ArchiveError(f"{path}: {member.name} is not a file.")
    try:
        return source.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path} is damaged or truncated in {member.name} ({exc}).") from None


def _copy(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> Iterator[bytes]:
    source = tar.extractfile(member)
    if source is None:
        raise ArchiveError(f"{path}: {member.name} is not a file.")
    left = member.size
    try:
        while left:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path} is damaged or truncated in {member.name} ({exc}).") from None
    if left:
        raise ArchiveError(f"{path} is truncated in {member.name}.")


def _check_table(
    tar: tarfile.TarFile, member: tarfile.TarInfo, listed: dict[str, Any], out: Path, path: Path
) -> None:
    digest = hashlib.sha256()
    lines = 0
    with out.open("wb") as copy:
        for chunk in _copy(tar, member, path):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            copy.write(chunk)
    if digest.hexdigest() != listed["sha256"] or lines != listed["rows"]:
        raise ArchiveError(
            f"{path}: {member.name} does not match its sha256 in {MANIFEST} (the archive was "
            "altered or damaged)."
        )


def _place_blob(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    sha256: str,
    blobs: BlobStore,
    placed: list[str],
    path: Path,
) -> None:
    writer = blobs.new_writer(sha256)  # recorded in the manifest: sent on the way (S3)
    try:
        write_all(writer, _copy(tar, member, path))
        digests = writer.finish()
        if digests.sha256 != sha256:
            raise ArchiveError(
                f"{path}: the bytes of blobs/{sha256} have sha256 {digests.sha256} (the archive "
                "was altered or damaged)."
            )
        if blobs.place(writer, sha256, digests.size):
            placed.append(sha256)
    finally:
        writer.discard()


def _blobs_listed(files_rows: Path) -> set[str]:
    try:
        with files_rows.open("rb") as rows:
            return {str(json.loads(line)["sha256"]) for line in rows}
    except (ValueError, TypeError, KeyError) as exc:
        raise ArchiveError(f"the rows of files cannot be read ({exc!r}).") from None


def _insert_rows(conn: Connection, table: Table, rows: Path) -> int:
    count = 0
    batch: list[dict[str, Any]] = []
    with rows.open("rb") as lines:
        for line in lines:
            batch.append(_decode(table, json.loads(line)))
            if len(batch) == BATCH:
                conn.execute(table.insert(), batch)
                count += len(batch)
                batch = []
    if batch:
        conn.execute(table.insert(), batch)
        count += len(batch)
    return count


def _advance_sequences(conn: Connection) -> None:
    """PostgreSQL: the rows came with their ids, so each serial's sequence must move past them."""
    for table in exported_tables():
        if "id" in table.columns and table.columns["id"].autoincrement is not False:
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608
                    f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                )
            )
