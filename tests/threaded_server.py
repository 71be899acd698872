"""One small threaded TCP server for the faithful fakes the tests run (the checks under test
run their own event loop in the test thread, so the fakes serve from threads)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

Handler = Callable[[socket.socket], None]


class ThreadedServer:
    """Accept on host:port in a thread; ``handle(conn)`` serves each connection in its own."""

    def __init__(self, host: str, port: int, handle: Handler, *, timeout: float = 5.0) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_server((host, port))
        self.handle = handle
        self.timeout = timeout
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(self.timeout)
            self.handle(conn)

    def _loop(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=2)
