"""Opt-in blocking: put an offender's address into an nftables set with a timeout.

The ruleset it relies on (created when missing, never touched otherwise)::

    table inet mamori {
        set watch_block  { type ipv4_addr; flags timeout; }
        set watch_block6 { type ipv6_addr; flags timeout; }
        chain watch_input {
            type filter hook input priority -10; policy accept;
            ip saddr @watch_block drop
            ip6 saddr @watch_block6 drop
        }
    }

then ``nft add element inet mamori watch_block { 198.51.100.7 timeout 3600s }``: the kernel
forgets the element when the timeout passes, so a block never outlives its welcome even when
mamori stops. Loopback is never blocked unless ``allow_loopback``; addresses in
``allowlist`` never; nor unspecified or multicast addresses. Every command goes through a
:class:`~mamori.audit.runner.CommandRunner` (:class:`NetnsRunner` runs them inside a network
namespace: the tests' way, and a way to guard a container's namespace).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mamori.audit.runner import DEFAULT_TIMEOUT, CommandResult, CommandRunner, SystemRunner
from mamori.watch.settings import BlockSettings, format_duration

__all__ = ["BlockResult", "Blocker", "NetnsRunner"]

MAX_REMEMBERED = 65536  # blocked addresses remembered (to not re-run nft for each incident)


@dataclass(frozen=True)
class BlockResult:
    """What happened to one block request: ``ok`` (now in the set), ``skipped`` with the
    reason (never attempted), or ``error`` (nft failed; the message says why)."""

    src: str
    ok: bool
    reason: str = ""  # why it was asked (the incident)
    skipped: str | None = None
    error: str | None = None
    timeout: float = 0.0

    def text(self) -> str:
        if self.ok:
            return f"blocked {self.src} for {format_duration(self.timeout)} ({self.reason})"
        if self.skipped:
            return f"not blocking {self.src}: {self.skipped}"
        return f"could not block {self.src}: {self.error}"


class NetnsRunner:
    """Runs each command inside the network namespace ``netns`` (``ip netns exec``)."""

    def __init__(self, netns: str, inner: CommandRunner | None = None) -> None:
        self.netns = netns
        self.inner = inner or SystemRunner()

    def run(self, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        return self.inner.run(["ip", "netns", "exec", self.netns, *argv], timeout)


class Blocker:
    def __init__(self, settings: BlockSettings, runner: CommandRunner | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.runner = runner or SystemRunner()
        self._clock = clock
        self._ready = False
        self._lock = threading.Lock()  # nft calls run in worker threads, one at a time
        self._blocked: dict[str, float] = {}  # address -> monotonic expiry

    # --- policy (pure) ---------------------------------------------------------------------

    def refuse(self, src: str) -> str | None:
        """Why ``src`` must not be blocked, or None when it may be."""
        try:
            ip = ipaddress.ip_address(src.split("%", 1)[0])
        except ValueError:
            return "not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_unspecified or ip.is_multicast:
            return "unspecified or multicast address"
        if ip.is_loopback and not self.settings.allow_loopback:
            return "loopback is never blocked (allow_loopback = false)"
        for net in self.settings.allowlist:
            if ip.version == net.version and ip in net:
                return f"in the allowlist ({net})"
        return None

    def is_blocked(self, src: str) -> bool:
        until = self._blocked.get(src)
        return until is not None and until > self._clock()

    # --- nftables ----------------------------------------------------------------------------

    def _nft(self, *args: str) -> CommandResult:
        return self.runner.run([self.settings.nft, *args])

    def _family_args(self) -> tuple[str, str]:
        return "inet", self.settings.table

    def ensure(self) -> str | None:
        """Create the table, both sets and the input chain with its two drop rules when they
        are missing. Returns None, or the error (one line)."""
        s = self.settings
        fam, table = self._family_args()
        steps: list[tuple[str, ...]] = [
            ("add", "table", fam, table),
            ("add", "set", fam, table, s.set4, "{ type ipv4_addr ; flags timeout ; }"),
            ("add", "set", fam, table, s.set6, "{ type ipv6_addr ; flags timeout ; }"),
            ("add", "chain", fam, table, s.chain,
             f"{{ type filter hook input priority {s.priority} ; policy accept ; }}"),
        ]
        for step in steps:
            result = self._nft(*step)
            if not result.ok:
                return _nft_error(result)
        listing = self._nft("-j", "list", "chain", fam, table, s.chain)
        if not listing.ok:
            return _nft_error(listing)
        have = _rule_sets(listing.stdout)
        for proto, name in (("ip", s.set4), ("ip6", s.set6)):
            if name not in have:
                result = self._nft("add", "rule", fam, table, s.chain, proto, "saddr",
                                   f"@{name}", "drop")
                if not result.ok:
                    return _nft_error(result)
        return None

    def block_now(self, src: str, reason: str = "") -> BlockResult:
        """Blocking call: policy check, ensure the ruleset, add the element."""
        why = self.refuse(src)
        if why is not None:
            return BlockResult(src, False, reason, skipped=why)
        ip = ipaddress.ip_address(src.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        address = str(ip)
        with self._lock:
            if self.is_blocked(address):
                return BlockResult(address, False, reason, skipped="already blocked")
            if not self._ready:
                error = self.ensure()
                if error is not None:
                    return BlockResult(address, False, reason, error=error)
                self._ready = True
            name = self.settings.set4 if ip.version == 4 else self.settings.set6
            seconds = max(1, round(self.settings.timeout))
            result = self._nft("add", "element", *self._family_args(), name,
                               f"{{ {address} timeout {seconds}s }}")
            if not result.ok:
                self._ready = False  # someone may have removed the table: check again
                return BlockResult(address, False, reason, error=_nft_error(result))
            self._remember(address, self._clock() + seconds)
        return BlockResult(address, True, reason, timeout=float(seconds))

    async def block(self, src: str, reason: str = "") -> BlockResult:
        """Block ``src`` (nft runs in a worker thread: the loop never waits on it)."""
        return await asyncio.to_thread(self.block_now, src, reason)

    def _remember(self, address: str, until: float) -> None:
        if len(self._blocked) >= MAX_REMEMBERED:
            now = self._clock()
            self._blocked = {a: t for a, t in self._blocked.items() if t > now}
            while len(self._blocked) >= MAX_REMEMBERED:
                self._blocked.pop(next(iter(self._blocked)))
        self._blocked[address] = until

    def listed(self) -> list[str]:
        """The addresses in both sets now (as nft lists them), for status and tests."""
        out: list[str] = []
        for name in (self.settings.set4, self.settings.set6):
            result = self._nft("-j", "list", "set", *self._family_args(), name)
            if result.ok:
                out += _set_elements(result.stdout)
        return out


def _nft_error(result: CommandResult) -> str:
    text = (result.stderr or result.stdout).strip().splitlines()
    first = next((line for line in text if line.strip()), f"exit status {result.returncode}")
    argv = list(result.argv)
    if argv[:3] == ["ip", "netns", "exec"]:
        argv = argv[4:]  # name the nft command, not the namespace wrapper
    return f"{' '.join(argv[:4])}: {first}"[:300]


def _rule_sets(listing: str) -> set[str]:
    """Names of the sets that drop rules in a ``nft -j list chain`` listing refer to."""
    try:
        items = json.loads(listing).get("nftables", [])
    except (ValueError, AttributeError):
        return set()
    names: set[str] = set()
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict):
            continue
        exprs = rule.get("expr") or []
        if not any(isinstance(e, dict) and "drop" in e for e in exprs):
            continue
        for e in exprs:
            right = e.get("match", {}).get("right") if isinstance(e, dict) else None
            if isinstance(right, str) and right.startswith("@"):
                names.add(right[1:])
    return names


def _set_elements(listing: str) -> list[str]:
    try:
        items = json.loads(listing).get("nftables", [])
    except (ValueError, AttributeError):
        return []
    out: list[str] = []
    for item in items:
        nft_set = item.get("set") if isinstance(item, dict) else None
        if not isinstance(nft_set, dict):
            continue
        for elem in nft_set.get("elem", []):
            value = elem.get("elem", {}).get("val") if isinstance(elem, dict) else elem
            if isinstance(value, str):
                out.append(value)
    return out
