"""Where the static copy of the read path is kept: the `StaticTarget` interface and a folder.

The writer (`index/static.py`) decides what the tree holds — pages, `.metadata` files,
distributions — and names each by its URL path relative to the site root (`prod/simple/
index.html`, `files/<sha256>/<filename>`). A target only stores bytes under such paths, so a
bucket prefix served by a bucket's website hosting or a CDN is one more class with these
methods (a distribution then becomes a server-side copy of its blob).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from keyless.config import Settings

from .blobs import BlobStore, LocalBlobStore

# Temp files are named so a rebuild running beside a writer leaves the writer's alone.
TEMP_PREFIX = ".tmp-"
# A temp file this old was left by a writer that died: a rebuild removes it.
STALE_TEMP_SECONDS = 60.0


class StaticTarget(Protocol):
    """Bytes under site paths. Every change is atomic: a reader sees the old bytes or the new,
    never a part."""

    def put(self, path: str, data: bytes) -> bool:
        """Store `data` at `path` unless it holds these very bytes; whether it wrote."""
        ...

    def link_blob(self, path: str, sha256: str) -> bool:
        """Make `path` serve the bytes of blob `sha256`; False when this target cannot (the
        blob is elsewhere: the web server then proxies `/files/` to keyless)."""
        ...

    def remove(self, path: str) -> bool:
        """Remove `path` (and folders it leaves empty); whether it was there."""
        ...

    def paths(self) -> Iterator[str]:
        """Every path stored (not temp files of writes under way)."""
        ...

    def describe(self) -> str:
        """Where the tree is, for messages."""
        ...


class FolderTarget:
    """`StaticTarget` in a local folder, which nginx (or any web server) serves as its root.

    A distribution is a hard link to its blob when both are on one file system (no second
    copy; nginx needs no access to the blob folder), else a symbolic link to it.
    """

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._blobs = blobs

    def describe(self) -> str:
        return str(self.root)

    def _file(self, path: str) -> Path:
        parts = path.split("/")
        # The writer builds paths from names the index validated; this is the last guard.
        if not path or any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            raise ValueError(f"not a path inside the static tree: {path!r}")
        return self.root.joinpath(*parts)

    def put(self, path: str, data: bytes) -> bool:
        target = self._file(path)
        try:
            if target.read_bytes() == data:
                return False  # unchanged: nginx's ETag (mtime and size) stays valid too
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        temp = self._temp_beside(target)
        try:
            with temp.open("xb") as file:
                file.write(data)
            os.chmod(temp, 0o644)  # served by a web server, which may run as another user
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return True

    def link_blob(self, path: str, sha256: str) -> bool:
        if not isinstance(self._blobs, LocalBlobStore):
            return False
        source = self._blobs.path_for(sha256)
        target = self._file(path)
        try:
            if os.path.samefile(source, target):
                return True
        except FileNotFoundError:
            pass
        temp = self._temp_beside(target)
        try:
            try:
                os.link(source, temp)
            except FileNotFoundError:
                return False  # no such blob (fsck reports it): nothing to serve
            except OSError:  # another file system, or one without hard links
                os.symlink(source, temp)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return True

    def remove(self, path: str) -> bool:
        target = self._file(path)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        folder = target.parent
        while folder != self.root:
            try:
                folder.rmdir()  # only when empty: a page's folder goes with its last page
            except OSError:
                break
            folder = folder.parent
        return True

    def paths(self) -> Iterator[str]:
        # Strings, not Path objects: a rebuild lists every file of the tree (pathlib cost a
        # fifth of a rebuild that wrote nothing).
        now = time.time()
        root = str(self.root)
        for folder, _dirs, names in os.walk(root):
            relative = folder[len(root) + 1 :].replace(os.sep, "/")
            prefix = f"{relative}/" if relative else ""
            for name in names:
                if name.startswith(TEMP_PREFIX):
                    full = os.path.join(folder, name)
                    try:
                        if now - os.lstat(full).st_mtime > STALE_TEMP_SECONDS:
                            os.unlink(full)
                    except FileNotFoundError:
                        pass
                    continue
                yield prefix + name

    def _temp_beside(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"


def open_static_target(settings: Settings, blobs: BlobStore) -> StaticTarget | None:
    """The target `[static]` names, or None when the server keeps no static tree.

    A bucket is reached with `[storage]`'s endpoint, region and addressing style, checked as
    the blob store's bucket is (ConfigError with one line to fix it).
    """
    if settings.static_bucket is not None:
        # Here: boto3 is loaded only by a server that uses S3.
        from dataclasses import replace

        from .s3_blobs import S3BlobStore
        from .s3_static import BucketTarget

        store = S3BlobStore.from_settings(replace(settings.storage, blobs=settings.static_bucket))
        return BucketTarget(store.client, store.bucket, store.prefix, blobs)
    if settings.static_folder is None:
        return None
    return FolderTarget(settings.static_folder, blobs)
