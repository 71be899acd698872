"""Detectors: port scans, brute force and ping sweeps, derived from streams of events.

``Detectors.feed(event)`` returns the events it derives (usually none). Each detector keeps a
little state per source address in an LRU table with a hard size limit, and forgets a
source once it has been quiet for a whole window, so a flood of spoofed addresses costs a
bounded amount of memory. One detection yields ONE derived event for that source and
window: after firing, the detector starts counting afresh and stays quiet until the window
that fired is over.

Windows are measured on the events' own times (a replayed log is judged as it happened),
not on the wall clock. Nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Generic, TypeVar

from mamori.model.watch import Danger, Event, EventType

__all__ = ["DetectConfig", "Detectors", "technique_of"]

# What a detection is worth on its own (an incident takes the highest danger it holds).
SCAN_DANGER = Danger.LOW
STEALTH_SCAN_DANGER = Danger.MEDIUM  # NULL/FIN/XMAS: crafted packets, not a stray connect
SWEEP_DANGER = Danger.LOW
BRUTE_DANGER = Danger.MEDIUM
SHOWN_PORTS = 50  # ports listed in a scan.ports event
SHOWN_NAMES = 10  # usernames listed in a bruteforce event


@dataclass(frozen=True, slots=True)
class DetectConfig:
    """Thresholds: ``*_count`` things within ``*_window`` seconds from one source."""

    scan_ports: int = 5
    scan_window: float = 60.0
    brute_failures: int = 5
    brute_window: float = 300.0
    sweep_hosts: int = 4
    sweep_window: float = 60.0
    max_sources: int = 10_000  # per detector

    def __post_init__(self) -> None:
        for name in ("scan_ports", "brute_failures", "sweep_hosts", "max_sources"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("scan_window", "brute_window", "sweep_window"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds")


def technique_of(event: Event) -> str:
    """How a port was touched: connect, udp, or the TCP flags of a logged packet or a raw
    ``tcp.probe`` (syn, null, fin, xmas; other flag mixes: ``tcp``)."""
    if event.type is EventType.DECOY_UDP or event.proto == "udp":
        return "udp"
    if event.type is EventType.TCP_PROBE:
        named = event.fields.get("technique", "")
        return named if named in ("syn", "null", "fin", "xmas") else "tcp"
    if event.type is EventType.PORT_KNOCK:
        named = event.fields.get("technique", "")
        return named if named in ("syn", "connect", "null", "fin", "xmas") else "tcp"
    if event.type is not EventType.FIREWALL_DROP:
        return "connect"
    raw = event.fields.get("flags")
    if raw is None:
        return "tcp"
    flags = {f.upper() for f in raw.replace(",", " ").split()}
    flags.discard("RES")  # iptables prints reserved bits as RES=0x00 in some formats
    if not flags:
        return "null"
    if flags == {"SYN"}:
        return "syn"
    if flags == {"FIN"}:
        return "fin"
    if {"FIN", "PSH", "URG"} <= flags and not flags & {"SYN", "ACK", "RST"}:
        return "xmas"
    return "tcp"


K = TypeVar("K")
S = TypeVar("S")


class _Lru(Generic[K, S]):
    """A dict with a size bound: the least recently touched entries go first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: OrderedDict[K, S] = OrderedDict()
        self.evicted = 0

    def get(self, key: K) -> S | None:
        state = self.items.get(key)
        if state is not None:
            self.items.move_to_end(key)
        return state

    def put(self, key: K, state: S) -> None:
        self.items[key] = state
        self.items.move_to_end(key)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)
            self.evicted += 1

    def __len__(self) -> int:
        return len(self.items)


@dataclass(slots=True)
class _Window:
    """Distinct keys seen in a sliding window (bounded by the threshold), plus the time until
    which a detection already made keeps this source quiet."""

    seen: OrderedDict[object, datetime] = field(default_factory=OrderedDict)
    quiet_until: datetime | None = None
    last: datetime | None = None
    techniques: Counter[str] = field(default_factory=Counter)
    kinds: dict[object, str] = field(default_factory=dict)  # key -> how it was touched
    names: dict[str, None] = field(default_factory=dict)
    guessed: set[str] = field(default_factory=set)  # techniques judged by a fingerprint
    certain: set[str] = field(default_factory=set)  # techniques seen for what they are
    total: int = 0

    def expire(self, now: datetime, window: timedelta) -> None:
        while self.seen:
            key, when = next(iter(self.seen.items()))
            if when >= now - window:
                break
            del self.seen[key]
            self.kinds.pop(key, None)

    def reset(self) -> None:
        self.seen.clear()
        self.techniques.clear()
        self.kinds.clear()
        self.names.clear()
        self.guessed.clear()
        self.certain.clear()
        self.total = 0


class _Counter:
    """One kind of detection: fires when ``threshold`` distinct keys from one source fall in
    ``window``. ``distinct=False`` counts every event (brute force: each failure counts)."""

    def __init__(self, threshold: int, window: float, max_sources: int, distinct: bool) -> None:
        self.threshold = threshold
        self.window = timedelta(seconds=window)
        self.distinct = distinct
        self.states: _Lru[object, _Window] = _Lru(max_sources)
        self._serial = 0

    def add(
        self, who: object, key: object, when: datetime, *, tag: str = "", name: str = "",
        guess: bool = False,
    ) -> _Window | None:
        """Count ``key`` for ``who`` at ``when`` (``tag``: how, ``name``: a username to
        remember); returns the state when this event made it fire, else None."""
        state = self.states.get(who)
        if state is None:
            state = _Window()
            self.states.put(who, state)
        elif state.last is not None and when - state.last > self.window:
            state.reset()  # quiet for a whole window: start afresh
        state.last = when if state.last is None else max(state.last, when)
        if state.quiet_until is not None and when < state.quiet_until:
            return None  # already reported for this window
        state.quiet_until = None
        if not self.distinct:
            self._serial += 1
            key = (key, self._serial)
        state.seen.pop(key, None)
        state.seen[key] = when
        state.total += 1
        if tag:
            state.techniques[tag] += 1
            (state.guessed if guess else state.certain).add(tag)
            # One technique per port: a completed connection outranks the raw probe (the SYN
            # of a connect scan is seen by both the raw socket and the decoy).
            if state.kinds.get(key) != "connect":
                state.kinds[key] = tag
        if name and len(state.names) < SHOWN_NAMES:
            state.names[name[:64]] = None
        state.expire(when, self.window)
        # Bounded: at most ``threshold`` keys are ever held, since reaching it fires.
        if len(state.seen) >= self.threshold:
            state.quiet_until = min(state.seen.values()) + self.window
            return state
        return None

    def prune(self, now: datetime) -> int:
        """Forget sources quiet for a whole window before ``now``; returns how many."""
        stale = [
            who
            for who, s in self.states.items.items()
            if s.last is not None and now - s.last > self.window
            and (s.quiet_until is None or s.quiet_until <= now)
        ]
        for who in stale:
            del self.states.items[who]
        return len(stale)


_SCAN_TYPES = frozenset({EventType.DECOY_CONNECT, EventType.DECOY_UDP, EventType.FIREWALL_DROP,
                         EventType.TCP_PROBE, EventType.PORT_KNOCK})
_BRUTE_TYPES = frozenset({EventType.AUTH_FAILURE, EventType.DECOY_LOGIN})
_ECHO_TYPES = frozenset({"8", "128"})  # echo request, ICMPv4 and ICMPv6


def _service_of(event: Event) -> str:
    """The service a login attempt went to: a decoy's persona, else sshd for auth logs."""
    named = event.fields.get("service") or event.fields.get("persona")
    if named:
        return named
    if event.type is EventType.DECOY_LOGIN:
        return f"{event.proto or 'tcp'}/{event.dst_port}" if event.dst_port else "decoy"
    return "ssh"


class Detectors:
    """All detectors behind one ``feed``. Not thread-safe: call from one thread."""

    def __init__(self, config: DetectConfig | None = None) -> None:
        self.config = config or DetectConfig()
        c = self.config
        self._scan = _Counter(c.scan_ports, c.scan_window, c.max_sources, distinct=True)
        self._brute = _Counter(c.brute_failures, c.brute_window, c.max_sources, distinct=False)
        self._sweep = _Counter(c.sweep_hosts, c.sweep_window, c.max_sources, distinct=True)

    @property
    def tracked_sources(self) -> int:
        """Per-source states held, all detectors together (for tests and stats)."""
        return len(self._scan.states) + len(self._brute.states) + len(self._sweep.states)

    @property
    def evicted(self) -> int:
        return self._scan.states.evicted + self._brute.states.evicted + self._sweep.states.evicted

    def prune(self, now: datetime) -> int:
        return self._scan.prune(now) + self._brute.prune(now) + self._sweep.prune(now)

    def feed(self, event: Event) -> list[Event]:
        """Derived events (scan.ports, bruteforce, scan.ping_sweep) that ``event`` completes."""
        if event.src is None:
            return []
        out: list[Event] = []
        if (event.type in _SCAN_TYPES and event.dst_port is not None
                and event.proto not in ("icmp", "icmpv6")):
            out.extend(self._feed_scan(event))
        if event.type in _BRUTE_TYPES:
            out.extend(self._feed_brute(event))
        if event.type is EventType.ICMP_ECHO or (
            event.type is EventType.FIREWALL_DROP and event.proto in ("icmp", "icmpv6")
            and event.fields.get("icmp_type", "8") in _ECHO_TYPES
        ):
            out.extend(self._feed_sweep(event))
        return out

    def feed_all(self, events: Iterable[Event]) -> list[Event]:
        return [d for e in events for d in self.feed(e)]

    def _feed_scan(self, event: Event) -> list[Event]:
        assert event.src is not None
        technique = technique_of(event)
        key = (event.proto or "tcp", event.dst_port or 0)
        guess = event.fields.get("certainty") == "likely"
        fired = self._scan.add(event.src, key, event.time, tag=technique, guess=guess)
        if fired is None:
            return []
        ports = sorted(k for k in fired.seen if isinstance(k, tuple))
        shown = ",".join(f"{port}/{proto}" for proto, port in ports[:SHOWN_PORTS])
        per_port = Counter(fired.kinds[k] for k in fired.seen if k in fired.kinds)
        top = (per_port or fired.techniques).most_common(1)[0][0]
        stealth = top in ("null", "fin", "xmas")
        # syn or connect told apart by a SYN's fingerprint only (knocks on closed ports)
        likely = top in fired.guessed and top not in fired.certain
        how = f"{top}, likely" if likely else top
        derived = _derived(
            event,
            EventType.SCAN_PORTS,
            "detector:portscan",
            STEALTH_SCAN_DANGER if stealth else SCAN_DANGER,
            {
                "ports": shown,
                "count": str(len(ports)),
                "technique": top,
                "certainty": "likely" if likely else "seen",
                "window": f"{self.config.scan_window:g}",
            },
            f"{len(ports)} ports in {self.config.scan_window:g} s ({how}): {shown}",
        )
        fired.reset()
        return [derived]

    def _feed_brute(self, event: Event) -> list[Event]:
        assert event.src is not None
        service = _service_of(event)
        who = (event.src, service)
        user = event.fields.get("username", "")
        fired = self._brute.add(who, None, event.time, name=user)
        if fired is None:
            return []
        names = ",".join(fired.names)
        derived = _derived(
            event,
            EventType.BRUTE_FORCE,
            "detector:bruteforce",
            BRUTE_DANGER,
            {
                "service": service,
                "failures": str(len(fired.seen)),
                "usernames": names,
                "window": f"{self.config.brute_window:g}",
            },
            f"{len(fired.seen)} failed logins to {service} in {self.config.brute_window:g} s"
            + (f" (users: {names})" if names else ""),
        )
        fired.reset()
        return [derived]

    def _feed_sweep(self, event: Event) -> list[Event]:
        assert event.src is not None
        if event.dst is None:
            return []
        fired = self._sweep.add(event.src, event.dst, event.time)
        if fired is None:
            return []
        hosts = sorted(str(h) for h in fired.seen)
        derived = _derived(
            event,
            EventType.SCAN_PING_SWEEP,
            "detector:pingsweep",
            SWEEP_DANGER,
            {
                "hosts": ",".join(hosts[:SHOWN_PORTS]),
                "count": str(len(hosts)),
                "window": f"{self.config.sweep_window:g}",
            },
            f"echo requests to {len(hosts)} addresses in {self.config.sweep_window:g} s",
        )
        fired.reset()
        return [derived]


def _derived(
    trigger: Event,
    type_: EventType,
    source: str,
    danger: Danger,
    fields: dict[str, str],
    text: str,
) -> Event:
    return Event(
        time=trigger.time,
        type=type_,
        source=source,
        src=trigger.src,
        dst=trigger.dst,
        proto=trigger.proto,
        danger=danger,
        fields=MappingProxyType(fields),
        excerpt=text[:512],
    )
