"""Sliding-window rate limits, in memory, bounded, thread-safe; the clock is injected.

``acquire`` takes a hit on several (limiter, key) pairs at once or on none of them, and says
how long to wait when refused (the Retry-After). Memory is bounded: each limiter keeps at most
``max_keys`` keys (least recently used dropped first) and at most ``limit`` timestamps a key.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

Clock = Callable[[], float]


class Window:
    def __init__(self, limit: int, seconds: float, *, clock: Clock = time.monotonic,
                 max_keys: int = 100_000) -> None:
        if limit < 1 or seconds <= 0:
            raise ValueError("a rate limit needs limit >= 1 and a positive window")
        self.limit, self.seconds, self.clock, self.max_keys = limit, seconds, clock, max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def _fresh(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            hits = deque()
            self._hits[key] = hits
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
        else:
            self._hits.move_to_end(key)
        while hits and hits[0] <= now - self.seconds:
            hits.popleft()
        return hits

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may be hit again (0: now)."""
        hits = self._fresh(key, now)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.seconds - now)

    def hit(self, key: str, now: float) -> None:
        self._fresh(key, now).append(now)

    def unhit(self, key: str) -> None:
        hits = self._hits.get(key)
        if hits:
            hits.pop()


_LOCK = threading.Lock()


def acquire(pairs: Sequence[tuple[Window, str | None]]) -> int | None:
    """Hit every (window, key) or none; None when allowed, else the whole seconds to wait.
    Pairs whose key is None are skipped."""
    live = [(w, k) for w, k in pairs if k is not None]
    with _LOCK:
        waits = [w.wait(k, w.clock()) for w, k in live]
        worst = max(waits, default=0.0)
        if worst > 0:
            return max(1, math.ceil(worst))
        for w, k in live:
            w.hit(k, w.clock())
    return None


def release(pairs: Sequence[tuple[Window, str | None]]) -> None:
    """Give back the hits of an ``acquire`` whose request was refused later on."""
    with _LOCK:
        for w, k in pairs:
            if k is not None:
                w.unhit(k)
