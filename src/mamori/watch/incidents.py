"""Incidents: events from one source address folded together while they keep coming.

An incident stays open while its source keeps knocking; ``window`` seconds of silence (on the
events' own clock, or the wall clock given to ``expire``) close it, and the next event from
that address opens a new one. Its ``kind`` is the headline: the most dangerous, most specific
thing seen, by the ranking in ``kind_rank`` (worm.* > exploit.* > bruteforce > scan.ports >
probe.* > scan.ping_sweep > decoy contact > ...). Its danger is the highest danger of its
events. Private and LAN addresses are treated like any other: nothing is whitelisted here.

Memory is bounded: at most ``max_open`` incidents are held (the least recently active one is
closed early when a new source arrives), and each keeps at most ``max_examples`` examples and
``max_signatures`` signature ids. Nothing here does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mamori.model.watch import Danger, Event, EventType, Incident

__all__ = ["Fold", "IncidentGrouper", "event_kind", "kind_rank"]

# Kinds an event gives on its own (signature kinds come from the signature set).
_TYPE_KIND: dict[EventType, str] = {
    EventType.SCAN_PORTS: "scan.ports",
    EventType.SCAN_PING_SWEEP: "scan.ping_sweep",
    EventType.BRUTE_FORCE: "bruteforce",
    EventType.DECOY_CONNECT: "decoy.contact",
    EventType.DECOY_DATA: "decoy.contact",
    EventType.DECOY_LOGIN: "decoy.contact",
    EventType.DECOY_COMMAND: "decoy.contact",
    EventType.DECOY_UDP: "decoy.contact",
    EventType.TCP_PROBE: "decoy.contact",  # a half-open knock on a decoy port
    EventType.PORT_KNOCK: "port.knock",  # a knock on a closed port
    EventType.AUTH_FAILURE: "auth.failure",
    EventType.AUTH_INVALID_USER: "auth.failure",
    EventType.FIREWALL_DROP: "firewall.drop",
    EventType.ICMP_ECHO: "icmp",
    EventType.ICMP_OTHER: "icmp",
}
# Events that never open an incident on their own (ordinary traffic), but join one that is
# open for their source: a successful login after a brute force matters.
_JOIN_ONLY = frozenset({EventType.AUTH_SUCCESS, EventType.HTTP_REQUEST})
_NEVER = frozenset({EventType.SENSOR_ERROR, EventType.SENSOR_LIMIT})

_EXACT_RANK = {
    "bruteforce": 80,
    "scan.ports": 70,
    "scan.ping_sweep": 50,
    "decoy.contact": 40,
    "port.knock": 38,
    "auth.failure": 35,
    "firewall.drop": 30,
    "icmp": 20,
    "http.request": 10,
    "auth.success": 10,
}
_PREFIX_RANK = (("worm.", 100), ("exploit.", 90), ("probe.", 60), ("scanner.", 55))
_OTHER_SIGNATURE_RANK = 60  # traversal and any future family: as specific as a probe


_RANK_CACHE: dict[str, int] = {}


def kind_rank(kind: str) -> int:
    """How much a kind outranks others as an incident's headline (higher wins)."""
    rank = _RANK_CACHE.get(kind)
    if rank is not None:
        return rank
    rank = _EXACT_RANK.get(kind)
    if rank is None:
        rank = next((r for prefix, r in _PREFIX_RANK if kind.startswith(prefix)),
                    _OTHER_SIGNATURE_RANK)
    if len(_RANK_CACHE) < 4096:  # kinds come from signature files: few, but stay bounded
        _RANK_CACHE[kind] = rank
    return rank


def event_kind(event: Event, signature_kind: Callable[[str], str | None]) -> str:
    """The most telling kind one event carries: its best signature's, else its type's."""
    best: str | None = None
    for sig in event.signatures:
        kind = signature_kind(sig) or sig
        if best is None or kind_rank(kind) > kind_rank(best):
            best = kind
    own = _TYPE_KIND.get(event.type, str(event.type))
    if best is None or kind_rank(own) > kind_rank(best):
        return own
    return best


def _describe(event: Event) -> str:
    where = ""
    if event.dst_port is not None:
        where = f" {event.dst or ''}:{event.dst_port}/{event.proto or 'tcp'}"
    what = event.excerpt or event.fields.get("path", "")
    text = f"{event.type}{where}"
    if event.signatures:
        text += f" [{','.join(event.signatures[:3])}]"
    return f"{text}: {what}"[:300] if what else text


@dataclass(slots=True)
class _Open:
    key: int
    src: str
    kind: str
    danger: Danger
    first_seen: datetime
    last_seen: datetime
    count: int = 0
    types: dict[str, None] = field(default_factory=dict)
    signatures: dict[str, None] = field(default_factory=dict)
    examples: list[tuple[int, str]] = field(default_factory=list)
    low_rank: int = -1  # the least telling example's rank once the examples are full
    had_bruteforce: bool = False

    def snapshot(self) -> Incident:
        return Incident(
            src=self.src,
            kind=self.kind,
            danger=self.danger,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            count=self.count,
            types=tuple(self.types),
            signatures=tuple(self.signatures),
            # The most telling first (alerts quote the first one), then in order seen.
            examples=tuple(text for _, text in sorted(self.examples, key=lambda x: -x[0])),
        )


@dataclass(frozen=True, slots=True)
class Fold:
    """What folding one event did: ``key`` names the incident while it is held (the sensor
    maps it to a store id); ``opened`` a new incident; ``escalated`` its kind or danger rose.
    ``incident`` is the incident as it is now (built when asked: folding stays cheap)."""

    key: int
    opened: bool
    escalated: bool
    held: _Open

    @property
    def incident(self) -> Incident:
        return self.held.snapshot()


class IncidentGrouper:
    """Folds events into incidents per source address. Not thread-safe."""

    def __init__(
        self,
        window: float = 900.0,
        *,
        signature_kind: Callable[[str], str | None] | None = None,
        max_open: int = 10_000,
        max_examples: int = 5,
        max_signatures: int = 32,
    ) -> None:
        if not window > 0:
            raise ValueError("the incident window must be more than 0 seconds")
        self.window = timedelta(seconds=window)
        self._signature_kind = signature_kind or (lambda _sig: None)
        self.max_open = max(1, max_open)
        self.max_examples = max(1, max_examples)
        self.max_signatures = max(1, max_signatures)
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._by_key: dict[int, _Open] = {}
        self._closed: list[tuple[int, Incident]] = []
        self._next_key = 1
        self.closed_early = 0  # incidents closed because max_open was reached

    def __len__(self) -> int:
        return len(self._open)

    def add(self, event: Event) -> Fold | None:
        """Fold ``event`` into its source's incident; None when it belongs to none (no source
        address, the sensor's own events, or ordinary traffic with nothing open)."""
        if event.src is None or event.type in _NEVER:
            return None
        kind = event_kind(event, self._signature_kind)
        current = self._open.get(event.src)
        if current is not None and not self._belongs(current, event):
            self._close(event.src)
            current = None
        if current is None:
            if event.type in _JOIN_ONLY and not event.signatures:
                return None
            return self._start(event, kind)
        self._open.move_to_end(event.src)
        return self._fold(current, event, kind)

    def _belongs(self, inc: _Open, event: Event) -> bool:
        return inc.first_seen - self.window <= event.time <= inc.last_seen + self.window

    def _start(self, event: Event, kind: str) -> Fold:
        assert event.src is not None
        inc = _Open(
            key=self._next_key,
            src=event.src,
            kind=kind,
            danger=event.danger,
            first_seen=event.time,
            last_seen=event.time,
        )
        self._next_key += 1
        self._open[event.src] = inc
        self._by_key[inc.key] = inc
        while len(self._open) > self.max_open:
            oldest = next(iter(self._open))
            self._close(oldest)
            self.closed_early += 1
        self._absorb(inc, event, kind)
        return Fold(inc.key, opened=True, escalated=False, held=inc)

    def _fold(self, inc: _Open, event: Event, kind: str) -> Fold:
        before = (kind_rank(inc.kind), inc.danger.rank)
        if kind_rank(kind) > before[0]:
            inc.kind = kind
        if event.danger.rank > before[1]:
            inc.danger = event.danger
        if event.time < inc.first_seen:
            inc.first_seen = event.time
        elif event.time > inc.last_seen:
            inc.last_seen = event.time
        self._absorb(inc, event, kind)
        escalated = (kind_rank(inc.kind), inc.danger.rank) > before
        return Fold(inc.key, opened=False, escalated=escalated, held=inc)

    def _absorb(self, inc: _Open, event: Event, kind: str) -> None:
        inc.count += 1
        inc.types[event.type.value] = None
        for sig in event.signatures:
            if len(inc.signatures) >= self.max_signatures:
                break
            inc.signatures[sig] = None
        if event.type is EventType.BRUTE_FORCE:
            inc.had_bruteforce = True
        elif event.type is EventType.AUTH_SUCCESS and inc.had_bruteforce:
            # Someone guessing passwords got in: the owner must hear about it now.
            if inc.danger.rank < Danger.HIGH.rank:
                inc.danger = Danger.HIGH
            self._example(inc, kind_rank("bruteforce") + 1, event, "login succeeded after "
                          "failed attempts: ")
            return
        self._example(inc, kind_rank(kind), event)

    def _example(self, inc: _Open, rank: int, event: Event, prefix: str = "") -> None:
        full = len(inc.examples) >= self.max_examples
        if full and rank <= inc.low_rank:
            return  # the common case in a flood: nothing to describe
        text = prefix + _describe(event)
        if any(t == text for _, t in inc.examples):
            return
        if not full:
            inc.examples.append((rank, text))
        else:
            # A more telling example replaces the least telling one (the latest of equals).
            low = min(range(len(inc.examples)), key=lambda i: (inc.examples[i][0], -i))
            inc.examples[low] = (rank, text)
        if len(inc.examples) >= self.max_examples:
            inc.low_rank = min(r for r, _ in inc.examples)

    def _close(self, src: str) -> None:
        inc = self._open.pop(src)
        del self._by_key[inc.key]
        self._closed.append((inc.key, inc.snapshot()))

    def snapshot(self, key: int) -> Incident | None:
        """The incident ``key`` as it is now, while it is open (None once closed)."""
        inc = self._by_key.get(key)
        return None if inc is None else inc.snapshot()

    def expire(self, now: datetime) -> int:
        """Close incidents whose source has been quiet for a whole window before ``now``."""
        stale = [src for src, inc in self._open.items() if now - inc.last_seen > self.window]
        for src in stale:
            self._close(src)
        return len(stale)

    def close_all(self) -> None:
        for src in list(self._open):
            self._close(src)

    def drain_closed(self) -> list[tuple[int, Incident]]:
        """Incidents closed since the last call, with their keys (the final state)."""
        out, self._closed = self._closed, []
        return out
