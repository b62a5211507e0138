"""A TCP relay in front of a live index that holds an upload in flight for as long as a test
needs: once a connection has passed `limit` bytes towards the index, it passes no more while
the relay is armed. The client's send then blocks, as on a slow network, whatever the
machine's speed — a test that interrupts a publish "while a big file is on its way" does not
race the upload."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

CHUNK = 65536


class StallingRelay:
    def __init__(self, target_url: str, limit: int) -> None:
        host, port = target_url.split("://")[1].split(":")
        self._target = (host, int(port))
        self._limit = limit
        self._released = threading.Event()  # set: nothing is held any more
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def disarm(self) -> None:
        """From now on, pass everything (held connections go on too)."""
        self._released.set()

    def close(self) -> None:
        self._released.set()
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> StallingRelay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            index = socket.create_connection(self._target)
            self._sockets += [client, index]
            threading.Thread(target=self._pump, args=(client, index, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(index, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, towards_index: bool) -> None:
        passed = 0
        try:
            while data := source.recv(CHUNK):
                if towards_index and passed + len(data) > self._limit:
                    self._released.wait()
                sink.sendall(data)
                passed += len(data)
        except OSError:  # the other end, or the test, closed it
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
