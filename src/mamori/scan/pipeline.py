"""One scan, start to finish: sweep → identify → hand every record to a sink as it arrives.

The sweep runs in a worker thread (it is a blocking, batched epoll loop); identification is
asyncio. Every record reaches the sink on the event-loop thread, one at a time, so the sink (the
store) needs no locking and commits each result as it comes: a scan killed half-way leaves what
it had found.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from mamori.model import (
    Endpoint,
    ErrorKind,
    PortResult,
    PortState,
    ProbeError,
    Proto,
    Reason,
    Service,
    Target,
)
from mamori.net.stream import Limits
from mamori.net.sweep import SweepOptions, SweepStats, tcp_sweep
from mamori.net.udp import udp_sweep

if TYPE_CHECKING:
    from mamori.checks.observation import CheckOptions
    from mamori.checks.spec import CheckSpec
    from mamori.model import CheckResult

# Silent UDP ports with no port-specific payload get every UDP payload in turn, so a DNS server
# on port 4353 is still found and named; capped because each try costs a timeout.
MAX_UDP_REPROBE = 64

# Filtered ports are listed one by one only while they are few; a firewalled host that drops
# everything would otherwise fill the report with 65,535 rows (nmap collapses them too).
MAX_LISTED_FILTERED = 100

# How long identification and checks of one host may take in all, counted from its first
# identification, when no --host-timeout says otherwise: a host with 320 tarpit ports costs
# ~2 minutes at the per-endpoint budget, one with 65,535 would cost hours.
DEFAULT_IDENTIFY_HOST_BUDGET = 300.0
# Endpoints cut by a host timeout are listed one by one up to this many per host; the rest
# are counted in one line.
MAX_LISTED_CUT = 100
# The error ``probe`` of what a host timeout cut: "not tested", never closed or passed.
HOST_TIMEOUT_PROBE = "host-timeout"


@dataclass(frozen=True)
class ScanPlan:
    targets: tuple[Target, ...]
    tcp_ports: tuple[int, ...]
    udp_ports: tuple[int, ...] = ()
    sweep: SweepOptions = field(default_factory=SweepOptions)
    identify: bool = True
    identify_concurrency: int = 32
    identify_budget: float = 15.0
    # HTTP User-Agent of identification probes (mamori serve names itself and its URL here).
    identify_user_agent: str = "mamori/0.1"
    # Exposure checks run on each identified endpoint (empty: none). Judged per endpoint right
    # after identification, so checks overlap the rest of the scan.
    checks: tuple[CheckSpec, ...] = ()
    check_options: CheckOptions | None = None
    probe_limits: Limits = field(default_factory=Limits)
    # nmap's --host-timeout: seconds from the scan's start after which a host's remaining
    # work (sweep, identification, checks) is cut and reported as not tested; None: no limit.
    host_timeout: float | None = None
    # Seconds identification and checks of one host may take in all (from its first
    # identification): the bound a scan has even without --host-timeout.
    identify_host_budget: float = DEFAULT_IDENTIFY_HOST_BUDGET

    @property
    def total_probes(self) -> int:
        return len(self.targets) * (len(self.tcp_ports) + len(self.udp_ports))


class ScanSink(Protocol):
    """Where results go as they arrive (the store, in the CLI)."""

    def on_host(self, target: Target) -> None: ...
    def on_endpoints(self, endpoints: list[Endpoint]) -> None: ...
    def on_service(self, address: str, proto: Proto, port: int, service: Service) -> None: ...
    def on_error(self, error: ProbeError) -> None: ...
    def on_not_shown(self, address: str, counts: dict[str, dict[str, int]]) -> None: ...
    def on_check(self, result: CheckResult) -> None: ...


class ProgressFn(Protocol):
    def __call__(
        self, *, advance: int = 0, total: int | None = None, stage: str | None = None
    ) -> None: ...


def _no_progress(*, advance: int = 0, total: int | None = None, stage: str | None = None) -> None:
    return None


def _endpoint(r: PortResult) -> Endpoint:
    return Endpoint(r.address, r.port, r.proto, r.state, r.reason, r.rtt_ms)


class _Runner:
    def __init__(self, plan: ScanPlan, sink: ScanSink, progress: ProgressFn) -> None:
        self.plan = plan
        self.sink = sink
        self.progress = progress
        self.stop = threading.Event()
        self.loop = asyncio.get_running_loop()
        self.open_tcp: asyncio.Queue[PortResult | None] = asyncio.Queue()
        self.udp_replies: list[PortResult] = []
        self.tftp_found: list[tuple[PortResult, Service]] = []  # named after the sweep
        self.filtered: dict[tuple[str, str], list[PortResult]] = {}
        self.not_shown: dict[str, dict[str, dict[str, int]]] = {}
        # Per-host bounds (time.monotonic(): the sweep thread reads the sweep's deadline).
        self.started = time.monotonic()
        self.sweep_deadline = (
            None if plan.host_timeout is None else self.started + plan.host_timeout)
        self.identify_started: dict[str, float] = {}
        self.sweep_error_ports: dict[tuple[str, str], int] = {}
        self.cut: dict[str, tuple[int, str]] = {}  # address -> (endpoints cut, why)

    # -- called from the sweep thread: hop onto the loop thread ------------------------------
    def _from_thread(self, fn: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def _on_result(self, r: PortResult) -> None:
        self._from_thread(lambda: self._record(r))

    def _on_error(self, e: ProbeError) -> None:
        self._from_thread(lambda: self._record_error(e))

    def _should_stop(self) -> bool:
        """The sweep's stop signal: Ctrl-C, or --host-timeout passed (all hosts are swept
        together, so their deadline is one)."""
        return self.stop.is_set() or (
            self.sweep_deadline is not None and time.monotonic() >= self.sweep_deadline)

    def _on_progress(self, n: int) -> None:
        self._from_thread(lambda: self.progress(advance=n))

    # -- loop thread -----------------------------------------------------------------------
    def _record_error(self, e: ProbeError) -> None:
        if e.address is not None and e.port is not None and e.proto is not None:
            key = (e.address, e.proto.value)
            self.sweep_error_ports[key] = self.sweep_error_ports.get(key, 0) + 1
        self.sink.on_error(e)

    def _host_deadline(self, address: str) -> tuple[float, str]:
        """When ``address``'s remaining work is cut, and the words for why: the earlier of
        --host-timeout and its identification budget (counted from its first identification).
        """
        first = self.identify_started.setdefault(address, time.monotonic())
        when = first + self.plan.identify_host_budget
        budget = self.plan.identify_host_budget
        why = f"host timeout (identification budget per host, {budget:g} s)"
        if self.sweep_deadline is not None and self.sweep_deadline <= when:
            when = self.sweep_deadline
            why = f"host timeout (--host-timeout {self.plan.host_timeout:g} s)"
        return when, why

    def _cut_endpoint(self, r: PortResult, why: str) -> None:
        """Report an endpoint whose identification (and so its checks) a host timeout cut."""
        n, _ = self.cut.get(r.address, (0, why))
        self.cut[r.address] = (n + 1, why)
        if n < MAX_LISTED_CUT:
            self.sink.on_error(ProbeError(
                r.address, r.port, r.proto, ErrorKind.TIMEOUT,
                f"{why}: service not identified, checks not run", HOST_TIMEOUT_PROBE))

    def _report_unswept(self, stats: SweepStats, proto: Proto, planned: int) -> None:
        """After a sweep stopped by --host-timeout: how many ports of each host got no state
        (not tested, never counted as closed)."""
        if not stats.stopped or self.stop.is_set():
            return
        for target in self.plan.targets:
            address = target.address
            seen = sum(stats.counts.get(address, {}).values())
            seen += self.sweep_error_ports.get((address, proto.value), 0)
            if seen < planned:
                self.sink.on_error(ProbeError(
                    address, None, proto, ErrorKind.TIMEOUT,
                    f"host timeout (--host-timeout {self.plan.host_timeout:g} s): "
                    f"{planned - seen} of {planned} {proto.value.upper()} ports not probed "
                    "(not tested, not closed)", HOST_TIMEOUT_PROBE))

    def _record(self, r: PortResult) -> None:
        if r.state is PortState.FILTERED or r.state is PortState.OPEN_FILTERED:
            bucket = self.filtered.setdefault((r.address, r.proto.value), [])
            bucket.append(r)
            if len(bucket) <= MAX_LISTED_FILTERED:
                self.sink.on_endpoints([_endpoint(r)])
            return
        self.sink.on_endpoints([_endpoint(r)])
        if r.state is PortState.OPEN and r.proto is Proto.TCP and self.plan.identify:
            self.open_tcp.put_nowait(r)
        elif r.state is PortState.OPEN and r.proto is Proto.UDP:
            self.udp_replies.append(r)

    def _merge_stats(self, stats: SweepStats, proto: Proto) -> None:
        for address, counts in stats.counts.items():
            per_host = self.not_shown.setdefault(address, {})
            hidden = {"closed": counts.get(PortState.CLOSED.value, 0)}
            listed = len(self.filtered.get((address, proto.value), []))
            for state in (PortState.FILTERED, PortState.OPEN_FILTERED):
                n = counts.get(state.value, 0)
                if n and listed > MAX_LISTED_FILTERED:
                    hidden[state.value] = n - MAX_LISTED_FILTERED
            per_host[proto.value] = {k: v for k, v in hidden.items() if v}

    async def _sweep(self) -> None:
        addresses = [t.address for t in self.plan.targets]
        try:
            if self.plan.tcp_ports:
                self.progress(stage="TCP sweep")
                stats = await asyncio.to_thread(
                    tcp_sweep, addresses, list(self.plan.tcp_ports), self.plan.sweep,
                    on_result=self._on_result, on_error=self._on_error,
                    on_progress=self._on_progress, should_stop=self._should_stop,
                )
                await asyncio.sleep(0)  # let queued call_soon_threadsafe callbacks run first
                self._merge_stats(stats, Proto.TCP)
                self._report_unswept(stats, Proto.TCP, len(self.plan.tcp_ports))
            if self.plan.udp_ports:
                from mamori.identify.engine import udp_payload

                self.progress(stage="UDP sweep")
                stats = await asyncio.to_thread(
                    udp_sweep, addresses, list(self.plan.udp_ports), self.plan.sweep,
                    on_result=self._on_result, on_error=self._on_error,
                    on_progress=self._on_progress, should_stop=self._should_stop,
                    payload_for=udp_payload,
                )
                await asyncio.sleep(0)
                self._merge_stats(stats, Proto.UDP)
                self._report_unswept(stats, Proto.UDP, len(self.plan.udp_ports))
                await self._reprobe_silent_udp()
                await self._probe_silent_udp_for_tftp()
        finally:
            for _ in range(self.plan.identify_concurrency):
                self.open_tcp.put_nowait(None)

    async def _probe_silent_udp_for_tftp(self) -> None:
        """TFTP answers from another port, which the sweep cannot see: ask the ports still
        silent (at most MAX_UDP_REPROBE) for a random file; an answer makes them open."""
        from mamori.identify.tftp import tftp_behaviour

        answered = {(u.address, u.port) for u in self.udp_replies}
        silent = [
            r for (_, proto), results in self.filtered.items() if proto == Proto.UDP.value
            for r in results
            if r.state is PortState.OPEN_FILTERED and (r.address, r.port) not in answered
        ][:MAX_UDP_REPROBE]
        if not silent or not self.plan.identify:
            return
        found = await asyncio.gather(*(tftp_behaviour(r.address, r.port) for r in silent))
        for r, svc in zip(silent, found, strict=True):
            if svc is not None:
                opened = PortResult(r.address, r.port, Proto.UDP, PortState.OPEN,
                                    Reason.UDP_RESPONSE, reply=(svc.banner or "").encode())
                self.sink.on_endpoints([_endpoint(opened)])
                self.tftp_found.append((opened, svc))

    async def _reprobe_silent_udp(self) -> None:
        from mamori.identify.engine import udp_alternates, udp_payload, udp_payloads

        # Unhinted silent ports get every payload; hinted ones their port's alternates only.
        def payloads_for(port: int) -> list[bytes]:
            return ([p for _, p in udp_payloads()] if not udp_payload(port)
                    else udp_alternates(port))

        silent = [
            r for (_, proto), results in self.filtered.items() if proto == Proto.UDP.value
            for r in results if payloads_for(r.port)
        ][:MAX_UDP_REPROBE]
        if not silent or not self.plan.identify:
            return
        self.progress(stage="UDP probes")
        by_payload: dict[tuple[str, bytes], list[int]] = {}
        for r in silent:
            for payload in payloads_for(r.port):
                by_payload.setdefault((r.address, payload), []).append(r.port)
        answered: dict[tuple[str, int], list[PortResult]] = {}

        def remember(r: PortResult) -> None:
            answered.setdefault((r.address, r.port), []).append(r)

        def keep(r: PortResult) -> None:
            if r.state is PortState.OPEN:
                self._from_thread(lambda: remember(r))

        async def one(address: str, ports: list[int], payload: bytes) -> None:
            await asyncio.to_thread(
                udp_sweep, [address], ports, self.plan.sweep, on_result=keep,
                on_error=self._on_error, should_stop=self._should_stop,
                payload_for=lambda _port: payload,
            )

        await asyncio.gather(*(
            one(address, ports, payload) for (address, payload), ports in by_payload.items()
        ))
        await asyncio.sleep(0)
        from mamori.identify.engine import identify_udp

        for replies in answered.values():
            # Several payloads may draw an answer (a DNS server also answers the mDNS and
            # NetBIOS queries, with an error): keep the reply that names the service best.
            def rank(r: PortResult) -> int:
                svc = identify_udp(r.port, r.reply or b"")
                if svc is None or svc.name == "unknown":
                    return 0
                return 2 if svc.confidence == "confirmed" else 1

            best = max(replies, key=rank)
            self.sink.on_endpoints([_endpoint(best)])
            self.udp_replies.append(best)

    async def _identify_worker(self, names: dict[str, str | None]) -> None:
        while True:
            r = await self.open_tcp.get()
            if r is None:
                return
            # Imported on first use: the probe table costs ~0.3 s to load and validate, which
            # a sweep that finds nothing to identify should not pay.
            from mamori.identify.engine import identify_tcp

            self.progress(total=1)
            deadline, why = self._host_deadline(r.address)
            # The engine's own budget, plus what it may wait for free local ports.
            cap = self.plan.identify_budget + self.plan.probe_limits.local_wait + 5
            left = deadline - time.monotonic()
            if left <= 0:
                self._cut_endpoint(r, why)
                self.progress(advance=1)
                continue
            try:
                svc, errors = await asyncio.wait_for(
                    identify_tcp(r.address, r.port, limits=self.plan.probe_limits,
                                 budget=self.plan.identify_budget,
                                 user_agent=self.plan.identify_user_agent,
                                 server_hostname=names.get(r.address)),
                    timeout=min(cap, left),
                )
            except TimeoutError:
                if left < cap:
                    self._cut_endpoint(r, why)
                    self.progress(advance=1)
                    continue
                svc, errors = None, [ProbeError(r.address, r.port, Proto.TCP, ErrorKind.TIMEOUT,
                                                "identification exceeded its budget", "identify")]
            for e in errors:
                self.sink.on_error(e)
            if svc is not None:
                self.sink.on_service(r.address, Proto.TCP, r.port, svc)
                await self._check(_endpoint(r), svc, names.get(r.address))
            self.progress(advance=1)

    async def _check(self, endpoint: Endpoint, svc: Service, hostname: str | None) -> None:
        if not self.plan.checks:
            return
        from mamori.checks.engine import ENDPOINT_BUDGET, run_checks

        # Checks share the host's bound: what it cuts is "not tested: host timeout".
        deadline, why = self._host_deadline(endpoint.address)
        left = max(0.0, deadline - time.monotonic())
        for result in await run_checks(self.plan.checks, endpoint, svc, hostname=hostname,
                                       options=self.plan.check_options,
                                       budget=min(ENDPOINT_BUDGET, left),
                                       cut_reason=f"{why}: check not run"
                                       if left < ENDPOINT_BUDGET else None):
            self.sink.on_check(result)

    async def run(self) -> None:
        names = {t.address: t.hostname for t in self.plan.targets}
        for t in self.plan.targets:
            self.sink.on_host(t)
        self.progress(total=self.plan.total_probes)
        workers = [asyncio.create_task(self._identify_worker(names))
                   for _ in range(self.plan.identify_concurrency)]
        try:
            await self._sweep()
            self.progress(stage="identifying")
            await asyncio.gather(*workers)
        finally:
            self.stop.set()
            for w in workers:
                w.cancel()
        if self.udp_replies:
            from mamori.identify.engine import identify_udp
        for r in self.udp_replies:
            svc = identify_udp(r.port, r.reply or b"")
            if svc is not None:
                self.sink.on_service(r.address, Proto.UDP, r.port, svc)
                await self._check(_endpoint(r), svc, names.get(r.address))
        for r, svc in self.tftp_found:
            self.sink.on_service(r.address, Proto.UDP, r.port, svc)
            await self._check(_endpoint(r), svc, names.get(r.address))
        for address, counts in self.not_shown.items():
            self.sink.on_not_shown(address, counts)
        for address, (n, why) in self.cut.items():
            if n > MAX_LISTED_CUT:
                self.sink.on_error(ProbeError(
                    address, None, Proto.TCP, ErrorKind.TIMEOUT,
                    f"{why}: {n - MAX_LISTED_CUT} more open TCP ports not identified, "
                    "checks not run", HOST_TIMEOUT_PROBE))


async def run_scan(plan: ScanPlan, sink: ScanSink, progress: ProgressFn = _no_progress) -> None:
    """Run ``plan`` and hand every result to ``sink`` as it arrives. Returns when all is done.

    Probe failures reach the sink as ProbeError records; only bugs propagate as exceptions.
    """
    await _Runner(plan, sink, progress).run()
