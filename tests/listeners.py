"""A TCP port that stays open from scan to scan, for tests that scan the same host twice."""

from __future__ import annotations

import contextlib
import socket
import threading


class Listener:
    """A port that accepts every connection and closes it at once (so the backlog never
    fills and the port stays open from scan to scan)."""

    def __init__(self, port: int, host: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)
