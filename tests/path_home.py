"""Run inside the router lab's "home" namespace (``ip netns exec HOME python3 tests/path_home.py
WORKDIR SPEC...``): start the real daemons through tests/daemons.py, print one JSON line
("ready" and their pids, or "unavailable" and why), and stop them all when stdin closes.

SPEC is NAME:KIND:HOST:PORT[:v6] with KIND sshd, redis or nginx (":v6": nginx also on [::]).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import daemons as dm


def main(workdir: Path, specs: list[str]) -> int:
    started: list[dm.Daemon] = []
    try:
        for spec in specs:
            name, kind, host, port, *extra = spec.split(":")
            where = workdir / name
            where.mkdir(parents=True, exist_ok=True)
            if kind == "sshd":
                started.append(dm.start_sshd(where, host, int(port)))
            elif kind == "redis":
                started.append(dm.start_redis(where, host, int(port)))
            elif kind == "nginx":
                started.append(dm.start_nginx(where, host, int(port), also_v6="v6" in extra))
            else:
                raise dm.DaemonUnavailable(f"unknown kind {kind}")
    except dm.DaemonUnavailable as exc:
        print(json.dumps({"unavailable": str(exc)}), flush=True)
        for d in reversed(started):
            d.stop()
        return 0
    print(json.dumps({"ready": {d.name + str(d.port): d.proc.pid for d in started}}), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    for d in reversed(started):
        d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
