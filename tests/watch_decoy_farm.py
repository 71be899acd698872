"""Decoys running on an asyncio loop in a background thread, for tests that drive them with
real clients (subprocesses) from the test thread. Events are collected in ``events``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mamori.model.watch import Event, EventType
from mamori.watch.decoys import DecoyLimits, DecoyServer, DecoySpec

T = TypeVar("T")


class DecoyFarm:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.events: list[Event] = []
        self.servers: list[DecoyServer] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, spec: str | DecoySpec, limits: DecoyLimits | None = None) -> DecoyServer:
        parsed = DecoySpec.parse(spec) if isinstance(spec, str) else spec
        server = DecoyServer(parsed, self.events.append, limits)
        self.call(server.start())
        self.servers.append(server)
        return server

    def stats(self, server: DecoyServer) -> Any:
        async def snap() -> Any:
            import dataclasses
            return dataclasses.replace(server.stats)
        return self.call(snap())

    def matching(self, dst: str, port: int | None = None,
                 kind: EventType | None = None) -> list[Event]:
        return [e for e in list(self.events) if e.dst == dst
                and (port is None or e.dst_port == port) and (kind is None or e.type == kind)]

    def wait(self, pred: Callable[[list[Event]], bool], dst: str, port: int | None = None,
             timeout: float = 10.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.matching(dst, port)
            if pred(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def close(self) -> None:
        for server in self.servers:
            self.call(server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def types(events: list[Event]) -> list[str]:
    return [str(e.type) for e in events]
