"""Identification against the real Debian daemons, several on ports they never use.

All daemons start once for the module (in daemons, each on its own 127.0.20.x
address) and all endpoints are identified concurrently, as a scan would; each test then checks
one endpoint. A daemon that cannot start here skips its tests with the reason.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import daemons as dm
import fake_servers
from mamori.identify.engine import identify_tcp, identify_udp, udp_payload
from mamori.model import ProbeError, Service

pytestmark = pytest.mark.daemon


@dataclass(frozen=True)
class Case:
    daemon: str
    host: str
    port: int
    proto: str  # "tcp" or "udp"
    name: str
    product: str | None = None
    version: str | None = None  # regex
    tls: bool = False
    payload_port: int | None = None  # UDP: the port whose payload we send


CASES = [
    Case("sshd", "127.0.20.1", 2222, "tcp", "ssh", "OpenSSH", r"^9\.2p1 Debian-"),
    Case("vsftpd", "127.0.20.2", 2121, "tcp", "ftp", "vsFTPd", r"^3\.0\.\d+$"),
    Case("postfix", "127.0.20.3", 2525, "tcp", "smtp", "Postfix"),
    Case("postfix", "127.0.20.3", 2587, "tcp", "smtp", "Postfix"),
    Case("dovecot", "127.0.20.4", 1143, "tcp", "imap", "Dovecot"),
    Case("dovecot", "127.0.20.4", 1110, "tcp", "pop3", "Dovecot"),
    Case("redis", "127.0.20.5", 16379, "tcp", "redis", "Redis", r"^7\.\d+\.\d+$"),
    Case("memcached", "127.0.20.6", 11311, "tcp", "memcached", "memcached", r"^1\.6\.\d+$"),
    Case("memcached", "127.0.20.6", 11311, "udp", "memcached", "memcached", r"^1\.6\.\d+$",
         payload_port=11211),
    Case("nginx", "127.0.20.7", 8181, "tcp", "http", "nginx", r"^1\.22\.\d+$"),
    Case("nginx", "127.0.20.7", 4443, "tcp", "http", "nginx", r"^1\.22\.\d+$", tls=True),
    Case("unbound", "127.0.20.8", 5354, "tcp", "dns", "Unbound", r"^1\.\d+\.\d+$"),
    Case("unbound", "127.0.20.8", 5354, "udp", "dns", "Unbound", r"^1\.\d+\.\d+$",
         payload_port=53),
    Case("mosquitto", "127.0.20.9", 18830, "tcp", "mqtt", "Mosquitto", r"^2\.\d+\.\d+$"),
    Case("rsyncd", "127.0.20.10", 8730, "tcp", "rsync", "rsync"),
    Case("snmpd", "127.0.20.11", 1161, "udp", "snmp", "Net-SNMP", payload_port=161),
    Case("ntpd", "127.0.20.12", 123, "udp", "ntp", payload_port=123),
    Case("mariadb", "127.0.20.13", 13306, "tcp", "mysql", "MariaDB", r"^10\.11\.\d+$"),
    Case("postgres", "127.0.20.14", 15432, "tcp", "postgresql", "PostgreSQL"),
    Case("smbd", "127.0.20.15", 1445, "tcp", "smb", "Samba"),
    Case("telnetd", "127.0.20.16", 2323, "tcp", "telnet"),
]

STARTERS: dict[str, Callable[[Path], dm.Daemon]] = {
    "sshd": lambda w: dm.start_sshd(w, "127.0.20.1", 2222),
    "vsftpd": lambda w: dm.start_vsftpd(w, "127.0.20.2", 2121),
    "postfix": lambda w: dm.start_postfix(w, "127.0.20.3", 2525, 2587),
    "dovecot": lambda w: dm.start_dovecot(w, "127.0.20.4", 1143, 1110),
    "redis": lambda w: dm.start_redis(w, "127.0.20.5", 16379),
    "memcached": lambda w: dm.start_memcached(w, "127.0.20.6", 11311, udp=True),
    "nginx": lambda w: dm.start_nginx(w, "127.0.20.7", 8181, 4443),
    "unbound": lambda w: dm.start_unbound(w, "127.0.20.8", 5354),
    "mosquitto": lambda w: dm.start_mosquitto(w, "127.0.20.9", 18830),
    "rsyncd": lambda w: dm.start_rsyncd(w, "127.0.20.10", 8730),
    "snmpd": lambda w: dm.start_snmpd(w, "127.0.20.11", 1161),
    "ntpd": lambda w: dm.start_ntpd(w, "127.0.20.12"),
    "mariadb": lambda w: dm.start_mariadb(w, "127.0.20.13", 13306),
    "postgres": lambda w: dm.start_postgres(w, "127.0.20.14", 15432),
    "smbd": lambda w: dm.start_smbd(w, "127.0.20.15", 1445),
    "telnetd": lambda w: dm.start_telnetd(w, "127.0.20.16", 2323),
}


@dataclass
class Outcome:
    service: Service | None
    errors: list[ProbeError]
    seconds: float


@dataclass
class Lab:
    daemons: dict[str, dm.Daemon]
    failed: dict[str, str]
    wildcard: list[str]
    outcomes: dict[Case, Outcome]


async def _identify(case: Case) -> Outcome:
    t0 = time.monotonic()
    if case.proto == "udp":
        assert case.payload_port is not None
        reply = await fake_servers.udp_ask(case.host, case.port, udp_payload(case.payload_port))
        service = identify_udp(case.payload_port, reply)
        return Outcome(service, [], time.monotonic() - t0)
    service, errors = await identify_tcp(case.host, case.port)
    return Outcome(service, errors, time.monotonic() - t0)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    starts = {name: lambda name=name, start=start: start(tmp_path_factory.mktemp(name))
              for name, start in STARTERS.items()}
    with dm.running_lab(starts, errors=(dm.DaemonUnavailable, OSError)) as daemons:
        # Child processes too: ss reports the pid that owns the socket (workers, not masters).
        pids = [d.proc.pid for d in daemons.values()]
        pids += [int(p) for d in daemons.values() for p in _children(d.proc.pid)]
        wildcard = dm.listeners_on_wildcard(pids)
        live = [c for c in CASES if c.daemon in daemons]

        async def run_all() -> list[Outcome]:
            return await asyncio.gather(*(_identify(c) for c in live))

        outcomes = dict(zip(live, asyncio.run(run_all()), strict=True))
        yield Lab(dict(daemons), daemons.failed, wildcard, outcomes)


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def test_no_daemon_listens_on_wildcard(lab: Lab) -> None:
    assert lab.wildcard == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.daemon}-{c.proto}-{c.port}")
def test_daemon_is_named(lab: Lab, case: Case) -> None:
    if case.daemon in lab.failed:
        pytest.skip(f"{case.daemon} did not start: {lab.failed[case.daemon][:300]}")
    outcome = lab.outcomes[case]
    service = outcome.service
    assert service is not None, outcome.errors
    assert service.name == case.name, service
    assert service.confidence == "confirmed", service
    assert service.tls == case.tls
    if case.product is not None:
        assert service.product == case.product, service
    if case.version is not None:
        assert service.version is not None and re.search(case.version, service.version), service
    assert service.banner
    # Bounded: banner services answer at once, others well inside the default 15 s budget.
    assert outcome.seconds < 12, outcome


def test_banner_services_take_one_round_trip(lab: Lab) -> None:
    for case, outcome in lab.outcomes.items():
        if outcome.service is not None and outcome.service.method == "null":
            assert outcome.seconds < 1.5, (case, outcome.seconds)


def test_redis_requiring_a_password(tmp_path: Path) -> None:
    with dm.running(dm.start_redis, tmp_path, "127.0.20.17", 6390, password="s3cret-" + "x" * 8):
        service, _ = asyncio.run(identify_tcp("127.0.20.17", 6390))
    assert service is not None and service.name == "redis" and service.product == "Redis"
    # Locked: no INFO, so no version; the error replies still prove RESP.
    assert service.version is None
    assert service.confidence == "confirmed"
