"""Tiny stand-in for ``mamori scan --no-identify --format json`` used by bench/sweep.py.

Runs mamori's TCP sweep in a fresh interpreter (so start-up is timed like nmap's) and prints
the open ports in the shape of mamori's JSON report (hosts[].endpoints[]), which is all the
benchmark reads. Usage::

    python bench/_driver.py [-p SPEC | --top-ports N] [--exclude-ports SPEC] TARGET...

TARGET is an IP literal or a CIDR block (every address of it, as nmap does).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time

from mamori.model import PortResult, PortState, ProbeError
from mamori.net.sweep import SweepOptions, tcp_sweep
from mamori.ports import select_ports


def expand(targets: list[str]) -> list[str]:
    out: list[str] = []
    for t in targets:
        if "/" in t:
            out.extend(str(a) for a in ipaddress.ip_network(t, strict=False))
        else:
            out.append(str(ipaddress.ip_address(t)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", dest="ports")
    ap.add_argument("--top-ports", type=int)
    ap.add_argument("--exclude-ports")
    ap.add_argument("--timeout", type=float, default=1.5)
    ap.add_argument("--workers", type=int)
    ap.add_argument("targets", nargs="+")
    args = ap.parse_args()
    ports = select_ports("tcp", args.ports, args.top_ports, args.exclude_ports)
    addresses = expand(args.targets)
    found: dict[str, list[dict[str, object]]] = {a: [] for a in addresses}
    errors: list[str] = []

    def on_result(r: PortResult) -> None:
        found[r.address].append(
            {
                "port": r.port,
                "proto": r.proto.value,
                "state": r.state.value,
                "reason": r.reason.value,
            }
        )

    def on_error(e: ProbeError) -> None:
        errors.append(f"{e.address}:{e.port} {e.kind.value} {e.detail}")

    t0 = time.monotonic()
    stats = tcp_sweep(
        addresses,
        ports,
        SweepOptions(max_timeout=args.timeout, workers=args.workers),
        on_result,
        on_error,
    )
    out = {
        "hosts": [{"address": a, "endpoints": eps} for a, eps in found.items()],
        "errors": errors,
        "stats": {
            "elapsed": round(time.monotonic() - t0, 4),
            "attempts": stats.attempts,
            "self_connects": stats.self_connects,
            "closed": sum(c.get(PortState.CLOSED.value, 0) for c in stats.counts.values()),
        },
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
