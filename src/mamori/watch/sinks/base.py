"""What every sink is: ``start``, ``send`` one alert, ``aclose`` (all on the loop thread).

``send`` may take time (a webhook retrying, an SMTP dialogue): the router calls it from the
sink's own worker task, never from ``publish``, so a slow sink only fills its own bounded
queue. Blocking calls (file writes, smtplib) run in the sink's single worker thread
(:class:`ThreadWorker`), so they never stall the event loop either.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from mamori.watch.sinks.alert import Alert

__all__ = ["Sink", "SinkError", "ThreadWorker"]

T = TypeVar("T")


class SinkError(Exception):
    """One alert could not be delivered; the message says why (one line)."""


class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def send(self, alert: Alert) -> None: ...

    async def aclose(self) -> None: ...


class ThreadWorker:
    """One thread per sink for blocking I/O, in order."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mamori-{name}")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        # A call still stuck in the thread is bounded by its own timeout; do not wait here.
        self._pool.shutdown(wait=False, cancel_futures=True)
