"""Scenario 13: which S3 client streams an upload into a bucket fastest, in the least memory.

keyless receives an upload as network chunks pushed at it (64 KiB here, as uvicorn hands them
over) and must pass them on to the bucket as they arrive. This runs that one job with each
candidate, the same way: 8 MiB parts, at most 3 in flight, into moto's S3 server. Each run is
a process of its own (`python bench/s3_clients.py VARIANT ...` inside bench/.venvs/s3-clients),
so its peak RSS is that client's alone; `measure` in bench/scenarios.py alternates them.

- boto3: the low-level client (create_multipart_upload, upload_part on 3 threads), as
  keyless.store.s3_blobs does; and the same without botocore's default CRC32 of each part;
- obstore: the Rust object_store crate (`open_writer`: it buffers and uploads parts itself);
- aioboto3: boto3's calls on asyncio (aiobotocore), parts as tasks on the event loop.

Prints one JSON line: seconds, MB/s, peak RSS growth in MiB.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

CHUNK = 64 * 1024
PART = 8 * 1024 * 1024
IN_FLIGHT = 3


def chunks(size: int) -> Iterator[bytes]:
    block = os.urandom(PART)  # incompressible, made once: the client's work is measured
    sent = 0
    while sent < size:
        offset = sent % PART
        piece = block[offset : offset + min(CHUNK, size - sent)]
        sent += len(piece)
        yield bytes(piece)  # a new object each time, as a network read is


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


class Peak:
    """The highest RSS seen while the upload runs, sampled every 5 ms on a thread (the
    process's own high-water mark would count its setup too)."""

    def __init__(self) -> None:
        self.start = self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_mib()) - self.start


Upload = Any  # (key, size) -> None, set up with its client first


def with_boto3(
    endpoint: str,
    bucket: str,
    checksums: Literal["when_supported", "when_required"] = "when_supported",
) -> Upload:
    import boto3
    from botocore.config import Config

    # botocore computes a CRC32 of every part by default ("when_supported"); "when_required"
    # leaves that out (keyless computes its own digests of the whole file anyway).
    config = Config(request_checksum_calculation=checksums)
    client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
    client.list_objects_v2(Bucket=bucket, MaxKeys=1)  # connected and signed once before
    return lambda key, size: _boto3_upload(client, bucket, key, size)


def _boto3_upload(client: Any, bucket: str, key: str, size: int) -> None:
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    pool = ThreadPoolExecutor(IN_FLIGHT)
    parts: list[Future[dict[str, Any]]] = []
    pending: list[bytes] = []
    filled = 0

    def send(number: int, data: bytes) -> dict[str, Any]:
        sent = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": sent["ETag"]}

    def hand_over() -> None:
        nonlocal filled
        data = b"".join(pending)
        pending.clear()
        filled = 0
        while sum(not p.done() for p in parts) >= IN_FLIGHT:
            parts[[p.done() for p in parts].index(False)].result()
        parts.append(pool.submit(send, len(parts) + 1, data))

    for chunk in chunks(size):
        pending.append(chunk)
        filled += len(chunk)
        if filled >= PART:
            hand_over()
    if pending:
        hand_over()
    done = [p.result() for p in parts]
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    pool.shutdown()


def with_obstore(endpoint: str, bucket: str) -> Upload:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=endpoint,
        region="us-east-1",
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    obstore.list_with_delimiter(store)  # connected and signed once before

    def upload(key: str, size: int) -> None:
        _obstore_upload(obstore, store, key, size)

    return upload


def _obstore_upload(obstore: Any, store: Any, key: str, size: int) -> None:
    with obstore.open_writer(store, key, buffer_size=PART, max_concurrency=IN_FLIGHT) as writer:
        for chunk in chunks(size):
            writer.write(chunk)


def with_aioboto3(endpoint: str, bucket: str) -> Upload:
    import aioboto3

    session = aioboto3.Session()

    def upload(key: str, size: int) -> None:
        asyncio.run(_aioboto3_upload(session, endpoint, bucket, key, size))

    return upload


async def _aioboto3_upload(session: Any, endpoint: str, bucket: str, key: str, size: int) -> None:
    # The client is made per upload here: aiobotocore's belongs to one event loop.
    async with session.client("s3", endpoint_url=endpoint) as client:
        created = await client.create_multipart_upload(Bucket=bucket, Key=key)
        upload_id = created["UploadId"]
        slots = asyncio.Semaphore(IN_FLIGHT)
        tasks: list[asyncio.Task[dict[str, Any]]] = []

        async def send(number: int, data: bytes) -> dict[str, Any]:
            try:
                sent = await client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
            finally:
                slots.release()
            return {"PartNumber": number, "ETag": sent["ETag"]}

        pending: list[bytes] = []
        filled = 0
        for chunk in chunks(size):
            pending.append(chunk)
            filled += len(chunk)
            if filled >= PART:
                await slots.acquire()
                tasks.append(asyncio.create_task(send(len(tasks) + 1, b"".join(pending))))
                pending, filled = [], 0
        if pending:
            await slots.acquire()
            tasks.append(asyncio.create_task(send(len(tasks) + 1, b"".join(pending))))
        done = list(await asyncio.gather(*tasks))
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )


def with_boto3_no_crc(endpoint: str, bucket: str) -> Upload:
    return with_boto3(endpoint, bucket, checksums="when_required")


VARIANTS = {
    "boto3": with_boto3,
    "boto3 without CRC32": with_boto3_no_crc,
    "obstore": with_obstore,
    "aioboto3": with_aioboto3,
}


def main(argv: list[str]) -> int:
    variant, endpoint, bucket, key, size_mb = argv
    size = int(size_mb) * 1024 * 1024
    upload = VARIANTS[variant](endpoint, bucket)
    memory = Peak()
    started = time.perf_counter()
    upload(key, size)
    seconds = time.perf_counter() - started
    growth = memory.stop()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "mb_s": size / 1024 / 1024 / seconds,
                "growth": growth,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
