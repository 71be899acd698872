"""A decoy process for the flood tests: ``python watch_decoy_child.py CONFIG_JSON``.

CONFIG: {"decoys": ["127.0.120.40:0/tcp=telnet", ...], "limits": {DecoyLimits fields}}.
Prints ``READY [ports]``; then answers one JSON line per command read on stdin: ``STATS``
(memory, per-decoy counters, events counted by type and source, the sensor.limit reports) and
``QUIT`` (the same after closing every decoy, then exits). Events are counted, not kept, so
the process's memory is the decoys' own.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import sys
from typing import Any

from mamori.model.watch import Event, EventType
from mamori.watch.decoys import DecoyLimits, DecoyServer, DecoySpec, SourceGuard


def _status() -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


async def main() -> None:
    config = json.loads(sys.argv[1])
    limits = DecoyLimits(**config.get("limits", {}))
    counts: collections.Counter[str] = collections.Counter()
    reports: list[dict[str, Any]] = []

    def emit(event: Event) -> None:
        counts[f"{event.type}|{event.src}"] += 1
        if event.type == EventType.SENSOR_LIMIT and len(reports) < 1000:
            reports.append({"src": event.src, **event.fields})

    guard = SourceGuard(limits, emit, "decoys")
    servers = [DecoyServer(DecoySpec.parse(s), emit, limits, guard=guard)
               for s in config["decoys"]]
    for server in servers:
        await server.start()
    print("READY", json.dumps([s.port for s in servers]), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def snapshot() -> str:
        return json.dumps({
            "memory_kb": _status(), "active": guard.active,
            "stats": [dataclasses.asdict(s.stats) for s in servers],
            "counts": dict(counts), "reports": reports,
        })

    while True:
        line = (await reader.readline()).decode().strip()
        if line == "STATS":
            print(snapshot(), flush=True)
        elif line in ("QUIT", ""):
            for server in servers:
                await server.close()
            guard.close()
            print(snapshot(), flush=True)
            return


if __name__ == "__main__":
    asyncio.run(main())
