"""One TCP sweep lane: a selector, the sockets in flight, per-host bookkeeping.

A lane takes (host, ports) chunks from its work queue and probes them as fast as its limits
allow. See mamori.net.sweep for the design; this module holds the engine itself.
"""

from __future__ import annotations

import errno
import heapq
import random
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
    CHUNK,
    MAX_ACTIVE,
    PROGRESS_EVERY,
    RESOURCE_GIVE_UP,
    UNREACH_ERRNOS,
    LaneTotals,
    Sink,
    SweepOptions,
    close_rst,
    ephemeral_range,
    errno_name,
    family_of,
    is_self_connect,
    route_source,
)


class _Host:
    """Per-lane state of one target address."""

    __slots__ = (
        "address",
        "closed",
        "dead",
        "errors",
        "family",
        "filtered",
        "inflight",
        "opened",
        "rtt",
        "source",
    )

    def __init__(self, address: str, rtt: RttEstimator) -> None:
        self.address = address
        self.family = family_of(address)
        self.rtt = rtt
        self.inflight = 0
        self.source: str | None = None
        self.opened = 0
        self.closed = 0
        self.filtered = 0
        self.errors = 0
        self.dead = False  # socket() itself fails for this address family: stop trying


class _Cursor:
    __slots__ = ("attempt", "host", "idx", "ports")

    def __init__(self, host: _Host, ports: list[int], attempt: int) -> None:
        self.host = host
        self.ports = ports
        self.idx = 0
        self.attempt = attempt


class _Pending:
    __slots__ = ("attempt", "deadline", "fd", "host", "port", "sock", "t0")

    def __init__(
        self,
        sock: socket.socket,
        host: _Host,
        port: int,
        *,
        attempt: int,
        t0: float,
        deadline: float,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.host = host
        self.port = port
        self.attempt = attempt
        self.t0 = t0
        self.deadline = deadline


class _ResourceShortage(Exception):
    """Out of descriptors, buffers or ports: back off and try the same probe again."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.err = err


class _NoSocket(Exception):
    """socket()/bind() fails for a host for good (address family, source address)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class TcpLane:
    """Sweeps the chunks it takes from ``work`` until none are left (or it is told to stop)."""

    def __init__(
        self,
        addresses: Sequence[str],
        work: deque[tuple[int, list[int]]],
        opts: SweepOptions,
        *,
        cap: int,
        per_host_cap: int,
        sink: Sink,
        on_turn: Callable[[], None] | None = None,
    ) -> None:
        self.opts = opts
        self.hosts = [
            _Host(a, RttEstimator(opts.initial_timeout, opts.min_timeout, opts.max_timeout))
            for a in addresses
        ]
        self.work = work
        self.cap_max = cap
        self.cap = cap
        self.per_host_cap = per_host_cap
        self.sink = sink
        self.on_turn = on_turn  # called once per loop turn (the parent drains its workers)
        self.sel: selectors.BaseSelector | None = None  # made when a probe first has to wait
        self.pending: dict[int, _Pending] = {}
        self.deadlines: list[tuple[float, int, _Pending]] = []
        self.seq = 0
        self.active: deque[_Cursor] = deque()
        self.retry: dict[tuple[int, int], list[int]] = {}  # (host idx, attempt) -> ports
        self.bucket = TokenBucket(opts.rate) if opts.rate is not None else None
        self.totals = LaneTotals()
        self.backoff_until = 0.0
        self.backoff_step = BACKOFF_MIN
        self.trouble_since: float | None = None
        self.finished = 0  # (address, port) pairs decided since the last progress report
        low, high = ephemeral_range()
        self.port_low, self.port_high = low, high
        self.host_index = {id(h): i for i, h in enumerate(self.hosts)}
        # Reset sockets ready for the next connect, one per address family.
        self.spare: dict[str, socket.socket] = {}  # source address -> socket

    # ---- sockets ---------------------------------------------------------------------------

    def _source_of(self, host: _Host) -> str:
        """Return the local address probes to ``host`` leave from (asked of the routing table)."""
        if host.source is not None:
            return host.source
        found = self.opts.source_address or route_source(host.address, host.family)
        if found is None:  # short of descriptors: use the wildcard now, ask again next time
            return "::" if host.family == socket.AF_INET6 else "0.0.0.0"
        host.source = found
        return found

    def _fresh_socket(self, host: _Host) -> socket.socket:
        """Return a new non-blocking socket bound to a fixed source port when possible.

        Raises _ResourceShortage on EMFILE and friends, _NoSocket for anything else.
        """
        try:
            sock = socket.socket(host.family, socket.SOCK_STREAM)
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                raise _ResourceShortage(exc.errno or 0) from exc
            raise _NoSocket(exc) from exc
        sock.setblocking(False)
        src = self.opts.source_address
        local = self._source_of(host)
        # An explicit source port survives a refused connect (SOCK_BINDPORT_LOCK), so the
        # reused socket skips the kernel's ephemeral-port search on every probe; an explicit
        # source address spares it re-hashing the bound port at each connect.
        for _ in range(4):
            try:
                sock.bind((local, random.randint(self.port_low, self.port_high)))
                return sock
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue  # someone holds that port: draw another
                if src is not None:
                    sock.close()
                    raise _NoSocket(exc) from exc
                break  # the routed source will not bind: let connect() choose
        if src is not None:
            try:
                sock.bind((src, 0))
            except OSError as exc:
                sock.close()
                raise _NoSocket(exc) from exc
        return sock

    # ---- outcomes --------------------------------------------------------------------------

    def _open(self, host: _Host, port: int, sock: socket.socket, rtt: float) -> None:
        if is_self_connect(sock):
            host.closed += 1
            self.totals.self_connects += 1
        else:
            host.opened += 1
            self.sink.result(
                PortResult(
                    host.address,
                    port,
                    Proto.TCP,
                    PortState.OPEN,
                    Reason.SYN_ACK,
                    rtt_ms=round(rtt * 1000.0, 3),
                )
            )
        close_rst(sock)
        self.finished += 1

    def _filtered(self, host: _Host, port: int, reason: Reason, rtt: float | None) -> None:
        host.filtered += 1
        self.finished += 1
        self.sink.result(
            PortResult(
                host.address,
                port,
                Proto.TCP,
                PortState.FILTERED,
                reason,
                rtt_ms=None if rtt is None else round(rtt * 1000.0, 3),
            )
        )

    def _error(self, host: _Host, port: int | None, kind: ErrorKind, detail: str) -> None:
        host.errors += 1
        self.finished += 1
        self.sink.error(ProbeError(host.address, port, Proto.TCP, kind, detail, probe="sweep"))

    def _settle(
        self, host: _Host, port: int, attempt: int, err: int, *, sock: socket.socket, rtt: float
    ) -> bool:
        """Record the outcome of a finished connect; return True if ``sock`` may be reused.

        Resource errors are not outcomes: the caller handles those before coming here.
        """
        if err == 0:
            self._open(host, port, sock, rtt)
            return False
        if err == errno.ECONNREFUSED:
            host.closed += 1
            self.finished += 1
            return True
        sock.close()
        if err in UNREACH_ERRNOS:
            self._filtered(host, port, Reason.HOST_UNREACH, rtt)
        elif err == errno.ETIMEDOUT:
            self._timed_out(host, port, attempt)
        else:
            self._error(host, port, ErrorKind.OS, f"connect: {errno_name(err)}")
        return False

    def _timed_out(self, host: _Host, port: int, attempt: int) -> None:
        if attempt < self.opts.retries:
            key = (self.host_index[id(host)], attempt + 1)
            self.retry.setdefault(key, []).append(port)
            self.totals.retried += 1
        else:
            self._filtered(host, port, Reason.NO_RESPONSE, None)

    # ---- launching ------------------------------------------------------------------------

    def _park(self, sock: socket.socket, host: _Host, port: int, attempt: int, t0: float) -> None:
        deadline = t0 + host.rtt.timeout()
        p = _Pending(sock, host, port, attempt=attempt, t0=t0, deadline=deadline)
        try:
            if self.sel is None:
                self.sel = selectors.DefaultSelector()
            self.sel.register(p.fd, selectors.EVENT_WRITE, p)
        except OSError as exc:
            # EMFILE for the selector, ENOSPC/ENOMEM for one more watch: wait and retry.
            raise _ResourceShortage(exc.errno or errno.ENOMEM) from exc
        self.pending[p.fd] = p
        self.seq += 1
        heapq.heappush(self.deadlines, (deadline, self.seq, p))
        host.inflight += 1

    def _launch(self, cur: _Cursor, n: int) -> int:  # noqa: PLR0915 - one hot loop, kept whole
        """Probe up to ``n`` ports from ``cur``; return how many were consumed.

        Raises _ResourceShortage when the machine is out of something: the port at the cursor
        is then not consumed and will be tried again after a back-off.
        """
        host = cur.host
        source = self._source_of(host)
        sock = self.spare.pop(source, None)
        if sock is None:
            sock = self._fresh_socket(host)
        address = host.address
        ports = cur.ports
        attempt = cur.attempt
        clock = time.monotonic
        ce = sock.connect_ex
        closed = 0
        synced = 0
        i = start = cur.idx
        end = i + n
        sync_start = clock()
        try:
            while i < end:
                port = ports[i]
                target = (address, port)
                t0 = clock()
                r = ce(target)
                if r in (errno.EINPROGRESS, errno.EINTR):
                    # Loopback and fast links have the answer by now: ask again at once.
                    r = ce(target)
                    if r == errno.ECONNREFUSED:
                        closed += 1
                        i += 1
                        continue
                    if r == errno.EALREADY:
                        try:
                            self._park(sock, host, port, attempt, t0)
                        except _ResourceShortage:
                            sock.close()  # nowhere to wait for it: this port again later
                            sock = None
                            raise
                        i += 1
                        sock = None
                        sock = self._fresh_socket(host)
                        ce = sock.connect_ex
                        continue
                elif r == errno.ECONNREFUSED:
                    closed += 1
                    i += 1
                    continue
                if r in RESOURCE_ERRNOS:
                    sock.close()
                    sock = None
                    raise _ResourceShortage(r)
                synced += 1
                i += 1
                if not self._settle(host, port, attempt, r, sock=sock, rtt=clock() - t0):
                    sock = None
                    sock = self._fresh_socket(host)
                    ce = sock.connect_ex
        finally:
            cur.idx = i
            self.totals.attempts += i - start
            host.closed += closed
            self.finished += closed
            if sock is not None:
                self.spare[source] = sock
            synced += closed
            if synced:
                # Answers that came back inside connect(): the round trip is below this.
                host.rtt.update((clock() - sync_start) / synced)
        return i - start

    def _next_cursor(self) -> _Cursor | None:
        if self.retry:
            (hidx, attempt), ports = self.retry.popitem()
            return _Cursor(self.hosts[hidx], ports, attempt)
        try:
            hidx, ports = self.work.popleft()
        except IndexError:
            return None
        return _Cursor(self.hosts[hidx], ports, 0)

    def _pick(self) -> _Cursor | None:
        """Return a cursor whose host is below its cap, fetching new work when needed."""
        active = self.active
        for _ in range(len(active)):
            cur = active.popleft()
            if cur.host.dead or cur.idx >= len(cur.ports):
                continue  # finished: dropped
            active.append(cur)
            if cur.host.inflight < self.per_host_cap:
                return cur
        # Every held cursor waits on its host's cap: take more work, but only so much.
        while len(active) < MAX_ACTIVE:
            fresh = self._next_cursor()
            if fresh is None:
                return None
            if fresh.host.dead:
                self._count_dead(fresh)
                continue
            active.append(fresh)
            if fresh.host.inflight < self.per_host_cap:
                return fresh
        return None

    def _launch_round(self, now: float) -> bool:
        """Launch one batch if limits allow; return True if anything was launched."""
        if now < self.backoff_until:
            return False
        room = self.cap - len(self.pending)
        if room <= 0:
            return False
        cur = self._pick()
        if cur is None:
            return False
        host = cur.host
        n = min(room, self.per_host_cap - host.inflight, len(cur.ports) - cur.idx, BATCH)
        if self.bucket is not None:
            n = self.bucket.take(n, now)
            if n == 0:
                return False
        try:
            self._launch(cur, n)
        except _ResourceShortage as exc:
            self._shortage(exc.err, now)
            return False
        except _NoSocket as exc:
            self._host_unusable(host, exc.cause)
            return True
        self._relieved()
        return True

    def _count_dead(self, cur: _Cursor) -> None:
        left = len(cur.ports) - cur.idx
        cur.host.errors += left
        self.finished += left

    def _host_unusable(self, host: _Host, exc: OSError) -> None:
        """socket()/bind() fails for this host (family, source): report once, skip its ports.

        The ports already handed to this lane are counted as errors; chunks still in the
        shared work are counted when a lane picks them up.
        """
        host.dead = True
        left = 0
        for cur in self.active:
            if cur.host is host:
                left += len(cur.ports) - cur.idx
                cur.idx = len(cur.ports)
        hidx = self.host_index[id(host)]
        for key in [k for k in self.retry if k[0] == hidx]:
            left += len(self.retry.pop(key))
        host.errors += left
        self.finished += left
        detail = f"cannot open a socket for {host.address}: {exc}"
        self.sink.error(ProbeError(host.address, None, Proto.TCP, ErrorKind.OS, detail, "sweep"))

    def _shortage(self, err: int, now: float) -> None:
        """Out of descriptors/buffers/ports: shrink the window and wait before trying again."""
        self.totals.backoffs += 1
        self.cap = max(1, len(self.pending))
        self.backoff_until = now + self.backoff_step
        self.backoff_step = min(BACKOFF_MAX, self.backoff_step * 2)
        if self.trouble_since is None:
            self.trouble_since = now
        elif now - self.trouble_since > RESOURCE_GIVE_UP:
            self._give_up(err)

    def _relieved(self) -> None:
        if self.trouble_since is not None or self.cap < self.cap_max:
            self.trouble_since = None
            self.backoff_step = BACKOFF_MIN
            self.cap = min(self.cap_max, self.cap * 2)

    def _give_up(self, err: int) -> None:
        """Shortage lasted RESOURCE_GIVE_UP seconds: report the unprobed ports as errors."""
        left: dict[int, int] = {}
        for cur in self.active:
            hidx = self.host_index[id(cur.host)]
            left[hidx] = left.get(hidx, 0) + len(cur.ports) - cur.idx
        self.active.clear()
        for (hidx, _), ports in self.retry.items():
            left[hidx] = left.get(hidx, 0) + len(ports)
        self.retry.clear()
        while True:
            try:
                hidx, ports = self.work.popleft()
            except IndexError:
                break
            left[hidx] = left.get(hidx, 0) + len(ports)
        for hidx, n in left.items():
            host = self.hosts[hidx]
            host.errors += n
            self.finished += n
            detail = f"{n} port(s) not probed: {errno_name(err)} for {RESOURCE_GIVE_UP:.0f}s"
            self.sink.error(
                ProbeError(host.address, None, Proto.TCP, ErrorKind.RESOURCE, detail, "sweep")
            )

    # ---- waiting --------------------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        if not self.pending or self.sel is None:
            if timeout > 0:
                time.sleep(timeout)
            return
        events = self.sel.select(timeout)
        now = time.monotonic()
        for key, _ev in events:
            p: _Pending = key.data
            if self.pending.pop(p.fd, None) is None:
                continue
            self.sel.unregister(p.fd)
            p.host.inflight -= 1
            sock = p.sock
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            rtt = now - p.t0
            if err in (0, errno.ECONNREFUSED):
                p.host.rtt.update(rtt)
            if err in RESOURCE_ERRNOS:
                sock.close()
                key_r = (self.host_index[id(p.host)], p.attempt)
                self.retry.setdefault(key_r, []).append(p.port)
                continue
            if self._settle(p.host, p.port, p.attempt, err, sock=sock, rtt=rtt):
                sock.close()  # refused after a wait: not worth keeping
        self._expire(now)

    def _expire(self, now: float) -> None:
        heap = self.deadlines
        while heap and heap[0][0] <= now:
            _, _, p = heapq.heappop(heap)
            if self.pending.get(p.fd) is not p:
                continue
            del self.pending[p.fd]
            if self.sel is not None:
                self.sel.unregister(p.fd)
            p.sock.close()
            p.host.inflight -= 1
            self._timed_out(p.host, p.port, p.attempt)

    def _wait_time(self, now: float) -> float:
        wait = PROGRESS_EVERY / 2
        if self.deadlines:
            wait = min(wait, max(0.0, self.deadlines[0][0] - now))
        if now < self.backoff_until:
            wait = min(wait, self.backoff_until - now)
        elif self.bucket is not None and (self.active or self.retry or self.work):
            wait = min(wait, self.bucket.wait_time(now))
        return max(0.0, wait)

    def _has_work(self) -> bool:
        return bool(self.active or self.retry or self.work or self.pending)

    def run(self) -> LaneTotals:
        """Sweep until the shared work is gone; return this lane's totals."""
        sink = self.sink
        try:
            while True:
                if sink.stopped():
                    self.totals.stopped = True
                    break
                now = time.monotonic()
                launched = self._launch_round(now)
                if launched:
                    if self.pending:
                        self._poll(0.0)
                else:
                    if not self._has_work():
                        break
                    self._poll(self._wait_time(time.monotonic()))
                if self.finished:
                    sink.progress(self.finished)
                    self.finished = 0
                if self.on_turn is not None:
                    self.on_turn()
        finally:
            self._close_all()
        if self.finished:
            sink.progress(self.finished)
            self.finished = 0
        sink.flush()
        return self._totals()

    def _close_all(self) -> None:
        for p in self.pending.values():
            p.sock.close()
        self.pending.clear()
        for sock in self.spare.values():
            sock.close()
        self.spare.clear()
        if self.sel is not None:
            self.sel.close()
            self.sel = None

    def _totals(self) -> LaneTotals:
        t = self.totals
        for host in self.hosts:
            c = t.counts.setdefault(host.address, {})
            c[PortState.OPEN.value] = c.get(PortState.OPEN.value, 0) + host.opened
            c[PortState.CLOSED.value] = c.get(PortState.CLOSED.value, 0) + host.closed
            c[PortState.FILTERED.value] = c.get(PortState.FILTERED.value, 0) + host.filtered
            t.errors += host.errors
        return t


# --------------------------------------------------------------------------------------------


def plan_chunks(n_hosts: int, ports: Sequence[int]) -> deque[tuple[int, list[int]]]:
    """Split the work into (host index, ports) chunks, hosts interleaved so all progress."""
    chunks: deque[tuple[int, list[int]]] = deque()
    plist = list(ports)
    for start in range(0, len(plist), CHUNK):
        part = plist[start : start + CHUNK]
        for h in range(n_hosts):
            chunks.append((h, part))
    return chunks


def derive_limits(opts: SweepOptions, n_hosts: int, lanes: int) -> tuple[int, int]:
    """Return (sockets in flight per lane, per host per lane) honouring the descriptor limit."""
    total = inflight_budget(opts.max_inflight)
    per_host = opts.per_host
    if per_host is None:
        per_host = total if n_hosts == 1 else max(16, total // 4)
    per_host = min(per_host, total)
    return max(1, total // lanes), max(1, per_host // lanes)
