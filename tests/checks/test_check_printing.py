"""ipp-printer-shared and cups-admin-remote against a real cupsd (issue #14): one with a shared
printer and ``Allow all`` on / and /admin, its hardened twin sharing nothing and refusing
every location; each on its own 127.0.85.x address. IPP is named by behaviour (an
application/ipp answer to an IPP request), and no job is ever submitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import daemons as dm
import fixtures_breadth as fb
import fixtures_remote as fr
from checks_helpers import assert_finding, assert_passed
from mamori.checks.catalog import CATALOG_DIR, load_check
from mamori.checks.engine import run_checks
from mamori.identify.engine import identify_tcp
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
from mamori.protocols import ipp

pytestmark = pytest.mark.daemon

OPEN, HARD = "127.0.85.50", "127.0.85.51"


@pytest.fixture(scope="module")
def lab() -> Iterator[dm.Lab]:
    with fr.world_readable_dir() as base, dm.running_lab({
        "open": lambda: fb.start_cupsd(base / "open", OPEN, open_to_all=True),
        "hard": lambda: fb.start_cupsd(base / "hard", HARD, open_to_all=False),
    }) as running:
        yield running


def check(check_id: str, host: str, service: Service) -> CheckResult:
    spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
    ep = Endpoint(host, 631, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks([spec], ep, service))
    assert len(results) == 1, results
    return results[0]


def test_cupsd_is_identified_as_ipp_by_behaviour(lab: dm.Lab) -> None:
    lab.need("open")
    service, errors = asyncio.run(identify_tcp(OPEN, 631, budget=15))
    assert service is not None, errors
    assert service.name == "ipp" and service.confidence == "confirmed", service


def test_shared_printer_is_a_confirmed_finding(lab: dm.Lab) -> None:
    lab.need("open")
    result = check("ipp-printer-shared", OPEN, Service(name="ipp"))
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert "labprinter (Local Raw Printer, shared=true)" in facts["printers"], facts
    assert facts["shared_count"] == "1"
    assert "CUPS-Get-Printers" in result.evidence.reply
    assert list((lab["open"].workdir / "spool").glob("d*")) == []  # no job was submitted


def test_remote_admin_page_is_a_confirmed_finding(lab: dm.Lab) -> None:
    lab.need("open")
    result = check("cups-admin-remote", OPEN, Service(name="ipp"))
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert facts["admin_status"] == "200"
    # Over loopback CUPS lets anyone in: the page's own setting is the proof.
    assert facts["remote_admin"] == "on" and facts["admin"] == "open-by-settings", facts
    assert "GET /admin" in result.evidence.request
    assert 'NAME="REMOTE_ADMIN"' in result.evidence.reply


def test_hardened_cupsd_sharing_nothing_passes(lab: dm.Lab) -> None:
    lab.need("hard")
    result = check("ipp-printer-shared", HARD, Service(name="ipp"))
    assert_passed(result)
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    # CUPS lists even unshared printers to a loopback client: the flag is what counts.
    assert facts["shared_count"] == "0" and "shared=false" in facts["printers"], facts


def test_hardened_cupsd_without_remote_admin_passes(lab: dm.Lab) -> None:
    lab.need("hard")
    result = check("cups-admin-remote", HARD, Service(name="ipp"))
    assert_passed(result)
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert facts["remote_admin"] == "off" and facts["admin"] == "local-only", facts


def test_a_web_server_that_is_not_ipp_is_not_tested(lab: dm.Lab) -> None:
    # An HTTP server answering 200 text/html to everything: no IPP body, so not tested.
    import threaded_server

    def web(conn: object) -> None:
        conn.recv(4096)  # type: ignore[attr-defined]
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n"  # type: ignore[attr-defined]
                     b"\r\nok")

    with threaded_server.ThreadedServer("127.0.85.52", 631, web):
        for check_id in ("ipp-printer-shared", "cups-admin-remote"):
            spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
            ep = Endpoint("127.0.85.52", 631, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
            result = asyncio.run(run_checks([spec], ep, Service(name="ipp")))[0]
            assert result.status is CheckStatus.NOT_TESTED, result.summary


def test_ipp_round_trip_and_truncation() -> None:
    body = ipp.build_request(ipp.OP_CUPS_GET_PRINTERS, 7, limit=5)
    assert body[:8] == b"\x02\x00\x40\x02\x00\x00\x00\x07"
    # A response: status ok, one printer group with a name, a boolean and a second value.
    resp = (b"\x02\x00\x00\x00\x00\x00\x00\x07\x01"
            b"\x47\x00\x12attributes-charset\x00\x05utf-8"
            b"\x04\x42\x00\x0cprinter-name\x00\x02p1"
            b"\x22\x00\x11printer-is-shared\x00\x01\x01"
            b"\x44\x00\x0fprinter-x-kinds\x00\x01a\x44\x00\x00\x00\x01b\x03")
    parsed = ipp.parse_response(resp)
    assert parsed is not None and parsed.ok
    assert parsed.printers == ({"printer-name": ("p1",), "printer-is-shared": ("true",),
                                "printer-x-kinds": ("a", "b")},)
    for cut in range(len(resp) - 1):
        assert ipp.parse_response(resp[:cut]) is None


def test_admin_settings_are_read_from_the_page() -> None:
    page = (b'<INPUT TYPE="CHECKBOX" NAME="SHARE_PRINTERS" ID="SHARE_PRINTERS" >'
            b'<input type=checkbox name=REMOTE_ADMIN checked>')
    assert ipp.admin_settings(page) == {"SHARE_PRINTERS": False, "REMOTE_ADMIN": True}
    assert ipp.admin_settings(b"<html>ok</html>") == {}
    assert ipp.http_host("127.0.85.50", 631) == "localhost"
    assert ipp.http_host("192.0.2.7", 631) == "192.0.2.7"


def test_a_broken_admin_page_is_not_tested() -> None:
    # An IPP server whose /admin fails (HTTP 500, as a CUPS whose admin.cgi cannot reach
    # cupsd answers): nothing is known about remote administration.
    import threaded_server

    answer = ipp_answer()

    def server(conn: object) -> None:
        request = conn.recv(65536)  # type: ignore[attr-defined]
        if request.startswith(b"POST"):
            conn.sendall(answer)  # type: ignore[attr-defined]
        else:
            conn.sendall(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")  # type: ignore[attr-defined]

    with threaded_server.ThreadedServer("127.0.85.53", 631, server):
        spec = load_check(CATALOG_DIR / "cups-admin-remote.yaml")
        ep = Endpoint("127.0.85.53", 631, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
        result = asyncio.run(run_checks([spec], ep, Service(name="ipp")))[0]
    assert result.status is CheckStatus.NOT_TESTED, result.summary
    assert "500" in result.summary


def ipp_answer() -> bytes:
    body = (b"\x02\x00\x00\x00\x00\x00\x00\x01\x01"
            b"\x47\x00\x12attributes-charset\x00\x05utf-8\x03")
    return (b"HTTP/1.0 200 OK\r\nContent-Type: application/ipp\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


# --- from another machine: a client that is not on loopback ---------------------------------

REMOTE_CHECK = """
import asyncio, json, sys
from mamori.checks.catalog import CATALOG_DIR, load_check
from mamori.checks.engine import run_checks
from mamori.model import Endpoint, PortState, Proto, Reason, Service
out = {}
for check_id in ("ipp-printer-shared", "cups-admin-remote"):
    spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
    ep = Endpoint(sys.argv[1], 631, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    (r,) = asyncio.run(run_checks([spec], ep, Service(name="ipp")))
    out[check_id] = {"status": r.status.value, "summary": r.summary,
                     "facts": dict(r.evidence.facts) if r.evidence else {}}
print(json.dumps(out))
"""


@pytest.mark.root
@pytest.mark.parametrize("open_to_all", [True, False], ids=["open", "hardened"])
def test_cupsd_seen_from_another_machine(open_to_all: bool) -> None:
    """cupsd in its own namespace on 10.85.0.2, asked from 10.85.0.1 over a veth pair: the
    policy applies (Allow all: printers listed, /admin 200; hardened: HTTP 403 to both)."""
    import json
    import subprocess
    import sys

    from netns import veth_pair

    tag = "o" if open_to_all else "h"
    near, far = f"mamori-p14-c{tag}", f"mamori-p14-s{tag}"
    procs: list[subprocess.Popen[str]] = []
    with fr.world_readable_dir() as base, veth_pair(
            near, far, (f"mp14c{tag}", f"mp14s{tag}"),
            (["10.85.0.1/30"], ["10.85.0.2/30"]), procs), dm.running(
            fb.start_cupsd, base / "cups", "10.85.0.2", open_to_all=open_to_all,
            netns=(far, near)):
        proc = subprocess.run(["ip", "netns", "exec", near, sys.executable, "-c",
                               REMOTE_CHECK, "10.85.0.2"],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    shared, admin = out["ipp-printer-shared"], out["cups-admin-remote"]
    if open_to_all:
        assert shared["status"] == "finding", shared
        assert "labprinter" in shared["facts"]["printers"]
        assert admin["status"] == "finding", admin
        assert admin["facts"]["admin"] == "open" and admin["facts"]["admin_status"] == "200"
    else:
        assert shared["status"] == "passed", shared
        assert shared["facts"]["access"] == "refused: HTTP 403", shared
        assert admin["status"] == "passed", admin
        assert admin["facts"]["admin"] == "forbidden", admin
