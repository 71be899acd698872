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
mamori stops. With a store, each block is recorded with its expiry (``watch_blocks``):
:meth:`Blocker.restore` puts the unexpired ones back at start (after a reboot the set is
empty), :meth:`Blocker.unblock` lifts one. Never blocked: loopback (unless
``allow_loopback``), the host's own networks and default gateways (read with ``ip``; when they
cannot be read nothing is blocked), ``never_block`` and ``allowlist``, unspecified and
multicast addresses. Every command goes through a
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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from mamori.audit.runner import DEFAULT_TIMEOUT, CommandResult, CommandRunner, SystemRunner
from mamori.store.blocks import StoredBlock, record_block, remove_block
from mamori.store.errors import StoreError
from mamori.watch.hostnets import HostNetworks, read_host_networks
from mamori.watch.settings import BlockSettings, format_duration

if TYPE_CHECKING:
    from mamori.store import Store

__all__ = ["BlockResult", "Blocker", "NetnsRunner", "UnblockResult", "render_blocks"]

MAX_REMEMBERED = 65536  # blocked addresses remembered (to not re-run nft for each incident)
HOSTNETS_TTL = 60.0  # seconds the host's networks are trusted before they are read again


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
            extra = f"; {self.error}" if self.error else ""
            return (f"blocked {self.src} for {format_duration(self.timeout)} "
                    f"({self.reason}){extra}")
        if self.skipped:
            return f"not blocking {self.src}: {self.skipped}"
        return f"could not block {self.src}: {self.error}"


@dataclass(frozen=True)
class UnblockResult:
    """What :meth:`Blocker.unblock` did: taken out of the nft set and/or the store, or the
    error (nft failed: the store keeps the row, the address is still blocked)."""

    address: str
    from_set: bool = False
    from_store: StoredBlock | None = None
    error: str | None = None

    @property
    def found(self) -> bool:
        return self.from_set or self.from_store is not None

    def text(self) -> str:
        if self.error:
            return f"could not unblock {self.address}: {self.error}"
        if not self.found:
            return f"{self.address} is not blocked"
        where = [w for w, yes in (("the nftables set", self.from_set),
                                  ("the store", self.from_store is not None)) if yes]
        return f"unblocked {self.address}: removed from {' and '.join(where)}"


class NetnsRunner:
    """Runs each command inside the network namespace ``netns`` (``ip netns exec``)."""

    def __init__(self, netns: str, inner: CommandRunner | None = None) -> None:
        self.netns = netns
        self.inner = inner or SystemRunner()

    def run(self, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        return self.inner.run(["ip", "netns", "exec", self.netns, *argv], timeout)


class Blocker:
    def __init__(self, settings: BlockSettings, runner: CommandRunner | None = None, *,
                 clock: Callable[[], float] = time.monotonic, store: Store | None = None,
                 hostnets: HostNetworks | None = None) -> None:
        self.settings = settings
        self.runner = runner or SystemRunner()
        self.store = store  # where blocks are recorded (None: not recorded)
        self._clock = clock
        self._hostnets = hostnets  # given: never read with ip
        self._hostnets_fixed = hostnets is not None
        self._hostnets_at = -HOSTNETS_TTL
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
        for net in self.settings.never_block:
            if ip.version == net.version and ip in net:
                return f"in never_block ({net})"
        if ip.is_loopback:
            return None  # allow_loopback: the host's lo network does not protect it
        host = self.host_networks()
        if isinstance(host, str):
            return f"cannot tell the host's own networks ({host})"
        return host.protects(ip)

    def host_networks(self) -> HostNetworks | str:
        """The host's networks and default gateways (read again after HOSTNETS_TTL)."""
        now = self._clock()
        if not self._hostnets_fixed and now - self._hostnets_at >= HOSTNETS_TTL:
            found = read_host_networks(self.runner, self.settings.ip)
            if isinstance(found, str):
                return found
            self._hostnets, self._hostnets_at = found, now
        return self._hostnets if self._hostnets is not None else "not read"

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

    def block_now(self, src: str, reason: str = "", incident_id: int | None = None, *,
                  seconds: int | None = None, record: bool = True) -> BlockResult:
        """Blocking call: policy check, ensure the ruleset, add the element (for ``seconds``,
        default the settings' timeout), record it in the store (when there is one)."""
        why = self.refuse(src)
        if why is not None:
            return BlockResult(src, False, reason, skipped=why)
        address = str(_ip(src))
        with self._lock:
            if self.is_blocked(address):
                return BlockResult(address, False, reason, skipped="already blocked")
            if not self._ready:
                error = self.ensure()
                if error is not None:
                    return BlockResult(address, False, reason, error=error)
                self._ready = True
            if seconds is None:
                seconds = max(1, round(self.settings.timeout))
            result = self._nft("add", "element", *self._family_args(), self._set_of(address),
                               f"{{ {address} timeout {seconds}s }}")
            if not result.ok:
                self._ready = False  # someone may have removed the table: check again
                return BlockResult(address, False, reason, error=_nft_error(result))
            self._remember(address, self._clock() + seconds)
        if record and self.store is not None:
            now = datetime.now(UTC)
            try:
                record_block(self.store, StoredBlock(address, reason, incident_id, now,
                                                     now + timedelta(seconds=seconds)))
            except StoreError as exc:  # blocked all the same; say it will not survive
                return BlockResult(address, True, reason, timeout=float(seconds),
                                   error=f"not recorded: {exc}")
        return BlockResult(address, True, reason, timeout=float(seconds))

    async def block(self, src: str, reason: str = "", incident_id: int | None = None
                    ) -> BlockResult:
        """Block ``src`` (nft runs in a worker thread: the loop never waits on it)."""
        return await asyncio.to_thread(self.block_now, src, reason, incident_id)

    def restore(self, blocks: Sequence[StoredBlock], now: datetime | None = None
                ) -> list[BlockResult]:
        """Put recorded, unexpired blocks back into the sets for the time they have left
        (after a restart or reboot); the policy is checked again."""
        when = now or datetime.now(UTC)
        out = []
        for b in blocks:
            left = int((b.until - when).total_seconds())
            if left >= 1:
                out.append(self.block_now(b.address, b.reason, b.incident_id, seconds=left,
                                          record=False))
        return out

    def unblock(self, src: str) -> UnblockResult:
        """Take ``src`` out of its nft set and out of the store. Raises ValueError for
        something that is not an IP address."""
        address = str(_ip(src))
        with self._lock:
            listed = self._nft("-j", "list", "set", *self._family_args(),
                               self._set_of(address))
            from_set = False
            if listed.ok and address in _set_elements(listed.stdout):
                result = self._nft("delete", "element", *self._family_args(),
                                   self._set_of(address), f"{{ {address} }}")
                if not result.ok:
                    return UnblockResult(address, error=_nft_error(result))
                from_set = True
            elif not listed.ok and "No such file" not in listed.stderr:
                return UnblockResult(address, error=_nft_error(listed))
            self._blocked.pop(address, None)
        stored = None
        if self.store is not None:
            try:
                stored = remove_block(self.store, address)
            except StoreError as exc:
                return UnblockResult(address, from_set, error=str(exc))
        return UnblockResult(address, from_set, stored)

    def _set_of(self, address: str) -> str:
        return self.settings.set4 if ":" not in address else self.settings.set6

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


def _ip(src: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(src.strip().split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def render_blocks(blocks: Sequence[StoredBlock], fmt: str, now: datetime | None = None) -> str:
    """``mamori watch blocked``: a table (source, why, incident, until) or JSON."""
    when = now or datetime.now(UTC)
    if fmt == "json":
        return json.dumps([{
            "src": b.address, "reason": b.reason, "incident": b.incident_id,
            "blocked_at": b.created_at.isoformat(), "until": b.until.isoformat(),
            "seconds_left": max(0, int((b.until - when).total_seconds())),
        } for b in blocks], indent=2)
    if not blocks:
        return "nothing is blocked"
    rows = [("SOURCE", "WHY", "INCIDENT", "UNTIL")]
    rows += [(b.address, b.reason, "-" if b.incident_id is None else str(b.incident_id),
              f"{b.until.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z "
              f"(in {format_duration(max(1, int((b.until - when).total_seconds())))})")
             for b in blocks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True))
                     + "  " + r[3] for r in rows)


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
