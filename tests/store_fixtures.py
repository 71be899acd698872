"""Helpers for the store and report tests: sample results, a shared round trip, a real
PostgreSQL server, and a writer process to kill.

Run as a script (``python store_fixtures.py URL``) it is the writer: it stores results one
commit at a time and prints "committed N" after each, until it is killed.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __name__ == "__main__":  # run as the writer: make the src tree importable without install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mamori.model import (
    CheckResult,
    CheckStatus,
    CheckText,
    Confidence,
    Endpoint,
    ErrorKind,
    Evidence,
    Exposure,
    Layer,
    ListenerRecord,
    PortState,
    ProbeError,
    Proto,
    Reason,
    ScanRecord,
    ScanStatus,
    Service,
    Severity,
)
from mamori.model.audit import Scope, Verdict
from mamori.store import Store

PG_HOST = "127.0.30.1"
PG_PORT = 55432

SSH = Service(
    name="ssh",
    product="OpenSSH",
    version="9.2p1",
    method="null",
    banner="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
    extra={"proto": "2.0"},
)
HTTPS = Service(
    name="http",
    product="nginx",
    version="1.22.1",
    tls=True,
    confidence="likely",
    method="tls",
    # Remote-controlled text: unicode, a control character, rich markup look-alike.
    banner="HTTP/1.1 200 OK\r\nServer: nginx [bold]x[/bold] \x1b[31m 守り",
    extra={"alpn": "h2", "cn": "nas.local"},
)
DNS_GUESS = Service(name="domain", confidence="port", method="")


def sample_endpoints() -> list[Endpoint]:
    """Endpoints of 127.0.0.1 as a scan would report them (one without a service)."""
    return [
        Endpoint("127.0.0.1", 22, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, 0.25, SSH),
        Endpoint("127.0.0.1", 443, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, 0.5, HTTPS),
        Endpoint("127.0.0.1", 8080, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, None),
        Endpoint("127.0.0.1", 9, Proto.TCP, PortState.FILTERED, Reason.NO_RESPONSE, None),
        Endpoint(
            "127.0.0.1", 53, Proto.UDP, PortState.OPEN_FILTERED, Reason.NO_RESPONSE, None, DNS_GUESS
        ),
    ]


SAMPLE_ERRORS = [
    ProbeError(
        "127.0.0.1", 8080, Proto.TCP, ErrorKind.IDLE, "accepted, silent 5 s", "identify:null"
    ),
    ProbeError("::1", None, None, ErrorKind.UNREACHABLE, "network unreachable", "sweep"),
    ProbeError(None, None, None, ErrorKind.RESOLVE, "nas.invalid did not resolve", None),
]


REDIS_FIX = {
    "linux": "Set `requirepass` (or ACL users) in /etc/redis/redis.conf and bind 127.0.0.1.\n"
    "Then: systemctl restart redis-server",
    "macos": "Edit /opt/homebrew/etc/redis.conf: requirepass, bind 127.0.0.1.",
    "router": "Do not forward TCP 6379.",
}


def _catalog_spec(check_id: str):  # type: ignore[no-untyped-def]
    from mamori.audit.notes import default_notes
    from mamori.checks.catalog import default_catalog

    return {**default_catalog(), **default_notes()}.get(check_id)


def with_texts(c: CheckResult) -> CheckResult:
    """``c`` with the texts `mamori check`/`scan` store since 0006: English = the record's own
    title, summary and fixes (fixtures use their own wording) with the catalog's why; Japanese
    = the catalog's title, why and fixes and the catalog's Japanese summary template filled
    with the stored facts (a finding whose English summary came from that template; else the
    English summary, as a note's detail is; passed / not tested: the translated prefix)."""
    spec = _catalog_spec(c.check_id)
    if spec is None:
        return c
    from mamori.checks.engine import fill

    facts = dict(c.evidence.facts) if c.evidence is not None else {}
    ja_summary = c.summary
    if c.status is CheckStatus.PASSED:
        ja_summary = "合格: " + c.summary.removeprefix("passed: ")
    elif c.status is CheckStatus.NOT_TESTED:
        ja_summary = "未テスト: " + c.summary.removeprefix("not tested: ")
    else:
        templates = [spec.summary] if getattr(spec, "summary", None) is not None else []
        templates += [g.summary for g in getattr(spec, "grades", {}).values() if g.summary]
        for tpl in templates:
            if fill(tpl.en, facts) == c.summary:
                ja_summary = fill(tpl.ja, facts)
                break
    platforms = ("linux", "macos", "router")
    return replace(c, texts={
        "en": CheckText(c.title, c.summary, spec.why.en,
                        {p: c.remediation.get(p, "") for p in platforms}),
        "ja": CheckText(spec.title.ja, ja_summary, spec.why.ja,
                        {p: getattr(spec.remediation, p).ja for p in platforms}),
    })


# Check results as the engine would report them, in a deliberately scrambled order; get_scan
# must hand them back as SAMPLE_CHECKS_ORDERED.
GIT_EXPOSED = CheckResult(
    check_id="web-git-exposed",
    address="127.0.0.1",
    port=443,
    proto=Proto.TCP,
    status=CheckStatus.FINDING,
    severity=Severity.HIGH,
    layer=Layer.APPLICATION,
    confidence=Confidence.CONFIRMED,
    title="Git repository exposed over HTTP",
    # Remote-controlled text quoted into the summary: markup look-alike, escape, unicode.
    summary="GET /.git/HEAD answered 'ref: refs/heads/[bold]main[/bold]\x1b[2J 守り'",
    evidence=Evidence(
        test="GET /.git/HEAD and a random-path baseline; compare",
        request="GET /.git/HEAD HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        reply="HTTP/1.1 200 OK\r\n\r\nref: refs/heads/[red]main[/red]\x1b[31m 守り",
        facts={"status": "200", "baseline_status": "404"},
    ),
    remediation={
        "linux": "Deny /.git in the web server (nginx: location ~ /\\.git { deny all; }).",
        "macos": "Same rule in the web server's configuration.",
        "router": "Nothing to do on the router; fix the server.",
    },
    references=("CWE-538", "https://owasp.org/www-project-web-security-testing-guide/"),
)
REDIS_OPEN = CheckResult(
    check_id="redis-unauthenticated",
    address="127.0.0.1",
    port=8080,
    proto=Proto.TCP,
    status=CheckStatus.FINDING,
    severity=Severity.CRITICAL,
    layer=Layer.APPLICATION,
    confidence=Confidence.CONFIRMED,
    title="Redis answers without authentication",
    summary="INFO returned redis_version 7.0.15 without AUTH",
    evidence=Evidence(
        test="sent INFO server without AUTH",
        request="*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n",
        reply="$1234\r\n# Server\r\nredis_version:7.0.15\r\n",
        facts={"redis_version": "7.0.15"},
    ),
    remediation=REDIS_FIX,
    references=("CWE-306",),
)
SSH_ROOT = CheckResult(
    check_id="ssh-root-login",
    address="::1",
    port=22,
    proto=Proto.TCP,
    status=CheckStatus.FINDING,
    severity=Severity.LOW,
    layer=Layer.OS,
    confidence=Confidence.LIKELY,
    title="root may log in over SSH",
    summary="the server offered publickey,password to user root",
    evidence=Evidence(test="SSH userauth 'none' as root", facts={"methods": "publickey,password"}),
    remediation={"linux": "PermitRootLogin no in /etc/ssh/sshd_config"},  # linux only
    references=(),
)
SSH_PASSWORD = CheckResult(
    check_id="ssh-password-auth",
    address="127.0.0.1",
    port=22,
    proto=Proto.TCP,
    status=CheckStatus.PASSED,
    severity=Severity.MEDIUM,
    layer=Layer.APPLICATION,
    confidence=None,
    title="SSH offers password authentication",
    summary="passed: SSH userauth 'none' as a random user",
    evidence=Evidence(test="SSH userauth 'none' as a random user", reply="publickey"),
    remediation={"linux": "PasswordAuthentication no", "macos": "-", "router": "-"},
)
TLS_EXPIRED = CheckResult(
    check_id="tls-expired",
    address="127.0.0.1",
    port=443,
    proto=Proto.TCP,
    status=CheckStatus.PASSED,
    severity=Severity.MEDIUM,
    layer=Layer.NETWORK,
    confidence=None,
    title="TLS certificate expired",
    summary="passed: TLS handshake, certificate dates",
)
DNS_NOT_TESTED = CheckResult(
    check_id="dns-open-resolver",
    address="127.0.0.1",
    port=53,
    proto=Proto.UDP,
    status=CheckStatus.NOT_TESTED,
    severity=Severity.HIGH,
    layer=Layer.NETWORK,
    confidence=None,
    title="Open DNS resolver",
    summary="not tested: timeout: no answer within 30 s",
    remediation={"linux": "allow-recursion { localhost; };", "macos": "-", "router": "-"},
    references=("RFC 5358",),
)
GIT_EXPOSED, REDIS_OPEN, SSH_ROOT, SSH_PASSWORD, TLS_EXPIRED, DNS_NOT_TESTED = (
    with_texts(c)
    for c in (GIT_EXPOSED, REDIS_OPEN, SSH_ROOT, SSH_PASSWORD, TLS_EXPIRED, DNS_NOT_TESTED)
)
SAMPLE_CHECKS = [SSH_PASSWORD, DNS_NOT_TESTED, SSH_ROOT, GIT_EXPOSED, TLS_EXPIRED, REDIS_OPEN]
# Findings worst first, then not tested, then passed; ties in host order, then proto/port/id.
SAMPLE_CHECKS_ORDERED = [
    REDIS_OPEN,
    GIT_EXPOSED,
    SSH_ROOT,
    DNS_NOT_TESTED,
    SSH_PASSWORD,
    TLS_EXPIRED,
]


def store_sample_scan(store: Store, status: ScanStatus | None = ScanStatus.DONE) -> int:
    """Store a small but complete scan the way the scanner would; return its id."""
    sid = store.begin_scan(
        "scan", ["127.0.0.1", "::1", "nas.invalid"], {"ports": "1-1024", "timeout": 2.5}
    )
    store.add_host(sid, "127.0.0.1", "localhost")
    store.add_host(sid, "::1", None)
    eps = sample_endpoints()
    store.add_endpoint(sid, eps[0])
    store.add_endpoints(sid, eps[1:])
    # An IPv6 endpoint, first stored without service, identified later.
    store.add_endpoint(sid, Endpoint("::1", 22, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, 0.1))
    store.set_service(sid, "::1", Proto.TCP, 22, SSH)
    store.set_not_shown(sid, "127.0.0.1", {"tcp": {"closed": 1019}, "udp": {"closed": 1023}})
    store.set_not_shown(sid, "::1", {"tcp": {"closed": 1023}})
    for err in SAMPLE_ERRORS:
        store.add_error(sid, err)
    for check in SAMPLE_CHECKS:
        store.add_check_result(sid, check)
    if status is not None:
        store.finish_scan(sid, status)
    return sid


def exercise_roundtrip(url: str) -> None:
    """Write a scan through Store at ``url``, read it back, assert every field survived."""
    before = datetime.now(UTC) - timedelta(seconds=1)
    store = Store.open(url)
    try:
        sid = store_sample_scan(store, status=None)
        # Upserts: a second report of the same port replaces state/reason/rtt, not duplicates.
        store.add_endpoint(
            sid, Endpoint("127.0.0.1", 9, Proto.TCP, PortState.CLOSED, Reason.CONN_REFUSED, 0.05)
        )
        store.add_host(sid, "::1", "ip6-localhost")  # a later name fills in the blank
        # Upsert of a check result: the later result for the same endpoint and check wins.
        store.add_check_result(sid, replace(REDIS_OPEN, status=CheckStatus.PASSED))
        store.add_check_result(sid, REDIS_OPEN)
        store.add_host(sid, "::1", None)  # and None does not erase it
        running = store.get_scan(sid)
        assert running is not None
        assert running.status is ScanStatus.RUNNING
        assert running.finished_at is None
        store.finish_scan(sid, ScanStatus.DONE)
        rec = store.get_scan(sid)
        assert rec is not None
        assert_sample_record(rec, before)
        assert store.get_scan(sid + 1000) is None

        summaries = store.list_scans()
        assert [s.id for s in summaries] == [sid]
        assert summaries[0].open_ports == 4  # 22, 443, 8080 on v4; 22 on v6
        assert summaries[0].error_count == len(SAMPLE_ERRORS)
        assert summaries[0].status is ScanStatus.DONE
        assert summaries[0].targets == ("127.0.0.1", "::1", "nas.invalid")
    finally:
        store.close()

    # A second open sees the same data, and does not mark a finished scan interrupted.
    again = Store.open(url)
    try:
        rec2 = again.get_scan(sid)
        assert rec2 == rec
    finally:
        again.close()


def nul_check_roundtrip(url: str) -> None:
    """A NUL in remote-controlled check text is stored (escaped as \\x00), never lost: a raw
    NUL would make PostgreSQL refuse the whole row."""
    nul = replace(
        GIT_EXPOSED,
        title="t\x00",
        summary="reply had a NUL: a\x00b",
        evidence=Evidence(
            test="x\x00", request="r\x00", reply="\x00\x00", facts={"k\x00": "v\x00"}
        ),
        remediation={"linux": "l\x00"},
        references=("ref\x00",),
    )
    with Store.open(url) as store:
        sid = store.begin_scan("scan", ["127.0.0.1"], {})
        store.add_check_result(sid, nul)
        rec = store.get_scan(sid)
    assert rec is not None
    (got,) = rec.checks
    assert got.title == "t\\x00" and got.summary == "reply had a NUL: a\\x00b"
    assert got.evidence == Evidence(
        test="x\\x00", request="r\\x00", reply="\\x00\\x00", facts={"k\\x00": "v\\x00"}
    )
    assert dict(got.remediation) == {"linux": "l\\x00"}
    assert got.references == ("ref\\x00",)


def assert_sample_record(rec: ScanRecord, not_before: datetime) -> None:
    """Check a record written by exercise_roundtrip field by field."""
    assert rec.kind == "scan"
    assert rec.status is ScanStatus.DONE
    assert rec.targets == ("127.0.0.1", "::1", "nas.invalid")
    assert dict(rec.options) == {"ports": "1-1024", "timeout": 2.5}
    assert rec.started_at.tzinfo is not None and rec.started_at.utcoffset() == timedelta(0)
    assert rec.finished_at is not None and rec.finished_at.utcoffset() == timedelta(0)
    assert not_before <= rec.started_at <= rec.finished_at <= datetime.now(UTC)
    assert rec.mamori_version

    assert [h.address for h in rec.hosts] == ["127.0.0.1", "::1"]
    v4, v6 = rec.hosts
    assert v4.hostname == "localhost"
    assert v6.hostname == "ip6-localhost"
    assert {k: dict(v) for k, v in v4.not_shown.items()} == {
        "tcp": {"closed": 1019},
        "udp": {"closed": 1023},
    }
    expected = {ep.key: ep for ep in sample_endpoints()}
    expected[("127.0.0.1", "tcp", 9)] = Endpoint(
        "127.0.0.1", 9, Proto.TCP, PortState.CLOSED, Reason.CONN_REFUSED, 0.05
    )
    # Sorted by (proto, port): tcp before udp.
    assert [ep.key for ep in v4.endpoints] == [
        ("127.0.0.1", "tcp", 9),
        ("127.0.0.1", "tcp", 22),
        ("127.0.0.1", "tcp", 443),
        ("127.0.0.1", "tcp", 8080),
        ("127.0.0.1", "udp", 53),
    ]
    for ep in v4.endpoints:
        want = expected[ep.key]
        assert (ep.state, ep.reason, ep.rtt_ms) == (want.state, want.reason, want.rtt_ms)
        if want.service is None:
            assert ep.service is None
        else:
            assert ep.service is not None
            assert ep.service == want.service or (
                # extra comes back as a plain dict; compare field by field
                _service_fields(ep.service) == _service_fields(want.service)
            )
    assert len(v6.endpoints) == 1 and v6.endpoints[0].service is not None
    assert _service_fields(v6.endpoints[0].service) == _service_fields(SSH)
    assert list(rec.errors) == SAMPLE_ERRORS
    assert list(rec.checks) == SAMPLE_CHECKS_ORDERED
    assert [c.check_id for c in rec.findings] == [
        "redis-unauthenticated",
        "web-git-exposed",
        "ssh-root-login",
    ]


def _service_fields(svc: Service) -> tuple[object, ...]:
    return (
        svc.name,
        svc.product,
        svc.version,
        svc.tls,
        svc.confidence,
        svc.method,
        svc.banner,
        dict(svc.extra),
    )


# -- the inside view (scans of kind "check") ---------------------------------------------------

SSH_ALL6 = ListenerRecord(
    Proto.TCP, "::", 22, Scope.ALL, pid=700, process="sshd", user="root", exe="/usr/sbin/sshd",
    firewall=Verdict.ALLOWED, firewall_backend="nftables",
    firewall_reason="accepted by rule in chain inet filter input",
    firewall_rule="tcp dport 22 accept", service="ssh", product="OpenSSH", probe_address="::1",
)  # fmt: skip
REDIS_ALL = ListenerRecord(
    Proto.TCP, "0.0.0.0", 6379, Scope.ALL, pid=812, process="redis-server", user="redis",
    exe="/usr/bin/redis-server", firewall=Verdict.ALLOWED, firewall_backend="nftables",
    firewall_reason="chain inet filter input: policy accept", service="redis", product="Redis",
    probe_address="127.0.0.1",
)  # fmt: skip
MDNS_NOFW = ListenerRecord(
    Proto.UDP, "fe80::1%eth0", 5353, Scope.INTERFACE, pid=510, process="avahi-daemon",
    user="avahi", exe="/usr/sbin/avahi-daemon", firewall=Verdict.NO_FIREWALL,
    firewall_backend="none", firewall_reason="no inbound rules loaded",
    not_probed="bound to a non-loopback address only; probe it with --probe-bound",
)  # fmt: skip
DNS_UNSURE = ListenerRecord(
    Proto.UDP, "192.0.2.2", 53, Scope.INTERFACE,  # not root: no process seen
    firewall=Verdict.UNDETERMINED, firewall_backend="iptables",
    firewall_reason="undetermined: jump to chain f2b-x with an unsupported match (-m recent)",
    not_probed="bound to a non-loopback address only; probe it with --probe-bound",
)  # fmt: skip
SMB_BLOCKED = ListenerRecord(
    Proto.TCP, "0.0.0.0", 445, Scope.ALL, pid=900, process="smbd", user="root",
    exe="/usr/sbin/smbd", firewall=Verdict.BLOCKED, firewall_backend="nftables",
    firewall_reason="dropped by rule in chain inet filter input",
    firewall_rule="tcp dport { 139, 445 } drop", service="smb", probe_address="127.0.0.1",
)  # fmt: skip
PG_LOOPBACK = ListenerRecord(
    Proto.TCP, "127.0.0.1", 5432, Scope.LOOPBACK, pid=1200, process="postgres",
    user="postgres", exe="/usr/lib/postgresql/15/bin/postgres", probe_address="127.0.0.1",
)  # fmt: skip
# Local text is hostile too: any user can name a process, and the product came off the wire.
HOSTILE_LOOPBACK = ListenerRecord(
    Proto.TCP, "127.0.0.1", 8080, Scope.LOOPBACK, pid=4242, process="evil\x1b[31m[bold]x",
    user="nobody", exe="/tmp/\x1b]0;pwned\x07", service="http",
    product="nginx [bold]x[/bold]\x1b[2J 守り", probe_address="127.0.0.1",
)  # fmt: skip
# Most exposed first: reachable and let in (all interfaces before one interface), undetermined,
# blocked, then loopback-only; ties by proto, port, address.
SAMPLE_LISTENERS_ORDERED = [
    SSH_ALL6,
    REDIS_ALL,
    MDNS_NOFW,
    DNS_UNSURE,
    SMB_BLOCKED,
    PG_LOOPBACK,
    HOSTILE_LOOPBACK,
]

# Findings as `mamori check` grades them: a probe result on a listener (address = where the
# probe went), and inside checks (address "localhost", port 0).
REDIS_INSIDE = replace(
    REDIS_OPEN,
    port=6379,
    exposure=Exposure("0.0.0.0", 6379, Scope.ALL, Verdict.ALLOWED, Severity.CRITICAL),
)
SMB_GUEST = CheckResult(
    check_id="sharing-smb-guest",
    address="localhost",
    port=0,
    proto=Proto.TCP,
    status=CheckStatus.FINDING,
    severity=Severity.HIGH,
    layer=Layer.OS,
    confidence=Confidence.CONFIRMED,
    title="Samba lets guests in without a password",
    summary="[public] guest ok = yes in /etc/samba/smb.conf",
    evidence=Evidence(test="read testparm -s", reply="[public] guest ok = yes"),
    remediation={
        "linux": "In /etc/samba/smb.conf set `map to guest = never`;\n"
        "then `sudo systemctl restart smbd`.",
        "macos": "Run `sudo sysadminctl -smbGuestAccess off`.",
        "router": "Never forward TCP 445.",
    },
    references=("CWE-284",),
)
EXPOSED_REDIS = CheckResult(
    check_id="exposed-listener",
    address="localhost",
    port=0,
    proto=Proto.TCP,
    status=CheckStatus.FINDING,
    severity=Severity.MEDIUM,
    layer=Layer.NETWORK,
    confidence=Confidence.CONFIRMED,
    title="A listener is reachable from the network",
    summary="tcp/6379 on 0.0.0.0 (redis-server, pid 812) is reachable from the network: "
    "chain inet filter input: policy accept",
    evidence=Evidence(test="read firewall", reply="chain inet filter input: policy accept"),
    remediation={"linux": "Bind to 127.0.0.1 or drop the port in the firewall.", "macos": "-"},
)
NFS_UNSURE = CheckResult(
    check_id="sharing-nfs-exports",
    address="localhost",
    port=0,
    proto=Proto.TCP,
    status=CheckStatus.NOT_TESTED,
    severity=Severity.HIGH,
    layer=Layer.OS,
    confidence=None,
    title="NFS exports to everyone",
    summary="not tested: /etc/exports: permission denied",
)
RPCBIND_OK = CheckResult(
    check_id="sharing-rpcbind",
    address="localhost",
    port=0,
    proto=Proto.TCP,
    status=CheckStatus.PASSED,
    severity=Severity.LOW,
    layer=Layer.NETWORK,
    confidence=None,
    title="rpcbind is running and reachable from the network",
    summary="passed: rpcbind is not running",
)
SMB_GUEST, EXPOSED_REDIS, NFS_UNSURE, RPCBIND_OK = (
    with_texts(c) for c in (SMB_GUEST, EXPOSED_REDIS, NFS_UNSURE, RPCBIND_OK)
)
SAMPLE_INSIDE_CHECKS = [RPCBIND_OK, EXPOSED_REDIS, NFS_UNSURE, SMB_GUEST, REDIS_INSIDE]


def store_check_scan(store: Store, status: ScanStatus | None = ScanStatus.DONE) -> int:
    """Store a `mamori check` run the way the job would (listeners in a scrambled order, one
    first stored before its service was known); return its id."""
    sid = store.begin_scan("check", ["localhost"], {"probe_bound": False, "exclude_ports": "2024"})
    store.add_host(sid, "127.0.0.1", None)
    store.add_endpoint(
        sid, Endpoint("127.0.0.1", 6379, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, 0.1)
    )
    store.add_error(
        sid,
        ProbeError(
            "127.0.0.1", 8080, Proto.TCP, ErrorKind.IDLE, "accepted, silent 5 s", "identify"
        ),
    )
    store.add_listener(sid, replace(REDIS_ALL, service=None, product=None))
    for rec in reversed(SAMPLE_LISTENERS_ORDERED):
        store.add_listener(sid, rec)  # REDIS_ALL again: replaces the first, not a duplicate
    for check in SAMPLE_INSIDE_CHECKS:
        store.add_check_result(sid, check)
    if status is not None:
        store.finish_scan(sid, status)
    return sid


def listener_roundtrip(url: str) -> None:
    """Write a check scan through Store at ``url``; assert every listener field survives,
    sorted most exposed first, NUL stored escaped, and another scan's listeners stay apart."""
    with Store.open(url) as store:
        sid = store_check_scan(store)
        other = store.begin_scan("check", ["localhost"], {})
        store.add_listener(other, replace(PG_LOOPBACK, process="post\x00gres", exe=None))
        rec = store.get_scan(sid)
        rec_other = store.get_scan(other)
        plain = store.begin_scan("scan", ["127.0.0.1"], {})
        rec_plain = store.get_scan(plain)
    assert rec is not None and rec_other is not None and rec_plain is not None
    assert rec.kind == "check"
    assert list(rec.listeners) == SAMPLE_LISTENERS_ORDERED
    got = {r.key: r for r in rec.listeners}
    assert got[DNS_UNSURE.key].pid is None and got[DNS_UNSURE.key].process is None
    assert got[SSH_ALL6.key].firewall is Verdict.ALLOWED
    assert got[SSH_ALL6.key].scope is Scope.ALL
    assert got[PG_LOOPBACK.key].firewall is None
    assert rec_other.listeners == (replace(PG_LOOPBACK, process="post\\x00gres", exe=None),)
    assert rec_plain.listeners == ()
    with Store.open(url) as again:  # a second open reads the same
        assert again.get_scan(sid) == rec


# -- PostgreSQL ------------------------------------------------------------------------------


def _port_busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@contextmanager
def running_postgres(
    host: str = PG_HOST, port: int = PG_PORT, max_connections: int = 20
) -> Iterator[str]:
    """A throw-away PostgreSQL on ``host``:``port`` (default 127.0.30.1:55432) for the
    ``with`` block (``daemons.start_postgres_store``); yields a psycopg URL without db name.

    In a test, a server that is not installed or does not come up skips the test with the
    reason; RuntimeError when the port is already taken (another test server running?).
    """
    import daemons as dm

    if _port_busy(host, port):
        raise RuntimeError(f"{host}:{port} is already in use; another test server running?")
    with dm.running(dm.start_postgres_store, host, port, max_connections=max_connections):
        yield f"postgresql+psycopg://mamori@{host}:{port}"


def create_pg_database(
    base_url: str, name: str, host: str = PG_HOST, port: int = PG_PORT
) -> str:
    """Create database ``name`` on the test server; return its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(
        host=host, port=port, user="mamori", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # test-chosen name, not user input
    return f"{base_url}/{name}"


# -- the writer to kill -------------------------------------------------------------------------


def writer_command(url: str) -> list[str]:
    """The argv that runs this file as a writer process against ``url``."""
    return [sys.executable, str(Path(__file__).resolve()), url]


def _write_forever(url: str) -> None:
    store = Store.open(url)
    sid = store.begin_scan("scan", ["127.0.0.1"], {"ports": "1-65535"})
    store.add_host(sid, "127.0.0.1", "localhost")
    print(f"scan {sid}", flush=True)
    for port in range(1, 65536):
        svc = SSH if port % 3 == 0 else None
        store.add_endpoint(
            sid, Endpoint("127.0.0.1", port, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, 0.1, svc)
        )
        if port % 10 == 0:
            store.add_error(
                sid,
                ProbeError("127.0.0.1", port, Proto.TCP, ErrorKind.TIMEOUT, "slow", "identify"),
            )
        print(f"committed {port}", flush=True)
    # Never reached in the test: the parent kills us long before.
    store.finish_scan(sid, ScanStatus.DONE)


if __name__ == "__main__":
    _write_forever(sys.argv[1])
