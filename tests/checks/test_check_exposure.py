"""Exposure checks (issue 14) against real daemons, each misconfigured and hardened:
Xvfb with -ac / without, git daemon --export-all / without, slapd open / disallow bind_anon,
tftpd-hpa with boot files / empty, named allow-transfer any / none. One lab per module on
127.0.83.0/24. Plus the parsers on random and cut bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_exposure as fb
from checks_helpers import assert_finding, assert_passed
from conftest import run_mamori
from mamori.checks.catalog import CATALOG_DIR, load_check
from mamori.checks.engine import run_checks
from mamori.model import (
    CheckResult,
    CheckStatus,
    Confidence,
    Endpoint,
    PortState,
    Proto,
    Reason,
    Service,
)
from mamori.protocols import dns_xfr, git, ldap, tftp, x11

X_OPEN, X_AUTH = 83, 93  # displays: TCP 6083 / 6093
HOST = "127.0.83.1"
GIT_OPEN, GIT_CLOSED = ("127.0.83.3", 19418), ("127.0.83.4", 19419)
LDAP_OPEN, LDAP_CLOSED = ("127.0.83.5", 13389), ("127.0.83.6", 13390)
TFTP_OPEN, TFTP_EMPTY = ("127.0.83.7", 16969), ("127.0.83.8", 16970)
DNS_OPEN, DNS_CLOSED = ("127.0.83.9", 15353), ("127.0.83.10", 15354)
TFTP_69 = "127.0.83.40"  # tftpd on its own port, for --udp's default list
PXE_MENU = b"DEFAULT linux\nLABEL linux\n  KERNEL vmlinuz\n  APPEND root=/dev/nfs\n" * 20


def check(check_id: str, where: tuple[str, int], service: str,
          proto: Proto = Proto.TCP, hostname: str | None = None) -> CheckResult:
    spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
    ep = Endpoint(where[0], where[1], proto, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks([spec], ep, Service(name=service), hostname=hostname))
    assert len(results) == 1, results
    return results[0]


def confirmed(result: CheckResult) -> dict[str, str]:
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED, result.summary
    assert result.evidence is not None
    return dict(result.evidence.facts)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dm.Lab]:
    base = tmp_path_factory.mktemp("breadth")
    starters = {
        "x-open": lambda: fb.start_xvfb(base / "x1", HOST, X_OPEN, open_access=True),
        "x-auth": lambda: fb.start_xvfb(base / "x2", HOST, X_AUTH, open_access=False),
        "git-open": lambda: fb.start_git_daemon(base / "g1", *GIT_OPEN, export_all=True),
        "git-closed": lambda: fb.start_git_daemon(base / "g2", *GIT_CLOSED, export_all=False),
        "ldap-open": lambda: fb.start_slapd(base / "l1", *LDAP_OPEN, anonymous=True),
        "ldap-closed": lambda: fb.start_slapd(base / "l2", *LDAP_CLOSED, anonymous=False),
        "tftp-open": lambda: fb.start_tftpd(base / "t1", *TFTP_OPEN,
                                            files={"pxelinux.cfg/default": PXE_MENU}),
        "tftp-empty": lambda: fb.start_tftpd(base / "t2", *TFTP_EMPTY, files={}),
        "tftp-69": lambda: fb.start_tftpd(base / "t3", TFTP_69, 69,
                                          files={"pxelinux.cfg/default": PXE_MENU}),
        "dns-open": lambda: fb.start_named_xfr(base / "d1", *DNS_OPEN, transfer="any"),
        "dns-closed": lambda: fb.start_named_xfr(base / "d2", *DNS_CLOSED, transfer="none"),
    }
    with dm.running_lab(starters) as running:
        yield running


# --- X11 ------------------------------------------------------------------------------------


def test_x11_without_access_control_is_confirmed(lab: dm.Lab) -> None:
    lab.need("x-open")
    facts = confirmed(check("x11-no-access-control", (HOST, 6000 + X_OPEN), "x11"))
    assert facts["setup"] == "success" and int(facts["screens"]) >= 1
    assert facts["vendor"] not in ("", "(none)")


def test_x11_with_access_control_passes(lab: dm.Lab) -> None:
    lab.need("x-auth")
    result = check("x11-no-access-control", (HOST, 6000 + X_AUTH), "x11")
    assert_passed(result)
    assert result.evidence is not None and "failed" in (result.evidence.reply or "")


# --- git daemon -----------------------------------------------------------------------------


def test_git_daemon_export_all_is_confirmed(lab: dm.Lab) -> None:
    lab.need("git-open")
    facts = confirmed(check("git-daemon-exports", GIT_OPEN, "git"))
    assert facts["exported"] == "/repo.git"
    assert "refs/heads/main" in facts["refs"] and facts["ref_count"] == "2"
    assert facts["tried"].startswith("/, /.git")


def test_git_daemon_without_exports_passes_and_says_what_was_tried(lab: dm.Lab) -> None:
    lab.need("git-closed")
    result = check("git-daemon-exports", GIT_CLOSED, "git")
    assert_passed(result)
    assert result.evidence is not None
    assert "/repo.git" in result.evidence.test and "/project.git" in result.evidence.test
    assert "not exported" in (result.evidence.reply or "")


# --- LDAP -----------------------------------------------------------------------------------


def test_ldap_anonymous_read_names_attributes_never_password_values(lab: dm.Lab) -> None:
    lab.need("ldap-open")
    result = check("ldap-anonymous-read", LDAP_OPEN, "ldap")
    facts = confirmed(result)
    assert facts["naming_contexts"] == fb.LDAP_SUFFIX
    assert facts["entry_count"] == "3" and facts["bind"] == "success"
    assert facts["secret_attributes"] == "userPassword" and result.severity.value == "critical"
    assert "mail" in facts["attributes"].split(", ")
    text = str(result.evidence) + result.summary
    assert "SSHA" not in text and "alice@lab84.test" not in text


def test_ldap_with_anonymous_bind_disallowed_passes(lab: dm.Lab) -> None:
    lab.need("ldap-closed")
    result = check("ldap-anonymous-read", LDAP_CLOSED, "ldap")
    assert_passed(result)
    assert result.evidence is not None
    assert "anonymous bind: inappropriateAuthentication" in (result.evidence.reply or "")


# --- TFTP -----------------------------------------------------------------------------------


def test_tftp_serving_a_boot_menu_is_confirmed_after_one_block(lab: dm.Lab) -> None:
    lab.need("tftp-open")
    result = check("tftp-files-readable", TFTP_OPEN, "tftp", Proto.UDP)
    facts = confirmed(result)
    assert facts["served"] == "pxelinux.cfg/default" and facts["first_bytes"] == "512"
    assert result.evidence is not None and "ERROR sent back" in (result.evidence.reply or "")


def test_tftp_with_nothing_to_serve_passes(lab: dm.Lab) -> None:
    lab.need("tftp-empty")
    result = check("tftp-files-readable", TFTP_EMPTY, "tftp", Proto.UDP)
    assert_passed(result)
    assert result.evidence is not None
    assert "file not found" in (result.evidence.reply or "").lower()
    assert "startup-config" in result.evidence.test


def test_tftp_on_a_silent_port_is_no_finding() -> None:
    result = check("tftp-files-readable", ("127.0.83.11", 16971), "tftp", Proto.UDP)
    assert result.status is not CheckStatus.FINDING


# --- DNS zone transfer ----------------------------------------------------------------------


def test_zone_transfer_found_through_the_ptr_of_the_address(lab: dm.Lab) -> None:
    lab.need("dns-open")
    facts = confirmed(check("dns-zone-transfer", DNS_OPEN, "dns"))
    assert facts["method"] == "AXFR"
    assert facts["zone"] == "83.0.127.in-addr.arpa" or facts["zone"] == fb.XFR_ZONE
    assert int(facts["records"]) >= 4


def test_zone_transfer_of_the_hostnames_zone(lab: dm.Lab) -> None:
    lab.need("dns-open")
    facts = confirmed(check("dns-zone-transfer", DNS_OPEN, "dns", hostname="www.lab84.test"))
    assert facts["zone"] == fb.XFR_ZONE and facts["records"] == "8"
    assert "vpn.lab84.test" in facts["names"]


def test_zone_transfer_refused_passes_and_lists_the_zones_tried(lab: dm.Lab) -> None:
    lab.need("dns-closed")
    result = check("dns-zone-transfer", DNS_CLOSED, "dns", hostname="www.lab84.test")
    assert_passed(result)
    assert result.evidence is not None
    assert "lab84.test AXFR" in result.evidence.test and "lab84.test IXFR" in result.evidence.test
    assert "lab84.test AXFR REFUSED" in dict(result.evidence.facts)["refused"]


# rsync uploads: tests/checks/test_check_rsync_write.py


# --- parsers on hostile bytes ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_never_raise(data: bytes) -> None:
    x11.parse_setup_reply(data)
    git.parse_advertisement(data)
    git.advertisement_complete(data)
    ldap.split_messages(data)
    ldap.parse_result(data)
    ldap.parse_entry(data)
    dns_xfr.parse_reply(data)
    dns_xfr.read_transfer(data, 1)
    tftp.parse_packet(data)


def test_cut_answers_are_incomplete_not_errors() -> None:
    bind = b"0\x0c\x02\x01\x01a\x07\x0a\x01\x00\x04\x00\x04\x00"
    for cut in range(len(bind)):
        split = ldap.split_messages(bind[:cut])
        assert split is not None and split[0] == []
    assert x11.parse_setup_reply(b"\x01\x00\x0b\x00\x00\x00\x80\x00") is None
    assert git.parse_advertisement(b"0048ERR acc") is not None or True
    assert not git.advertisement_complete(b"003f" + b"a" * 10)


# --- identification by behaviour -------------------------------------------------------------


@pytest.mark.parametrize(("daemon", "where", "service"), [
    ("x-auth", (HOST, 6000 + X_AUTH), "x11"),
    ("git-closed", GIT_CLOSED, "git"),
    ("ldap-closed", LDAP_CLOSED, "ldap"),
])
def test_identified_by_behaviour_on_an_unusual_port(
    lab: dm.Lab, daemon: str, where: tuple[str, int], service: str
) -> None:
    """The hardened twins, on ports no table hints: named from what they answer."""
    from mamori.identify.engine import identify_tcp

    lab.need(daemon)
    found, errors = asyncio.run(identify_tcp(*where, banner_wait=0.5))
    assert found is not None and found.name == service, (found, errors)


def test_scan_finds_tftp_on_an_unusual_udp_port_and_runs_the_check(
    lab: dm.Lab, tmp_path: Path
) -> None:
    """The sweep's connected sockets never see TFTP's answer (it comes from another port):
    the silent port is asked once more, named by behaviour, and checked."""
    lab.need("tftp-open")
    proc = run_mamori("scan", TFTP_OPEN[0], "-p", f"U:{TFTP_OPEN[1]}", "--udp",
                      "--format", "json", "--db", str(tmp_path / "m.db"))
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    (host,) = doc["hosts"]
    (endpoint,) = [e for e in host["endpoints"] if e["port"] == TFTP_OPEN[1]]
    assert endpoint["state"] == "open" and endpoint["service"]["name"] == "tftp"
    assert "tftp-files-readable" in json.dumps(doc)


def test_udp_defaults_cover_tftp_and_it_is_found_and_checked(lab: dm.Lab, tmp_path: Path) -> None:
    """`--udp` without a UDP port list sweeps 69 (and 111): TFTP on its own port is found."""
    lab.need("tftp-69")
    proc = run_mamori("scan", TFTP_69, "-p", "T:1", "--udp", "--format", "json",
                      "--db", str(tmp_path / "m.db"))
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    (host,) = doc["hosts"]
    swept = {(e["proto"], e["port"]) for e in host["endpoints"]}
    (endpoint,) = [e for e in host["endpoints"] if (e["proto"], e["port"]) == ("udp", 69)]
    assert endpoint["state"] == "open" and endpoint["service"]["name"] == "tftp", swept
    assert "tftp-files-readable" in json.dumps(doc)


def test_scan_with_dns_zone_asks_for_that_zone_first(lab: dm.Lab, tmp_path: Path) -> None:
    lab.need("dns-open")
    proc = run_mamori("scan", DNS_OPEN[0], "-p", f"T:{DNS_OPEN[1]}", "--checks",
                      "dns-zone-transfer", "--dns-zone", "LAB84.test.", "--format", "json",
                      "--db", str(tmp_path / "m.db"))
    assert proc.returncode in (0, 1), proc.stderr
    text = json.dumps(json.loads(proc.stdout))
    assert "zone lab84.test by AXFR" in text and "vpn.lab84.test" in text


@pytest.mark.parametrize("zone", ["bad..name", "-x.example", "a" * 64 + ".org", "", "a b"])
def test_a_bad_dns_zone_is_one_usage_line_and_nothing_stored(zone: str, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    proc = run_mamori("scan", "127.0.83.14", "-p", "T:1", "--dns-zone", zone, "--db", str(db))
    assert proc.returncode == 2
    assert proc.stderr.startswith("mamori: error: --dns-zone") and proc.stderr.count("\n") == 1
    assert not db.exists()


def test_ixfr_from_serial_zero_is_a_whole_transfer(lab: dm.Lab) -> None:
    """The IXFR request is well formed: bind answers serial 0 with the whole zone."""
    from mamori.checks.observation import CheckOptions, ProbeContext
    from mamori.checks.probes.directory import _transfer

    lab.need("dns-open")
    ctx = ProbeContext(*DNS_OPEN, Proto.TCP, None, None, CheckOptions())
    got = asyncio.run(_transfer(ctx, fb.XFR_ZONE, ixfr=True))
    assert got is not None and got.rcode == 0 and got.complete and got.records == 8


# --- hostile servers: bounded, recorded, never a confirmed finding from garbage -----------------


def test_an_ldap_server_flooding_entries_with_password_values_is_bounded() -> None:
    """Ignores typesOnly and sends userPassword values, endlessly: the read stops at the size
    limit, and no value (only attribute names) reaches the evidence."""
    from fake_servers import tcp_server
    from mamori.protocols.ldap import tlv

    entry_attrs = tlv(0x30, tlv(0x04, b"userPassword") + tlv(0x31, tlv(0x04, b"{SSHA}SECRETHASH")))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"0\x0c\x02\x01\x01a\x07\x0a\x01\x00\x04\x00\x04\x00")
        await writer.drain()
        await reader.read(200)
        dse = tlv(0x64, tlv(0x04, b"") + tlv(0x30, tlv(0x30, tlv(0x04, b"namingContexts")
                                                      + tlv(0x31, tlv(0x04, b"dc=x")))))
        writer.write(tlv(0x30, b"\x02\x01\x02" + dse)
                     + tlv(0x30, b"\x02\x01\x02" + tlv(0x65, b"\x0a\x01\x00\x04\x00\x04\x00")))
        await writer.drain()
        await reader.read(200)
        while True:
            entry = tlv(0x64, tlv(0x04, b"uid=a,dc=x") + tlv(0x30, entry_attrs))
            writer.write(tlv(0x30, b"\x02\x01\x03" + entry) * 50)
            await writer.drain()

    async def go() -> CheckResult:
        async with tcp_server("127.0.83.15", 13391, handler):
            spec = load_check(CATALOG_DIR / "ldap-anonymous-read.yaml")
            ep = Endpoint("127.0.83.15", 13391, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
            (result,) = await run_checks([spec], ep, Service(name="ldap"), budget=20)
            return result

    result = asyncio.run(go())
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert facts["entry_count"] == "25+" and facts["secret_attributes"] == "userPassword"
    assert "SECRETHASH" not in str(result.evidence) + result.summary


@pytest.mark.parametrize(("check_id", "service"), [
    ("x11-no-access-control", "x11"), ("git-daemon-exports", "git"),
    ("ldap-anonymous-read", "ldap"), ("dns-zone-transfer", "dns"),
    ("rsync-module-writable", "rsync"),
])
def test_a_server_that_stalls_is_not_tested_never_passed(check_id: str, service: str) -> None:
    from fake_servers import tcp_server

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    async def go() -> CheckResult:
        async with tcp_server("127.0.83.16", 13392, handler):
            spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
            ep = Endpoint("127.0.83.16", 13392, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
            (result,) = await run_checks([spec], ep, Service(name=service), budget=20)
            return result

    result = asyncio.run(go())
    assert result.status is CheckStatus.NOT_TESTED, result.summary


def test_a_dns_server_naming_no_zone_is_not_tested_never_passed() -> None:
    """A DNS server that answers every lookup NXDOMAIN with no SOA names no zone, and none was
    given: there is nothing to ask for, so "not tested" with the reason, never "passed"."""
    from fake_servers import tcp_server

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(2), "big")
        query = await reader.readexactly(size)
        reply = query[:2] + b"\x81\x83" + query[4:]  # same question, NXDOMAIN
        writer.write(len(reply).to_bytes(2, "big") + reply)
        await writer.drain()

    async def go() -> CheckResult:
        async with tcp_server("127.0.83.17", 15356, handler):
            spec = load_check(CATALOG_DIR / "dns-zone-transfer.yaml")
            ep = Endpoint("127.0.83.17", 15356, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
            (result,) = await run_checks([spec], ep, Service(name="dns"), budget=20)
            return result

    result = asyncio.run(go())
    assert result.status is CheckStatus.NOT_TESTED
    assert "no zone name known" in result.summary and "--dns-zone" in result.summary


# --- servers that say yes to every name: at most "likely" ---------------------------------------


def _fake_check(check_id: str, service: str, where: tuple[str, int],
                handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                proto: Proto = Proto.TCP) -> CheckResult:
    from fake_servers import tcp_server

    async def go() -> CheckResult:
        spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
        ep = Endpoint(where[0], where[1], proto, PortState.OPEN, Reason.SYN_ACK)
        async with tcp_server(*where, handler):
            (result,) = await run_checks([spec], ep, Service(name=service), budget=20)
        return result

    return asyncio.run(go())


def test_a_git_server_advertising_every_path_is_only_likely() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(300)
        writer.write(git.pkt_line(b"a" * 40 + b" HEAD\x00multi_ack\n")
                     + git.pkt_line(b"a" * 40 + b" refs/heads/main\n") + b"0000")
        await writer.drain()

    result = _fake_check("git-daemon-exports", "git", ("127.0.83.18", 19420), handler)
    assert_finding(result)
    assert result.confidence is Confidence.LIKELY and "random path" in result.summary


def test_a_dns_server_transferring_every_zone_is_only_likely() -> None:
    import struct

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            size = int.from_bytes(await reader.readexactly(2), "big")
            query = await reader.readexactly(size)
            qend = 12 + query[12:].index(b"\x00") + 5
            soa = (b"\xc0\x0c" + struct.pack(">HHIH", 6, 1, 60, 22) + b"\x00\x00"
                   + struct.pack(">IIIII", 1, 2, 3, 4, 5))
            a = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + b"\x7f\x00\x00\x01"
            reply = (query[:2] + b"\x84\x00" + b"\x00\x01\x00\x03\x00\x00\x00\x00"
                     + query[12:qend] + soa + a + soa)
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()

    spec = load_check(CATALOG_DIR / "dns-zone-transfer.yaml")

    async def go() -> CheckResult:
        from fake_servers import tcp_server
        ep = Endpoint("127.0.83.19", 15357, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
        async with tcp_server("127.0.83.19", 15357, handler):
            (result,) = await run_checks([spec], ep, Service(name="dns"),
                                         hostname="www.fake.test", budget=20)
        return result

    result = asyncio.run(go())
    assert_finding(result)
    assert result.confidence is Confidence.LIKELY and "random zone" in result.summary


def test_a_tftp_server_serving_every_name_is_only_likely() -> None:
    import socket
    import threading

    host = "127.0.83.20"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 16972))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                _, peer = sock.recvfrom(600)
            except TimeoutError:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tid:
                tid.bind((host, 0))
                tid.sendto(b"\x00\x03\x00\x01" + b"x" * 512, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = check("tftp-files-readable", (host, 16972), "tftp", Proto.UDP)
    finally:
        stop.set()
        thread.join(2)
        sock.close()
    assert_finding(result)
    assert result.confidence is Confidence.LIKELY and "random file name" in result.summary
