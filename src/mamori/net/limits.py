"""Bounds for the sweep engine: file descriptors, send rate and per-probe timeouts.

Everything here is small, synchronous and free of sockets, so it can be tested on its own:

- ``raise_nofile_limit`` / ``inflight_budget``: how many sockets may be in flight at once
  without running the process out of file descriptors;
- ``TokenBucket``: the ``rate`` cap (connect attempts or datagrams per second);
- ``RttEstimator``: nmap-like adaptive timeouts (srtt + 4 * rttvar, clamped).
"""

from __future__ import annotations

import errno
import os
import sys
import time

# Kept free for the rest of the process (store, logs, other threads) when sizing the sweep.
FD_RESERVE = 64
# Upper bound on sockets in flight when the caller does not choose: beyond this, loopback and
# LAN sweeps get no faster and a remote firewall sees a burst.
DEFAULT_MAX_INFLIGHT = 4096
# Never raise the soft limit beyond this even when the hard limit is "unlimited".
_NOFILE_CEILING = 1 << 16

# connect()/socket()/send() errors that mean "this machine is short of something right now"
# (descriptors, buffers, ephemeral ports): back off and try again, never read as a port state.
RESOURCE_ERRNOS = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.EADDRNOTAVAIL,
        errno.EAGAIN,
        errno.EADDRINUSE,  # source port clash on explicit bind: same cure
        errno.ENOSPC,  # epoll: out of watches (fs.epoll.max_user_watches)
    }
)


def open_fd_count() -> int:
    """Return how many file descriptors this process holds (an estimate off Linux/macOS)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return max(0, len(os.listdir(path)) - 1)  # minus the one listdir itself opened
        except OSError:
            continue
    return 32


def nofile_limits() -> tuple[int, int]:
    """Return (soft, hard) RLIMIT_NOFILE; hard may be ``resource.RLIM_INFINITY``.

    On platforms without the ``resource`` module a conservative (512, 512) comes back.
    """
    if sys.platform == "win32":
        return (512, 512)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (soft, hard)


def raise_nofile_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE toward ``wanted`` without exceeding the hard limit.

    Never lowers the limit. Returns the soft limit in force afterwards. A refusal by the OS
    (macOS caps at OPEN_MAX below an "unlimited" hard limit) is not an error: the old or a
    smaller raised limit stays and is returned.
    """
    if sys.platform == "win32":
        return nofile_limits()[0]
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _NOFILE_CEILING
    target = min(wanted, _NOFILE_CEILING)
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    while target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            target //= 2  # macOS refuses values above kern.maxfilesperproc: ask for less
    return soft


def inflight_budget(requested: int | None) -> int:
    """Return how many sockets the sweep may hold at once.

    ``requested`` is the caller's ``max_inflight`` (None: ``DEFAULT_MAX_INFLIGHT``). The soft
    descriptor limit is raised toward what that needs; the answer is then capped so that the
    descriptors already open plus a reserve stay below the limit. Always at least 1.
    """
    want = DEFAULT_MAX_INFLIGHT if requested is None else max(1, requested)
    held = open_fd_count()
    soft = raise_nofile_limit(want + held + FD_RESERVE)
    reserve = min(FD_RESERVE, max(4, soft // 4))
    room = soft - held - reserve
    return max(1, min(want, room))


class TokenBucket:
    """Allows ``rate`` events per second on average, with bursts of at most ``burst``.

    Not thread-safe: each sweep lane owns its bucket.
    """

    def __init__(self, rate: float, burst: float | None = None, now: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self.rate = rate
        # A burst of 1/100 s worth of tokens keeps short-window rates close to the cap.
        self.burst = max(1.0, rate / 100.0) if burst is None else max(1.0, burst)
        self._tokens = 1.0
        self._stamp = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, wanted: int, now: float | None = None) -> int:
        """Take up to ``wanted`` whole tokens; return how many were granted (maybe 0)."""
        self._refill(time.monotonic() if now is None else now)
        granted = min(wanted, int(self._tokens + 1e-9))  # 0.1 * 10 must make one token
        self._tokens -= granted
        return max(0, granted)

    def wait_time(self, now: float | None = None) -> float:
        """Return seconds until at least one token is available (0.0 if one is now)."""
        self._refill(time.monotonic() if now is None else now)
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self.rate


class RttEstimator:
    """Round-trip estimate for one host, as nmap and RFC 6298 keep it.

    ``timeout()`` is ``srtt + 4 * rttvar`` clamped to [``min_timeout``, ``max_timeout``]; before
    the first sample it is ``initial_timeout`` (also clamped).
    """

    def __init__(self, initial_timeout: float, min_timeout: float, max_timeout: float) -> None:
        if not 0 < min_timeout <= max_timeout:
            raise ValueError(
                f"need 0 < min_timeout <= max_timeout, got {min_timeout!r}, {max_timeout!r}"
            )
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout
        self.initial_timeout = min(max(initial_timeout, min_timeout), max_timeout)
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.samples = 0
        self._timeout = self.initial_timeout

    def update(self, rtt: float) -> None:
        """Fold one measured round trip (seconds) into the estimate."""
        rtt = max(0.0, rtt)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2.0
        else:
            delta = rtt - self.srtt
            self.srtt += delta / 8.0
            self.rttvar += (abs(delta) - self.rttvar) / 4.0
        self.samples += 1
        self._timeout = min(max(self.srtt + 4.0 * self.rttvar, self.min_timeout), self.max_timeout)

    def timeout(self) -> float:
        """Return the current per-probe timeout in seconds."""
        return self._timeout
