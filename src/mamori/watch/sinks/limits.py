"""Token-bucket rate limits for one sink: per source address and global (pure; the clock
is passed in). What a limit holds back is counted and turned into a summary notice —
"12 more alerts from 198.51.100.7 suppressed" — once the source's bucket has a token again
(with its next alert, or by :meth:`Limiter.due` when it went quiet)."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from mamori.watch.settings import RateLimit

__all__ = ["MAX_SOURCES", "Limiter", "Suppressed", "TokenBucket"]

MAX_SOURCES = 4096  # per-source buckets kept (least recently used ones are forgotten)
NO_SOURCE = "-"


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity / period`` per second; starts full."""

    capacity: float
    period: float
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity,
                              self.tokens + (now - self.stamp) * self.capacity / self.period)
        self.stamp = now

    def ready(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


@dataclass(frozen=True, slots=True)
class Suppressed:
    """``count`` alerts held back: from ``src`` (per-source limit), or, when ``src`` is
    None, by the global limit (``top``: the sources that sent most of them)."""

    count: int
    src: str | None
    limit: RateLimit
    top: tuple[tuple[str, int], ...] = ()
    global_limit: bool = True  # src None: held back by the global limit (else per source)

    def text(self) -> str:
        noun = "alert" if self.count == 1 else "alerts"
        if self.src is not None:
            return f"{self.count} more {noun} from {self.src} suppressed (limit {self.limit})"
        most = ", ".join(f"{s} ({n})" for s, n in self.top)
        which = "global limit" if self.global_limit else "limit per source"
        return (f"{self.count} more {noun} suppressed ({which} {self.limit})"
                + (f"; most from {most}" if most else ""))


@dataclass
class Limiter:
    per_source: RateLimit | None = None
    global_: RateLimit | None = None
    buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    pending: dict[str, int] = field(default_factory=dict)  # per-source suppressed, unreported
    pending_global: int = 0
    global_by_src: Counter[str] = field(default_factory=Counter)
    forgotten: int = 0  # suppressed counts of sources evicted before they were reported
    _global: TokenBucket | None = None

    def __post_init__(self) -> None:
        if self.global_ is not None:
            self._global = TokenBucket(self.global_.count, self.global_.period)

    def _bucket(self, key: str) -> TokenBucket | None:
        if self.per_source is None:
            return None
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_SOURCES:
                self._evict()
            bucket = TokenBucket(self.per_source.count, self.per_source.period)
            self.buckets[key] = bucket
        else:
            self.buckets.move_to_end(key)
        return bucket

    def _evict(self) -> None:
        old, _ = self.buckets.popitem(last=False)
        lost = self.pending.pop(old, 0)
        if lost:
            self.forgotten += lost
            self.pending_global += lost  # still reported, in the global summary
            self.global_by_src[old] += lost

    def admit(self, src: str | None, now: float) -> tuple[bool, list[Suppressed]]:
        """May an alert from ``src`` go out now? When it may, also the summaries of what
        was held back before it (to be sent first)."""
        key = src or NO_SOURCE
        bucket = self._bucket(key)
        if bucket is not None and not bucket.ready(now):
            self.pending[key] = self.pending.get(key, 0) + 1
            return False, []
        if self._global is not None and not self._global.ready(now):
            self.pending_global += 1
            if key in self.global_by_src or len(self.global_by_src) < MAX_SOURCES:
                self.global_by_src[key] += 1
            return False, []
        if bucket is not None:
            bucket.take(now)
        if self._global is not None:
            self._global.take(now)
        return True, self._summaries(key)

    def _summaries(self, key: str) -> list[Suppressed]:
        out: list[Suppressed] = []
        count = self.pending.pop(key, 0)
        if count and self.per_source is not None:
            out.append(Suppressed(count, key, self.per_source))
        if self.pending_global:
            out.append(self._global_summary())
        return out

    def _global_summary(self) -> Suppressed:
        limit = self.global_ or self.per_source
        assert limit is not None  # something was suppressed, so some limit is set
        summary = Suppressed(self.pending_global, None, limit,
                             tuple(self.global_by_src.most_common(3)),
                             global_limit=self.global_ is not None)
        self.pending_global = 0
        self.global_by_src.clear()
        return summary

    def due(self, now: float, *, final: bool = False) -> list[Suppressed]:
        """Summaries for sources that went quiet with alerts held back: once their bucket
        (and the global one) has a token again, or all of them when ``final``."""
        out: list[Suppressed] = []
        global_ready = final or self._global is None or self._global.ready(now)
        if self.per_source is not None:
            for key in list(self.pending):
                bucket = self.buckets.get(key)
                if final or (global_ready and (bucket is None or bucket.ready(now))):
                    out.append(Suppressed(self.pending.pop(key), key, self.per_source))
        if self.pending_global and global_ready:
            out.append(self._global_summary())
        return out
