"""The nmap-format renderers on records a hostile server could shape: the XML stays valid
against nmap's DTD and reads back through mamori's own importer; the grepable format keeps one
host per line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from mamori.importers import parse_nmap_xml
from mamori.model import (
    Endpoint,
    HostResult,
    PortState,
    Proto,
    Reason,
    ScanRecord,
    ScanStatus,
    Service,
)
from mamori.report.nmap_grep import render_nmap_grepable
from mamori.report.nmap_xml import render_nmap_xml

NMAP_DTD = Path("/usr/share/nmap/nmap.dtd")
HOSTILE = 'Evil\x00"<srv>" & ]]> -- \x1b[31m\r\nHost: 127.0.0.9\tPorts: 1/open/tcp'


def _record(status: ScanStatus = ScanStatus.DONE) -> ScanRecord:
    svc = Service(name="http", product=HOSTILE, version="1.0/2,3", tls=True,
                  confidence="likely", method="http-get",
                  extra=MappingProxyType({"extrainfo": HOSTILE}))
    v6 = HostResult(
        address="::1", hostname="me.lab",
        endpoints=(
            Endpoint("::1", 8443, Proto.TCP, PortState.OPEN, Reason.SYN_ACK, service=svc),
            Endpoint("::1", 161, Proto.UDP, PortState.OPEN_FILTERED, Reason.NO_RESPONSE),
        ),
        not_shown=MappingProxyType({"tcp": {"closed": 998}, "udp": {"open|filtered": 3}}),
    )
    v4 = HostResult(address="127.0.94.20", hostname=None, endpoints=())
    return ScanRecord(
        id=7, kind="scan", status=status, started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        finished_at=datetime(2026, 1, 2, 3, 4, 9, tzinfo=UTC), targets=("::1", "127.0.94.20"),
        options={"ports": "8443", "udp": True, "tcp_port_count": 999, "udp_port_count": 4,
                 "probed": {"tcp": "1-999", "udp": "53,123,161,1900"}},
        hosts=(v6, v4), errors=(), mamori_version="0.1.0",
    )


@pytest.mark.parametrize("status", [ScanStatus.DONE, ScanStatus.FAILED])
def test_hostile_text_keeps_the_xml_valid_against_nmaps_dtd(status: ScanStatus) -> None:
    etree = pytest.importorskip("lxml.etree")
    if not NMAP_DTD.exists():
        pytest.skip("nmap's DTD is not installed: run scripts/install-test-deps")
    text = render_nmap_xml(_record(status))
    doc = etree.fromstring(text.encode(), etree.XMLParser(resolve_entities=False,
                                                          no_network=True))
    dtd = etree.DTD(str(NMAP_DTD))
    assert dtd.validate(doc), dtd.error_log.filter_from_errors()
    assert doc.find("runstats/finished").get("exit") == (
        "success" if status is ScanStatus.DONE else "error")
    assert [s.get("type") for s in doc.iterfind("scaninfo")] == ["connect", "udp"]


def test_the_xml_reads_back_through_mamori_import() -> None:
    run = parse_nmap_xml(render_nmap_xml(_record()).encode())
    assert run.targets == ("::1", "127.0.94.20") and not run.problems
    v6 = run.hosts[0]
    assert v6.hostname == "me.lab"
    assert v6.not_shown == {"tcp": {"closed": 998}, "udp": {"open|filtered": 3}}
    web, snmp = v6.endpoints
    assert (snmp.proto, snmp.port, snmp.state) == (Proto.UDP, 161, PortState.OPEN_FILTERED)
    assert web.service is not None and web.service.tls and web.service.name == "http"
    assert web.service.product is not None and web.service.product.startswith('Evil?"<srv>" &')
    assert {i["protocol"]: i["services"] for i in run.info["scaninfo"]} == {
        "tcp": "1-999", "udp": "53,123,161,1900"}


def test_the_grepable_format_keeps_one_line_per_host_record() -> None:
    lines = render_nmap_grepable(_record()).splitlines()
    assert lines[0].startswith("# mamori 0.1.0 scan initiated") and lines[-1].startswith("#")
    body = lines[1:-1]
    assert all(ln.startswith("Host: ") for ln in body), body
    (ports,) = [ln for ln in body if "Ports:" in ln]
    assert ports.startswith("Host: ::1 (me.lab)\tPorts: 8443/open/tcp//ssl|http//Evil")
    assert "1.0|2 3/" in ports and "161/open|filtered/udp/////" in ports
    assert "\tIgnored State" not in ports  # two states left out: nmap names none
    assert "Host: 127.0.94.20 ()\tStatus: Up" in body
