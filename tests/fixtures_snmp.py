"""snmpd (Net-SNMP) for the SNMP access checks, from its own config, pid file and persistent
directory, on its own loopback address in 127.0.84.0/24.

``access`` is the snmpd.conf access lines: read-write with the default "private", read-only
with only a vendor default other than "public", or a random community (hardened). sysLocation
is fixed by the config (so SNMP cannot write it: notWritable), sysContact is not (writable
through a read-write community).
"""

from __future__ import annotations

from pathlib import Path

from daemons import Daemon, _need, _spawn, _started, wait_udp


def start_snmpd_access(workdir: Path, host: str, port: int, access: str) -> Daemon:
    snmpd = _need("/usr/sbin/snmpd")
    work = workdir / f"snmpd-{host}"
    work.mkdir(parents=True, exist_ok=True)
    pid, cfg, persist = work / "snmpd.pid", work / "snmpd.conf", work / "persist"
    persist.mkdir(exist_ok=True)
    cfg.write_text(access + "sysLocation mamori lab shelf\n")
    proc, log = _spawn(
        [snmpd, "-f", "-Lo", "-I", "-smux", "-C", "-c", str(cfg), "-p", str(pid),
         f"udp:{host}:{port}"],
        work, "snmpd.log", env={"SNMP_PERSISTENT_DIR": str(persist), "MIBS": ""},
    )
    d = Daemon("snmpd", host, port, proc, work, pid, log)
    return _started(d, lambda: wait_udp(host, port, proc=proc))
