"""TCP connect sweep: which ports of which addresses accept a connection. Needs no root.

Design (measured on Linux loopback, see bench/sweep.py):

- Non-blocking sockets, many in flight, one ``selectors`` selector per lane for the probes that
  wait on the network. Answers the kernel already has when ``connect`` returns (loopback, fast
  LANs) are read at once with a second ``connect_ex`` and never touch the selector.
- A socket refused by its target is reset by the kernel and reused for the next port, bound to
  an explicit source address and port: no ``socket()``/``close()`` and no ephemeral-port search
  per closed port. That, not the language, makes a full 65,535-port sweep beat ``nmap -sT``.
- Connected sockets are closed with SO_LINGER 0 (RST): no TIME_WAIT pile-up on either side.
- A connect that "succeeds" to its own source address and port (TCP simultaneous open, which
  happens on loopback) is reported closed with reason SELF_CONNECT, never open.
- Bounded: global and per-host sockets in flight (below the descriptor limit), per-probe
  deadlines from an nmap-like RTT estimate, a token-bucket ``rate``, retries for silence, and
  back-off (never "closed") when the machine runs short of descriptors, buffers or ports.
- On Linux, big sweeps run in up to ``workers`` lanes: the calling thread plus forked worker
  processes, each with its share of the ports. On loopback the kernel's TCP work is the
  bottleneck and it scales with cores, which threads (one GIL handover per syscall) do not.
  Workers report back over a pipe; every callback runs in the calling thread.

The engine of one lane is in mamori.net.tcplane; shared types in mamori.net.sweepbase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import sys
import time
import traceback
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from mamori.model import ErrorKind, PortResult, PortState, ProbeError, Proto, Reason
from mamori.net.limits import RESOURCE_ERRNOS
from mamori.net.sweepbase import (
    BATCH,
    CHUNK,
    PROGRESS_EVERY,
    DirectSink,
    ErrorCallback,
    LaneTotals,
    ProgressCallback,
    ResultCallback,
    StopCallback,
    SweepOptions,
    SweepStats,
    check_source,
    merge_totals,
    validate_targets,
)
from mamori.net.tcplane import TcpLane, derive_limits, plan_chunks

__all__ = ["SweepOptions", "SweepStats", "tcp_sweep"]

# A worker told to stop gets this long to report before it is killed.
WORKER_STOP_GRACE = 5.0
# Bytes of worker output buffered at most before the parent must read (kept small: the
# parent reads between batches).
_READ_SIZE = 1 << 16


def can_fork_workers() -> bool:
    """Return True where worker processes may be forked (Linux: fork without exec is safe for
    the socket-only code a worker runs; macOS frameworks are not fork-safe)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def usable_cpus() -> int:
    """Return the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_lanes(opts: SweepOptions, total: int) -> int:
    """Return how many lanes to run: 1 unless a big, uncapped sweep can use a second core."""
    if opts.workers is not None:
        wanted = opts.workers
    elif opts.rate is not None or total < 8 * CHUNK:
        wanted = 1  # a rate cap or a small job gains nothing from more lanes
    else:
        wanted = min(2, usable_cpus())
    if not can_fork_workers():
        wanted = 1
    return max(1, min(wanted, max(1, total // BATCH)))


# --------------------------------------------------------------------------------------------
# Worker processes: a forked child runs one lane and reports through a pipe.


class PipeSink:
    """A worker's sink: findings go to the parent as JSON lines; the parent says stop by
    closing (or writing to) the control pipe."""

    def __init__(self, data_fd: int, ctrl_fd: int) -> None:
        self._fd = data_fd
        self._ctrl = ctrl_fd
        self._pending_progress = 0
        self._last_progress = time.monotonic()
        self._last_check = 0.0
        self._stop = False

    def send(self, message: list[object]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def result(self, res: PortResult) -> None:
        self.send(["r", res.address, res.port, res.state.value, res.reason.value, res.rtt_ms])

    def error(self, err: ProbeError) -> None:
        self.send(["e", err.address, err.port, err.kind.value, err.detail])

    def progress(self, n: int) -> None:
        self._pending_progress += n
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY / 2:
            self.flush()

    def flush(self) -> None:
        self._last_progress = time.monotonic()
        if self._pending_progress:
            self.send(["p", self._pending_progress])
            self._pending_progress = 0

    def stopped(self) -> bool:
        if self._stop:
            return True
        now = time.monotonic()
        if now - self._last_check >= PROGRESS_EVERY / 2:
            self._last_check = now
            readable, _, _ = select.select([self._ctrl], [], [], 0)
            self._stop = bool(readable)  # a byte, or EOF when the parent closed its end
        return self._stop


def _worker_main(
    addrs: list[str],
    share: deque[tuple[int, list[int]]],
    opts: SweepOptions,
    limits: tuple[int, int],
    *,
    data_fd: int,
    ctrl_fd: int,
    inherited: list[int],
) -> NoReturn:
    """Body of a forked worker: run one lane, report, and leave without running parent code."""
    code = 70  # EX_SOFTWARE unless the lane finishes
    try:
        for fd in inherited:  # other workers' parent-side ends: theirs to close, not ours
            os.close(fd)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, signal.SIG_DFL)  # Ctrl-C ends a worker at once
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)  # the parent's event loop must not hear our signals
        sink = PipeSink(data_fd, ctrl_fd)
        cap, per_host = limits
        lane = TcpLane(addrs, share, opts, cap=cap, per_host_cap=per_host, sink=sink)
        totals = lane.run()
        sink.send(["t", dataclasses.asdict(totals)])
        code = 0
    except BaseException:  # reported to the parent, which raises it: never hidden
        with contextlib.suppress(BaseException):
            PipeSink(data_fd, ctrl_fd).send(["x", traceback.format_exc()])
    finally:
        os._exit(code)


@dataclass
class _Worker:
    pid: int
    data_fd: int
    ctrl_fd: int | None
    buf: bytearray = field(default_factory=bytearray)
    totals: LaneTotals | None = None
    crash: str | None = None
    eof: bool = False
    status: int | None = None


class WorkerCrash(RuntimeError):
    """A sweep worker process failed; the message carries its traceback or exit status."""


class _Workers:
    """The parent's side of the forked workers: start, drain, stop, reap."""

    def __init__(self, sink: DirectSink) -> None:
        self.sink = sink
        self.workers: list[_Worker] = []

    def fork(
        self,
        addrs: list[str],
        share: deque[tuple[int, list[int]]],
        opts: SweepOptions,
        limits: tuple[int, int],
    ) -> None:
        data_r, data_w = os.pipe()
        try:
            ctrl_r, ctrl_w = os.pipe()
        except OSError:
            os.close(data_r)
            os.close(data_w)
            raise
        inherited = [data_r, ctrl_w]
        for w in self.workers:
            inherited.append(w.data_fd)
            if w.ctrl_fd is not None:
                inherited.append(w.ctrl_fd)
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a threaded process. The child below runs only
            # socket code that takes none of the locks another thread could hold, then _exit.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                pid = os.fork()
            except OSError:
                for fd in (data_r, data_w, ctrl_r, ctrl_w):
                    os.close(fd)
                raise
        if pid == 0:
            _worker_main(
                addrs, share, opts, limits, data_fd=data_w, ctrl_fd=ctrl_r, inherited=inherited
            )
        os.close(data_w)
        os.close(ctrl_r)
        os.set_blocking(data_r, False)
        self.workers.append(_Worker(pid, data_r, ctrl_w))

    def _handle(self, w: _Worker, line: bytes | bytearray) -> None:
        msg = json.loads(line)
        kind = msg[0]
        if kind == "r":
            _, address, port, state, reason, rtt = msg
            self.sink.result(
                PortResult(address, port, Proto.TCP, PortState(state), Reason(reason), rtt)
            )
        elif kind == "e":
            _, address, port, err_kind, detail = msg
            self.sink.error(
                ProbeError(address, port, Proto.TCP, ErrorKind(err_kind), detail, "sweep")
            )
        elif kind == "p":
            self.sink.progress(int(msg[1]))
        elif kind == "t":
            w.totals = LaneTotals(**msg[1])
        elif kind == "x":
            w.crash = str(msg[1])

    def _read(self, w: _Worker) -> None:
        while not w.eof:
            try:
                chunk = os.read(w.data_fd, _READ_SIZE)
            except BlockingIOError:
                return
            if not chunk:
                w.eof = True
                os.close(w.data_fd)
                break
            w.buf += chunk
            *lines, rest = w.buf.split(b"\n")
            w.buf = bytearray(rest)
            for line in lines:
                self._handle(w, line)

    def drain(self) -> None:
        """Read whatever the workers have written so far (never blocks)."""
        for w in self.workers:
            self._read(w)

    def stop(self) -> None:
        """Ask every worker to stop (they report their totals and leave)."""
        for w in self.workers:
            if w.ctrl_fd is not None:
                os.close(w.ctrl_fd)
                w.ctrl_fd = None

    def wait(self, grace: float | None = None) -> None:
        """Drain until every worker has closed its pipe; kill those still there after
        ``grace`` seconds (None: no limit), then reap them all."""
        deadline = None if grace is None else time.monotonic() + grace
        while True:
            live = [w for w in self.workers if not w.eof]
            if not live:
                break
            if deadline is not None and time.monotonic() > deadline:
                for w in live:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w.pid, signal.SIGKILL)
                    w.eof = True
                    os.close(w.data_fd)
                break
            select.select([w.data_fd for w in live], [], [], PROGRESS_EVERY / 2)
            self.drain()
            if deadline is None and self.sink.stopped():
                self.stop()
                deadline = time.monotonic() + WORKER_STOP_GRACE
        for w in self.workers:
            if w.status is None:
                _, w.status = os.waitpid(w.pid, 0)
            if w.ctrl_fd is not None:
                os.close(w.ctrl_fd)
                w.ctrl_fd = None

    def results(self) -> list[LaneTotals]:
        """Return the workers' totals; raise WorkerCrash for a worker that failed."""
        out = []
        for w in self.workers:
            if w.crash is not None:
                raise WorkerCrash(f"sweep worker {w.pid} failed:\n{w.crash}")
            if w.totals is None:
                raise WorkerCrash(f"sweep worker {w.pid} ended without its totals ({w.status})")
            out.append(w.totals)
        return out


def _run_forked(
    addrs: list[str],
    plist: list[int],
    opts: SweepOptions,
    *,
    n_lanes: int,
    limits: tuple[int, int],
    sink: DirectSink,
) -> list[LaneTotals]:
    chunks = list(plan_chunks(len(addrs), plist))
    # Interleaved shares: every lane gets a bit of every host and every port range.
    shares = [deque(chunks[i::n_lanes]) for i in range(n_lanes)]
    workers = _Workers(sink)
    finished = False
    # The parent's own share: the first one, or (parent_lane off) only what could not be forked.
    own: deque[tuple[int, list[int]]] = shares[0] if opts.parent_lane else deque()
    try:
        for share in shares[1:] if opts.parent_lane else shares:
            try:
                workers.fork(addrs, share, opts, limits)
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRNOS:
                    raise
                own.extend(share)  # no pipe or process to spare: the parent does it
        if own or not workers.workers:
            cap, per_host = limits
            lane = TcpLane(
                addrs, own, opts, cap=cap, per_host_cap=per_host, sink=sink, on_turn=workers.drain
            )
            mine = lane.run()
        else:
            mine = LaneTotals(counts={a: {} for a in addrs})
        if mine.stopped:
            workers.stop()
            workers.wait(WORKER_STOP_GRACE)
        else:
            workers.wait()
        finished = True
    finally:
        if not finished:  # a callback raised, or Ctrl-C: leave no worker behind
            workers.stop()
            workers.wait(WORKER_STOP_GRACE)
    return [mine, *workers.results()]


def tcp_sweep(
    addresses: Sequence[str],
    ports: Sequence[int],
    opts: SweepOptions,
    on_result: ResultCallback,
    on_error: ErrorCallback | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> SweepStats:
    """TCP connect sweep of every (address, port); blocks until done or stopped.

    ``on_result`` gets each port whose final state is open or filtered; closed ports are only
    counted in the returned SweepStats. ``on_error`` gets a ProbeError for pairs that could not
    be probed (never counted as closed). ``on_progress`` gets the number of pairs decided since
    its last call (batched). All callbacks run in the calling thread. Returns SweepStats.
    Raises ValueError for addresses that are not IP literals, ports outside 1-65535 and
    unusable options; WorkerCrash if a worker process fails; an exception from a callback
    stops the sweep and propagates.
    """
    t_start = time.monotonic()
    addrs, plist = validate_targets(addresses, ports)
    check_source(opts, addrs)
    sink = DirectSink(on_result, on_error, on_progress, should_stop)
    n_lanes = choose_lanes(opts, len(addrs) * len(plist))
    if n_lanes > 1 and opts.rate is not None:
        opts = dataclasses.replace(opts, rate=opts.rate / n_lanes)
    limits = derive_limits(opts, len(addrs), n_lanes)
    if n_lanes == 1:
        work = plan_chunks(len(addrs), plist)
        cap, per_host = limits
        parts = [TcpLane(addrs, work, opts, cap=cap, per_host_cap=per_host, sink=sink).run()]
    else:
        parts = _run_forked(addrs, plist, opts, n_lanes=n_lanes, limits=limits, sink=sink)
    sink.flush()
    merged = merge_totals(addrs, parts)
    return SweepStats(
        counts=merged.counts,
        elapsed=time.monotonic() - t_start,
        attempts=merged.attempts,
        errors=merged.errors,
        self_connects=merged.self_connects,
        stopped=merged.stopped,
        retried=merged.retried,
        backoffs=merged.backoffs,
    )
