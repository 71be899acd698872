"""UDP sweep: which ports answer a datagram, which refuse it, which stay silent. No root.

Each probe uses its own *connected* UDP socket, so the kernel hands us only datagrams from the
probed address and port, and turns an ICMP port-unreachable into ECONNREFUSED on that socket:

- a reply -> OPEN (reason UDP_RESPONSE, the reply bytes capped at UDP_REPLY_CAP kept),
- ECONNREFUSED -> CLOSED (PORT_UNREACH),
- other ICMP unreachables -> FILTERED (HOST_UNREACH),
- silence after every try -> OPEN_FILTERED (NO_RESPONSE); never "open".

Hosts limit the ICMP errors they send (Linux: one per second per peer after a burst of six,
outside loopback), so silence may be a suppressed "closed". Silent ports are retried after the
host's other ports; when answers start to arrive only on later tries, the probes to that host are
spaced out (doubling, up to one second apart) and given more tries, as nmap does.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence

from mamori.model import ErrorKind, PortResult, PortState, ProbeError, Proto, Reason
from mamori.net.limits import RESOURCE_ERRNOS, RttEstimator, TokenBucket, inflight_budget
from mamori.net.sweepbase import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    BATCH,
    PROGRESS_EVERY,
    RESOURCE_GIVE_UP,
    UNREACH_ERRNOS,
    DirectSink,
    ErrorCallback,
    ProgressCallback,
    ResultCallback,
    StopCallback,
    SweepOptions,
    SweepStats,
    check_source,
    errno_name,
    family_of,
    open_selector,
    validate_targets,
)

__all__ = ["UDP_REPLY_CAP", "PayloadFor", "udp_sweep"]

PayloadFor = Callable[[int], bytes]

UDP_REPLY_CAP = 65536  # bytes of a reply kept (a UDP datagram cannot be larger)
MAX_PAYLOAD = 65507  # largest IPv4 UDP payload
# When answers arrive only on later tries (ICMP rate limiting), space probes to the host:
SPACING_START = 0.05
SPACING_MAX = 1.0
EXTRA_TRIES_MAX = 6  # tries added on top of opts.retries at most, as nmap -T4's max-retries
# UDP needs fewer sockets in flight than TCP: answers are rare and ICMP is rate limited.
UDP_DEFAULT_INFLIGHT = 1024


def _empty_payload(_port: int) -> bytes:
    return b""


class _UHost:
    __slots__ = (
        "address",
        "best_try",
        "counts",
        "errors",
        "family",
        "inflight",
        "max_try",
        "next_send",
        "queue",
        "rtt",
        "spacing",
    )

    def __init__(self, address: str, opts: SweepOptions, ports: Sequence[int]) -> None:
        self.address = address
        self.family = family_of(address)
        self.rtt = RttEstimator(opts.initial_timeout, opts.min_timeout, opts.max_timeout)
        self.queue: deque[tuple[int, int]] = deque((p, 0) for p in ports)  # (port, try number)
        self.inflight = 0
        self.next_send = 0.0
        self.spacing = 0.0  # seconds between two probes to this host
        self.best_try = 0  # highest try number that got an answer
        self.max_try = opts.retries  # last try number allowed (0-based)
        self.counts = {
            PortState.OPEN.value: 0,
            PortState.CLOSED.value: 0,
            PortState.FILTERED.value: 0,
            PortState.OPEN_FILTERED.value: 0,
        }
        self.errors = 0


class _UProbe:
    __slots__ = ("attempt", "deadline", "fd", "host", "port", "sock", "t0")

    def __init__(self, sock: socket.socket, host: _UHost, port: int, attempt: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.host = host
        self.port = port
        self.attempt = attempt
        self.t0 = 0.0
        self.deadline = 0.0


class _UdpSweeper:
    def __init__(
        self,
        addresses: Sequence[str],
        ports: Sequence[int],
        opts: SweepOptions,
        sink: DirectSink,
        payload_for: PayloadFor,
    ) -> None:
        self.opts = opts
        self.sink = sink
        self.payload_for = payload_for
        self.hosts = [_UHost(a, opts, ports) for a in addresses]
        self.rr: deque[_UHost] = deque(self.hosts)
        wanted = opts.max_inflight if opts.max_inflight is not None else UDP_DEFAULT_INFLIGHT
        self.cap_max = inflight_budget(wanted)
        self.cap = self.cap_max
        per_host = opts.per_host
        if per_host is None:
            per_host = self.cap if len(self.hosts) == 1 else max(16, self.cap // 4)
        self.per_host = min(per_host, self.cap)
        self.bucket = TokenBucket(opts.rate) if opts.rate is not None else None
        self.sel = open_selector()
        self.pending: dict[int, _UProbe] = {}
        self.deadlines: list[tuple[float, int, _UProbe]] = []
        self.seq = 0
        self.attempts = 0
        self.retried = 0
        self.finished = 0
        self.backoff_until = 0.0
        self.backoff_step = BACKOFF_MIN
        self.trouble_since: float | None = None
        self.payloads: dict[int, bytes] = {}
        self.stopped = False
        self.backoffs = 0

    # ---- outcomes --------------------------------------------------------------------------

    def _final(
        self,
        probe: _UProbe,
        state: PortState,
        reason: Reason,
        rtt: float | None = None,
        reply: bytes | None = None,
    ) -> None:
        host = probe.host
        host.counts[state.value] += 1
        self.finished += 1
        if state is not PortState.CLOSED:
            self.sink.result(
                PortResult(
                    host.address,
                    probe.port,
                    Proto.UDP,
                    state,
                    reason,
                    rtt_ms=None if rtt is None else round(rtt * 1000.0, 3),
                    reply=reply,
                )
            )

    def _error(self, probe: _UProbe, kind: ErrorKind, detail: str) -> None:
        probe.host.errors += 1
        self.finished += 1
        self.sink.error(
            ProbeError(probe.host.address, probe.port, Proto.UDP, kind, detail, probe="sweep")
        )

    def _answered(self, probe: _UProbe, rtt: float) -> None:
        """An answer (reply or ICMP) came: learn the RTT and whether ICMP is rate limited."""
        host = probe.host
        host.rtt.update(rtt)
        if probe.attempt > host.best_try:
            # Silent before, answering now: likely a rate-limited ICMP. Slow down, try more.
            host.best_try = probe.attempt
            host.spacing = min(SPACING_MAX, max(SPACING_START, host.spacing * 2))
            host.max_try = min(
                self.opts.retries + EXTRA_TRIES_MAX, max(host.max_try, probe.attempt + 2)
            )

    def _classify_error(self, probe: _UProbe, err: int, rtt: float) -> None:
        if err == errno.ECONNREFUSED:
            self._answered(probe, rtt)
            self._final(probe, PortState.CLOSED, Reason.PORT_UNREACH, rtt)
        elif err in UNREACH_ERRNOS:
            self._final(probe, PortState.FILTERED, Reason.HOST_UNREACH, rtt)
        elif err in RESOURCE_ERRNOS:
            probe.host.queue.appendleft((probe.port, probe.attempt))
            self._shortage(err)
        else:
            self._error(probe, ErrorKind.OS, f"udp: {errno_name(err)}")

    def _read(self, probe: _UProbe, now: float) -> bool:
        """Read the probe's socket; return True when the probe is finished."""
        rtt = now - probe.t0
        try:
            data = probe.sock.recv(UDP_REPLY_CAP)
        except BlockingIOError:
            return False
        except OSError as exc:
            self._classify_error(probe, exc.errno or 0, rtt)
            return True
        self._answered(probe, rtt)
        self._final(probe, PortState.OPEN, Reason.UDP_RESPONSE, rtt, data[:UDP_REPLY_CAP])
        return True

    def _silent(self, probe: _UProbe) -> None:
        host = probe.host
        if probe.attempt < host.max_try:
            # Retry after the host's other ports: a rate limiter on the far side refills.
            host.queue.append((probe.port, probe.attempt + 1))
            self.retried += 1
        else:
            self._final(probe, PortState.OPEN_FILTERED, Reason.NO_RESPONSE)

    # ---- sending ---------------------------------------------------------------------------

    def _payload(self, port: int) -> bytes:
        data = self.payloads.get(port)
        if data is None:
            data = bytes(self.payload_for(port))
            if len(data) > MAX_PAYLOAD:
                raise ValueError(
                    f"payload for port {port} is {len(data)} bytes (max {MAX_PAYLOAD})"
                )
            self.payloads[port] = data
        return data

    def _send(self, host: _UHost, port: int, attempt: int, now: float) -> bool:
        """Send one probe; return False on a resource shortage (the probe is re-queued)."""
        payload = self._payload(port)
        try:
            sock = socket.socket(host.family, socket.SOCK_DGRAM)
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                host.queue.appendleft((port, attempt))
                self._shortage(exc.errno or 0)
                return False
            self._host_unusable(host, port, exc)
            return True
        probe = _UProbe(sock, host, port, attempt)
        probe.t0 = now
        self.attempts += 1
        try:
            sock.setblocking(False)
            if self.opts.source_address is not None:
                sock.bind((self.opts.source_address, 0))
            sock.connect((host.address, port))
            probe.t0 = time.monotonic()
            sock.send(payload)
        except OSError as exc:
            sock.close()
            err = exc.errno or 0
            if err in RESOURCE_ERRNOS:
                self.attempts -= 1
            self._classify_error(probe, err, time.monotonic() - probe.t0)
            return err not in RESOURCE_ERRNOS
        # Loopback delivers the ICMP error (or nothing) before send() returns: look now.
        if self._read(probe, time.monotonic()):
            sock.close()
            return True
        probe.deadline = probe.t0 + host.rtt.timeout()
        try:
            self.sel.register(probe.fd, selectors.EVENT_READ, probe)
        except OSError as exc:  # out of epoll watches or memory: this probe again later
            sock.close()
            self.attempts -= 1
            host.queue.appendleft((port, attempt))
            self._shortage(exc.errno or errno.ENOMEM)
            return False
        self.pending[probe.fd] = probe
        self.seq += 1
        heapq.heappush(self.deadlines, (probe.deadline, self.seq, probe))
        host.inflight += 1
        return True

    def _host_unusable(self, host: _UHost, port: int, exc: OSError) -> None:
        """socket() fails for this host's address family for good: report, skip its ports."""
        left = len(host.queue) + 1
        host.queue.clear()
        host.errors += left
        self.finished += left
        detail = f"cannot open a socket for {host.address}: {exc}; {left} port(s) not probed"
        self.sink.error(ProbeError(host.address, port, Proto.UDP, ErrorKind.OS, detail, "sweep"))

    def _shortage(self, err: int) -> None:
        now = time.monotonic()
        self.backoffs += 1
        self.cap = max(1, len(self.pending))
        self.backoff_until = now + self.backoff_step
        self.backoff_step = min(BACKOFF_MAX, self.backoff_step * 2)
        if self.trouble_since is None:
            self.trouble_since = now
        elif now - self.trouble_since > RESOURCE_GIVE_UP:
            self._give_up(err)

    def _give_up(self, err: int) -> None:
        for host in self.hosts:
            left = len(host.queue)
            if not left:
                continue
            host.queue.clear()
            host.errors += left
            self.finished += left
            detail = f"{left} port(s) not probed: {errno_name(err)} for {RESOURCE_GIVE_UP:.0f}s"
            self.sink.error(
                ProbeError(host.address, None, Proto.UDP, ErrorKind.RESOURCE, detail, "sweep")
            )

    def _launch(self, now: float) -> float:
        """Send what the limits allow; return how long until more may be sent (inf: never)."""
        if now < self.backoff_until:
            return self.backoff_until - now
        wait = float("inf")
        sent = 0
        for _ in range(len(self.rr)):
            host = self.rr[0]
            self.rr.rotate(-1)
            while host.queue:
                if len(self.pending) >= self.cap or host.inflight >= self.per_host:
                    break
                if host.next_send > now:
                    wait = min(wait, host.next_send - now)
                    break
                if self.bucket is not None and self.bucket.take(1, now) == 0:
                    return min(wait, self.bucket.wait_time(now))
                port, attempt = host.queue.popleft()
                if not self._send(host, port, attempt, now):
                    return self.backoff_until - now
                if self.trouble_since is not None:
                    self.trouble_since = None
                    self.backoff_step = BACKOFF_MIN
                    self.cap = min(self.cap_max, self.cap * 2)
                host.next_send = now + host.spacing
                sent += 1
                if sent >= BATCH:
                    return 0.0  # look at the selector, progress and should_stop
                if host.spacing:
                    break  # next host; this one waits its spacing
                now = time.monotonic()
        return wait

    # ---- waiting ---------------------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        if not self.pending:
            if timeout > 0:
                time.sleep(timeout)
            return
        events = self.sel.select(timeout)
        now = time.monotonic()
        for key, _ in events:
            probe: _UProbe = key.data
            if self.pending.get(probe.fd) is not probe:
                continue
            if self._read(probe, now):
                self._retire(probe)
        while self.deadlines and self.deadlines[0][0] <= now:
            _, _, probe = heapq.heappop(self.deadlines)
            if self.pending.get(probe.fd) is not probe:
                continue
            # Last look: an answer may sit in the socket although the selector was not asked.
            if not self._read(probe, now):
                self._silent(probe)
            self._retire(probe)

    def _retire(self, probe: _UProbe) -> None:
        del self.pending[probe.fd]
        self.sel.unregister(probe.fd)
        probe.sock.close()
        probe.host.inflight -= 1

    def run(self) -> None:
        try:
            while True:
                if self.sink.stopped():
                    self.stopped = True
                    break
                now = time.monotonic()
                wait = self._launch(now)
                if not self.pending and wait == float("inf"):
                    if not any(h.queue for h in self.hosts):
                        break
                    wait = PROGRESS_EVERY / 2  # waiting for sockets to free up
                if self.deadlines:
                    wait = min(wait, max(0.0, self.deadlines[0][0] - time.monotonic()))
                self._poll(min(wait, PROGRESS_EVERY / 2))
                if self.finished:
                    self.sink.progress(self.finished)
                    self.finished = 0
        finally:
            for probe in self.pending.values():
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(probe.fd)
                probe.sock.close()
            self.pending.clear()
            self.sel.close()
        if self.finished:
            self.sink.progress(self.finished)
            self.finished = 0


def udp_sweep(
    addresses: Sequence[str],
    ports: Sequence[int],
    opts: SweepOptions,
    on_result: ResultCallback,
    on_error: ErrorCallback | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    payload_for: PayloadFor = _empty_payload,
) -> SweepStats:
    """UDP sweep of every (address, port); blocks until done or stopped.

    ``payload_for(port)`` gives the datagram to send (default: empty). ``on_result`` gets every
    port that ends open (with the reply bytes) or open|filtered, and filtered ones; closed ports
    are only counted. ``on_error`` gets ProbeErrors; ``on_progress`` the number of pairs decided
    since its last call. Callbacks run in the calling thread. ``opts.workers`` is ignored.
    Raises ValueError for non-literal addresses, ports outside 1-65535, a payload over 65,507
    bytes; an exception from a callback or ``payload_for`` stops the sweep and propagates.
    """
    t_start = time.monotonic()
    addrs, plist = validate_targets(addresses, ports)
    check_source(opts, addrs)
    sink = DirectSink(on_result, on_error, on_progress, should_stop)
    sweeper = _UdpSweeper(addrs, plist, opts, sink, payload_for)
    sweeper.run()
    sink.flush()
    return SweepStats(
        counts={h.address: dict(h.counts) for h in sweeper.hosts},
        elapsed=time.monotonic() - t_start,
        attempts=sweeper.attempts,
        errors=sum(h.errors for h in sweeper.hosts),
        stopped=sweeper.stopped,
        retried=sweeper.retried,
        backoffs=sweeper.backoffs,
    )
