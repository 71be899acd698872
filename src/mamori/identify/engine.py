"""Service identification: one matcher engine applying the probe table to what answers.

Order of probes on a TCP endpoint: the NULL probe (wait briefly for a banner), then probes
whose port hint names this port, then the rest by cost; stop at the first confirmed match.
A "likely" match moves the probes that can confirm its service to the front. When the NULL
probe draws silence, its connection is reused for the next probe, so a client-speaks-first
service (HTTP) is named within two connections. A confirmed TLS ServerHello re-runs the
table inside TLS. Every probe is bounded by ``Limits`` and the whole endpoint by ``budget``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from mamori.identify.registry import BuildContext
from mamori.identify.table import Matcher, Probe, ProbeTable, default_table, first_match, render
from mamori.model import ErrorKind, ProbeError, Proto, Service
from mamori.net.stream import BoundedStream, Limits, ProbeFailure, insecure_tls_context

__all__ = ["banner_excerpt", "identify_tcp", "identify_udp", "udp_payload"]

_BANNER_CHARS = 256
# Kinds that mean "this peer is hostile or broken": stop probing it, keep the error.
_HOSTILE = frozenset({ErrorKind.TOO_LARGE, ErrorKind.TRICKLE})
# A peer that closes (or resets) this many connections in a row without a byte is tcpwrapped
# or refusing us; more probes would only repeat that.
_MAX_SILENT_CLOSES = 3
_MIN_PROBE_TIME = 0.05
# How long one probe runs alone before others join it (see _Session.run_layer).
_HEAD_START = 0.5
_PARALLEL = 5

# (probe, reply or partial reply, failure, ran on the NULL probe's connection)
_Outcome = tuple[Probe, bytes, ProbeFailure | None, bool]


def banner_excerpt(data: bytes, limit: int = _BANNER_CHARS) -> str:
    """A printable, capped excerpt of a reply: text kept, other bytes as \\xHH escapes."""
    out: list[str] = []
    size = 0
    for byte in data:
        if 0x20 <= byte < 0x7F:
            piece = chr(byte)
        elif byte == 0x0D:
            piece = "\\r"
        elif byte == 0x0A:
            piece = "\\n"
        else:
            piece = f"\\x{byte:02x}"
        size += len(piece)
        if size > limit:
            break
        out.append(piece)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Hit:
    matcher: Matcher
    values: dict[str, str]
    probe: Probe
    reply: bytes


@dataclass
class _LayerResult:
    hit: _Hit | None = None  # first confirmed match
    likely: _Hit | None = None
    unmatched: bytes | None = None  # first reply that matched nothing
    unmatched_count: int = 0
    tls_version: str | None = None
    hostile: bool = False
    answered: bool = False
    errors: list[ProbeError] = field(default_factory=list)


def _ordered(probes: Iterable[Probe], port: int, tls: bool) -> list[Probe]:
    """NULL first, then port-hinted probes by cost, then the rest by cost (table order ties)."""
    eligible = [p for p in probes if p.runs_in(tls)]
    null = [p for p in eligible if p.is_null]
    hinted = sorted((p for p in eligible if not p.is_null and port in p.ports),
                    key=lambda p: p.cost)
    rest = sorted((p for p in eligible if not p.is_null and port not in p.ports),
                  key=lambda p: p.cost)
    return null + hinted + rest


def _confirms(probe: Probe, service: str) -> bool:
    return any(m.service == service and m.confidence == "confirmed" for m in probe.matchers)


def _service(hit: _Hit, *, tls: bool, extra: Mapping[str, str] | None = None) -> Service:
    matcher = hit.matcher
    values = hit.values
    fields = {k: v for k, t in matcher.extra.items() if (v := render(t, values)) is not None}
    fields.update(extra or {})
    return Service(
        name=matcher.service,
        product=render(matcher.product, values),
        version=render(matcher.version, values),
        tls=tls,
        confidence=matcher.confidence,
        method=hit.probe.name + ("+tls" if tls else ""),
        banner=banner_excerpt(hit.reply),
        extra=MappingProxyType(fields),
    )


class _Session:
    """One endpoint's identification: the clock, the budget and the probes' outcomes."""

    def __init__(self, address: str, port: int, *, table: ProbeTable, limits: Limits,
                 budget: float, banner_wait: float, ctx: BuildContext) -> None:
        self.address = address
        self.port = port
        self.table = table
        self.limits = limits
        self.banner_wait = banner_wait
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.ends_at = self.loop.time() + budget
        self.spare: BoundedStream | None = None
        self.head_start = min(_HEAD_START, limits.idle_timeout)
        self.parallel = _PARALLEL
        # Time spent waiting for a free local port is this machine's shortage, not the
        # endpoint's: it extends the budget, up to ``limits.local_wait`` in all.
        self.local_allowance = limits.local_wait

    def _limits(self, *, idle: float | None = None) -> Limits | None:
        left = self.ends_at - self.loop.time()
        if left < _MIN_PROBE_TIME:
            return None
        idle_timeout = self.limits.idle_timeout if idle is None else idle
        return Limits(
            read_cap=self.limits.read_cap,
            idle_timeout=min(idle_timeout, left),
            deadline=min(self.limits.deadline, left),
            connect_timeout=min(self.limits.connect_timeout, left),
            local_wait=self.limits.local_wait,
        )

    def _credit_local_wait(self, waited: float) -> None:
        credit = min(waited, self.local_allowance)
        self.local_allowance -= credit
        self.ends_at += credit

    def _error(self, kind: ErrorKind, detail: str, probe: str) -> ProbeError:
        return ProbeError(self.address, self.port, Proto.TCP, kind, detail,
                          probe=f"identify:{probe}")

    async def _drop_spare(self) -> None:
        if self.spare is not None:
            await self.spare.close()
            self.spare = None

    async def _attempt(
        self, probe: Probe, limits: Limits, tls: bool, result: _LayerResult
    ) -> _Outcome:
        """Run one probe: (probe, reply or partial reply, failure or None, reused connection?).
        """
        stream, self.spare = self.spare, None
        reused = stream is not None
        keep = False
        try:
            if stream is None:
                stream = await BoundedStream.open(
                    self.address, self.port, limits,
                    insecure_tls_context() if tls else None, self.ctx.server_hostname)
                self._credit_local_wait(stream.local_wait)
                if tls:
                    result.tls_version = stream.tls_version
            else:
                stream.rearm(limits)
            if not probe.is_null:
                await stream.send(probe.build(self.ctx))
            return probe, await stream.read_until(probe.reader), None, reused
        except ProbeFailure as failure:
            # Silence to the NULL probe is normal (client speaks first): keep the connection
            # for the next probe instead of paying for another connect.
            keep = probe.is_null and failure.kind is ErrorKind.IDLE and stream is not None
            return probe, failure.partial, failure, reused
        finally:
            if keep:
                self.spare = stream
            elif stream is not None:
                await stream.close()

    async def run_layer(self, tls: bool) -> _LayerResult:
        """Apply the table over plain TCP or inside TLS; return what was seen.

        NULL probe first. Then one probe at a time while each answers within the head
        start (the common case stays at one or two connections); once a probe draws
        silence, up to ``parallel`` probes run at once so that a service deaf to most
        protocols does not spend an idle timeout per probe in turn.
        """
        result = _LayerResult()
        probes = _ordered(self.table.tcp(), self.port, tls)
        queue = deque(p for p in probes if not p.is_null)
        try:
            null = next(p for p in probes if p.is_null)
            limits = self._limits(idle=min(self.banner_wait, self.limits.idle_timeout))
            if limits is None:
                return result
            outcome = await self._attempt(null, limits, tls, result)
            if self._handle(outcome, result, queue):
                return result
            _, reply, failure, _ = outcome
            if not reply and (failure is None or failure.kind is ErrorKind.RESET):
                # Closed before the banner wait ended without a byte: tcpwrapped or a peer
                # that drops us. One more probe tells "drops everyone" from "wants a request".
                if not queue:
                    return result
                again = self._limits()
                if again is None:
                    return result
                outcome = await self._attempt(queue.popleft(), again, tls, result)
                if self._handle(outcome, result, queue):
                    return result
                if not outcome[1] and (outcome[2] is None or outcome[2].kind is ErrorKind.RESET):
                    result.errors.append(self._error(
                        ErrorKind.CLOSED, "peer closes every connection without a byte", null.name))
                    return result
            await self._run_queue(queue, tls, result)
        finally:
            await self._drop_spare()
        return result

    async def _run_queue(self, queue: deque[Probe], tls: bool, result: _LayerResult) -> None:
        running: set[asyncio.Task[_Outcome]] = set()
        sequential = True
        try:
            while queue or running:
                while queue and len(running) < (1 if sequential else self.parallel):
                    limits = self._limits()
                    if limits is None:
                        if not result.answered:
                            result.errors.append(self._error(
                                ErrorKind.TIMEOUT, "identification budget spent", queue[0].name))
                        queue.clear()
                        break
                    running.add(asyncio.create_task(
                        self._attempt(queue.popleft(), limits, tls, result)))
                if not running:
                    return
                done, running = await asyncio.wait(
                    running, timeout=self.head_start if sequential else None,
                    return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    sequential = False
                    continue
                for task in done:
                    if self._handle(task.result(), result, queue):
                        return
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _handle(self, outcome: _Outcome, result: _LayerResult, queue: deque[Probe]) -> bool:
        """Record one probe's outcome; True when probing should stop (named, hostile, gone)."""
        probe, reply, failure, reused = outcome
        if failure is not None:
            if failure.kind is not ErrorKind.IDLE or not probe.is_null:
                result.errors.append(self._error(failure.kind, failure.detail, probe.name))
            if failure.stage == "connect":
                return True
        if not reply:
            return False
        result.answered = True
        if self._judge(probe, reply, reused, result, queue):
            return True
        if failure is not None and failure.kind in _HOSTILE:
            result.hostile = True
            return True
        return False

    def _judge(self, probe: Probe, reply: bytes, reused: bool, result: _LayerResult,
               queue: deque[Probe]) -> bool:
        """Match a reply against the probe's rules; True when it is a confirmed match.

        On a reused NULL connection the reply may be a late banner, so the NULL rules follow.
        A first "likely" match reorders ``queue`` so probes that can confirm it come next.
        """
        rules = probe.matchers + (self.table.null().matchers if reused else ())
        found = first_match(rules, reply)
        if found is None:
            result.unmatched_count += 1
            if result.unmatched is None:
                result.unmatched = reply
            return False
        hit = _Hit(found[0], found[1], probe, reply)
        if hit.matcher.confidence == "confirmed":
            result.hit = hit
            return True
        if result.likely is None:
            result.likely = hit
            ordered = sorted(queue, key=lambda p: not _confirms(p, hit.matcher.service))
            queue.clear()
            queue.extend(ordered)
        return False


def _finish(
    address: str, port: int, plain: _LayerResult, inner: _LayerResult | None
) -> tuple[Service | None, list[ProbeError]]:
    errors = plain.errors + (inner.errors if inner else [])
    if inner is not None and plain.hit is not None:
        extra = {"tls_version": inner.tls_version} if inner.tls_version else {}
        best = inner.hit or inner.likely
        if best is not None:
            return _service(best, tls=True, extra=extra), _keep(errors, found=True)
        outer = _service(plain.hit, tls=True, extra=extra)
        if inner.unmatched is not None:
            outer = replace(outer, banner=banner_excerpt(inner.unmatched))
        return outer, _keep(errors, found=True)
    best = plain.hit or plain.likely
    if best is not None:
        return _service(best, tls=False), _keep(errors, found=True)
    if plain.unmatched is not None:
        service = Service(name="unknown", confidence="likely", method="",
                          banner=banner_excerpt(plain.unmatched))
        if not plain.hostile:
            errors.append(ProbeError(
                address, port, Proto.TCP, ErrorKind.GARBAGE,
                f"{plain.unmatched_count} replies matched no known protocol",
                probe="identify"))
        return service, _keep(errors, found=True)
    return None, _keep(errors, found=False)


def _keep(errors: list[ProbeError], *, found: bool) -> list[ProbeError]:
    """Errors worth reporting: once named, silence to probes of other protocols is no error."""
    noise = {ErrorKind.IDLE, ErrorKind.TIMEOUT, ErrorKind.RESET} if found else set()
    seen: set[tuple[ErrorKind, str]] = set()
    out: list[ProbeError] = []
    for err in errors:
        key = (err.kind, err.detail)
        if err.kind in noise or key in seen:
            continue
        seen.add(key)
        out.append(err)
    return out


async def identify_tcp(
    address: str,
    port: int,
    *,
    limits: Limits | None = None,
    budget: float = 15.0,
    user_agent: str = "mamori/0.1",
    server_hostname: str | None = None,
    banner_wait: float = 2.0,
    table: ProbeTable | None = None,
) -> tuple[Service | None, list[ProbeError]]:
    """Name the service on a TCP endpoint from what it answers.

    Returns (Service, errors): a confirmed or likely Service; Service(name="unknown",
    confidence="likely", banner=...) when something answered but matched nothing; or
    (None, errors) when nothing usable came back (refused, silent, closed at once, budget
    spent). Errors are data (``ProbeError``); nothing is raised for network behaviour.
    ``server_hostname`` is used for SNI and the HTTP Host header. Raises ``TableError`` only
    if the packaged probe table is broken.
    """
    session = _Session(
        address, port, table=table or default_table(), limits=limits or Limits(), budget=budget,
        banner_wait=banner_wait, ctx=BuildContext(address, port, server_hostname, user_agent))
    plain = await session.run_layer(tls=False)
    inner = None
    if plain.hit is not None and plain.hit.matcher.service == "tls":
        inner = await session.run_layer(tls=True)
    return _finish(address, port, plain, inner)


def _udp_ordered(port: int, table: ProbeTable) -> list[Probe]:
    probes = table.udp()
    return [p for p in probes if port in p.ports] + [p for p in probes if port not in p.ports]


def udp_payload(port: int, *, table: ProbeTable | None = None) -> bytes:
    """The datagram the UDP sweep sends to ``port`` (DNS, NTP, SNMP, SSDP, mDNS, memcached,
    NetBIOS-NS); b"" when no probe is hinted for that port."""
    table = table or default_table()
    for probe in table.udp():
        if port in probe.ports:
            return probe.build(BuildContext("", port))
    return b""


def udp_alternates(port: int, *, table: ProbeTable | None = None) -> list[bytes]:
    """The other datagrams hinted for ``port`` after ``udp_payload``'s, for when it stayed
    silent (an SNMP agent that drops "public" but answers another factory-default community).
    """
    table = table or default_table()
    hinted = [p.build(BuildContext("", port)) for p in table.udp() if port in p.ports]
    return list(dict.fromkeys(b for b in hinted[1:] if b and b != hinted[0]))


def udp_payloads(*, table: ProbeTable | None = None) -> list[tuple[str, bytes]]:
    """Every distinct UDP probe payload as (probe name, datagram), in table order.

    For a UDP port with no hinted probe, trying each of these is how a service on an unusual
    port still gets named (what nmap's -sUV does with its UDP probes).
    """
    seen: dict[bytes, str] = {}
    for probe in (table or default_table()).udp():
        payload = probe.build(BuildContext("", 0))
        if payload:
            seen.setdefault(payload, probe.name)
    return [(name, payload) for payload, name in seen.items()]


def identify_udp(port: int, reply: bytes, *, table: ProbeTable | None = None) -> Service | None:
    """Name what replied with ``reply`` to ``udp_payload(port)``.

    Rules of the probe hinted for ``port`` are tried first, then all other UDP rules.
    Returns None for an empty reply and Service("unknown", confidence="likely") for a reply
    no rule accepts. Never raises for any bytes.
    """
    if not reply:
        return None
    likely: _Hit | None = None
    for probe in _udp_ordered(port, table or default_table()):
        found = first_match(probe.matchers, reply)
        if found is None:
            continue
        hit = _Hit(found[0], found[1], probe, reply)
        if hit.matcher.confidence == "confirmed":
            return _service(hit, tls=False)
        likely = likely or hit
    if likely is not None:
        return _service(likely, tls=False)
    return Service(name="unknown", confidence="likely", banner=banner_excerpt(reply))
