"""`keyless ARGS…` with httpcore's HTTP/1.1 connections handing out a `network_stream` other than
httpcore 1.x's, as another httpcore version might; the mirror's first downloads read from it
(index/mirror/download.py). The debug lines of the mirror are logged.

    python -m tests.index.other_httpcore SHAPE python -m keyless ARGS…

(`start_server`'s ``prefix``: the first three words of the rest are dropped). SHAPE is one of
`SHAPES`: `as-is` changes nothing (the mirror must then use the stream), `none` hands out no
stream, `no-read` one without `read`, `read-no-timeout` one whose `read` takes no timeout,
`async-read` one whose `read` is a coroutine function; `no-read-timeout` leaves the stream
but takes the read timeout out of the request's `timeout` extension, where the mirror finds it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import httpcore


class NoRead:
    """A stream that can say what it is connected to, and nothing more."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class ReadNoTimeout(NoRead):
    def read(self, max_bytes: int) -> bytes:
        return bytes(self._stream.read(max_bytes))


class AsyncRead(NoRead):
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return bytes(self._stream.read(max_bytes, timeout))


SHAPES = ("as-is", "none", "no-read", "read-no-timeout", "async-read", "no-read-timeout")


def reshape(shape: str) -> None:
    if shape == "as-is":
        return
    original = httpcore.HTTP11Connection.handle_request

    def handle_request(self: httpcore.HTTP11Connection, request: httpcore.Request) -> Any:
        response = original(self, request)
        if shape == "no-read-timeout":  # httpx's request, whose extensions httpcore is handed
            request.extensions["timeout"] = {
                key: value for key, value in request.extensions["timeout"].items() if key != "read"
            }
            return response
        stream = response.extensions.pop("network_stream")
        if shape == "no-read":
            response.extensions["network_stream"] = NoRead(stream)
        elif shape == "read-no-timeout":
            response.extensions["network_stream"] = ReadNoTimeout(stream)
        elif shape == "async-read":
            response.extensions["network_stream"] = AsyncRead(stream)
        return response

    httpcore.HTTP11Connection.handle_request = handle_request  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    shape, argv = argv[0], argv[1:]
    if shape not in SHAPES:
        raise SystemExit(f"other_httpcore: the shape is one of {SHAPES}, not {shape!r}")
    if argv[1:3] == ["-m", "keyless"]:
        argv = argv[3:]
    reshape(shape)
    logging.getLogger("keyless.mirror").setLevel(logging.DEBUG)
    from keyless.cli.main import main as keyless

    return keyless(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
