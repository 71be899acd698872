"""What a stored run covered: which ports it probed on which address, and which checks it ran
on which endpoint. Pure, read from the record alone.

A run states its probed ports in ``options["probed"]``: ``{"tcp": "22,80,1000-2000",
"udp": "53"}`` (nmap's compact list; "" or a missing protocol: none). `mamori scan` writes the
ports it swept, `mamori import` nmap's ``<scaninfo services=...>`` and `mamori check` "1-65535"
less its --exclude-ports (it reads every listener of the machine: a port no listener holds is
closed, but a listener it did not probe covers nothing). A run without that key
(stored before it existed) covers only the endpoints it lists. A run that did not finish
covers only its listed endpoints too, and a sweep error on an address or port uncovers it.

Checks are not here: the run ran a check on an endpoint when it holds a result for that key
(a finding, a pass, or "not tested", which compares nothing); ``report.diff`` reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mamori.model import PortState, ScanRecord, ScanStatus


def compact_ports(ports: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"`` (sorted, duplicates dropped)."""
    out: list[str] = []
    run: list[int] = []
    for p in sorted(set(ports)):
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [p]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def expand_ports(spec: str) -> frozenset[int]:
    """``"1-3,7"`` -> ``{1, 2, 3, 7}``; parts that are not port numbers or ranges are skipped
    (a stored record is read, never trusted to be well formed)."""
    ports: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            continue
        first, last = int(lo), int(hi or lo)
        if 0 < first <= last <= 65535:
            ports.update(range(first, last + 1))
    return frozenset(ports)


def probed_option(tcp: Iterable[int], udp: Iterable[int]) -> dict[str, str]:
    """The ``options["probed"]`` value for these port lists."""
    return {"tcp": compact_ports(tcp), "udp": compact_ports(udp)}


@dataclass(frozen=True, slots=True)
class Coverage:
    """What one run covered (see the module docstring)."""

    states: Mapping[tuple[str, str, int], PortState]  # every endpoint the run lists
    ports: Mapping[str, frozenset[int]]  # proto -> ports probed on every covered address
    addresses: frozenset[str] | None  # None: every address (this machine, `mamori check`)
    uncovered_hosts: frozenset[tuple[str, str]]  # (address, proto) whose sweep failed
    uncovered_ports: frozenset[tuple[str, str, int]]  # single probes that did not finish
    unprobed: frozenset[tuple[str, int]] = frozenset()  # (proto, port) of listeners not probed

    def probed(self, key: tuple[str, str, int]) -> bool:
        """True when the run probed (address, proto, port) and knows its state."""
        if key in self.states:
            return True
        address, proto, port = key
        if key in self.uncovered_ports or (address, proto) in self.uncovered_hosts:
            return False
        if (proto, port) in self.unprobed:
            return False
        if self.addresses is not None and address not in self.addresses:
            return False
        return port in self.ports.get(proto, frozenset())

    def state(self, key: tuple[str, str, int]) -> PortState | None:
        """The port's state in this run: listed, or closed when probed and not listed
        (closed and filtered ports are counted, not listed); None when not probed."""
        if key in self.states:
            return self.states[key]
        return PortState.CLOSED if self.probed(key) else None


def coverage(record: ScanRecord) -> Coverage:
    """What ``record`` covered."""
    states = {ep.key: ep.state for h in record.hosts for ep in h.endpoints}
    raw = record.options.get("probed") if record.status is ScanStatus.DONE else None
    ports: dict[str, frozenset[int]] = {}
    if isinstance(raw, Mapping):
        for proto in ("tcp", "udp"):
            spec = raw.get(proto)
            if isinstance(spec, str):
                ports[proto] = expand_ports(spec)
    addresses = None if record.kind == "check" else frozenset(h.address for h in record.hosts)
    hosts: set[tuple[str, str]] = set()
    singles: set[tuple[str, str, int]] = set()
    for e in record.errors:
        if e.probe != "sweep" or e.address is None or e.proto is None:
            continue
        if e.port is None:
            hosts.add((e.address, e.proto.value))
        else:
            singles.add((e.address, e.proto.value, e.port))
    return Coverage(
        states=states, ports=ports, addresses=addresses,
        uncovered_hosts=frozenset(hosts), uncovered_ports=frozenset(singles),
        unprobed=frozenset((r.proto.value, r.port) for r in record.listeners
                           if r.probe_address is None),
    )
