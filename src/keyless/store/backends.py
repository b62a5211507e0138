"""The blob store the settings name: the one place a backend is chosen.

`create_app` and `keyless gc` (`Admin.collect_garbage`) call it; nothing else builds one.
"""

from __future__ import annotations

from pathlib import Path

from keyless.config import StorageSettings
from keyless.store.blobs import BlobStore, LocalBlobStore


def open_blob_store(storage: StorageSettings, local_folder: Path) -> BlobStore:
    """The bucket `storage.blobs` names (checked: ConfigError if it does not answer), or the
    folder `local_folder` when it names none."""
    if storage.blobs is None:
        return LocalBlobStore(local_folder)
    from keyless.store.s3_blobs import S3BlobStore  # boto3 takes a while to import

    return S3BlobStore.from_settings(storage)
