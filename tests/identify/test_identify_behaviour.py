"""FTP, SMTP, IMAP and POP3 named by how they behave, not by the product name in their banner.

Real vsftpd, ProFTPD, postfix and dovecot with their greetings changed to text that names no product
and no protocol ("220 lab file drop"), on their usual ports and on unusual ones, each on its own
127.0.85.x address. Then the FTP checks must run on what identification named (issue #14):
anonymous login and upload confirmed on vsftpd and ProFTPD (an <Anonymous> block with a
writable incoming/), and passed on their hardened twins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import daemons as dm
import fixtures_breadth as fb
import fixtures_remote as fr
from mamori.checks.catalog import CATALOG_DIR, load_check
from mamori.checks.engine import run_checks
from mamori.identify.engine import identify_tcp
from mamori.model import CheckStatus, Confidence, Endpoint, PortState, Proto, Reason, Service

pytestmark = pytest.mark.daemon

FTP_DROP = ("127.0.85.1", 21)  # anonymous upload allowed, banner "lab file drop"
FTP_ODD = ("127.0.85.2", 4021)  # anonymous off, same banner, unusual port
PRO_ANON = ("127.0.85.5", 21)  # ProFTPD <Anonymous> with a writable incoming/
PRO_HARD = ("127.0.85.6", 2121)  # ProFTPD without an <Anonymous> block
SMTP = ("127.0.85.3", 25)
SMTP_ODD = ("127.0.85.3", 4025)
MAIL = "127.0.85.4"
IMAP, POP3 = (MAIL, 143), (MAIL, 110)
IMAP_ODD, POP3_ODD = (MAIL, 4143), (MAIL, 4110)


@pytest.fixture(scope="module")
def lab() -> Iterator[dm.Lab]:
    with fr.world_readable_dir() as base:
        starts = {
            "ftp-drop": lambda: fr.start_vsftpd(base / "f1", *FTP_DROP, anonymous=True,
                                                upload=True, banner="lab file drop"),
            "ftp-odd": lambda: fr.start_vsftpd(base / "f2", *FTP_ODD, anonymous=False,
                                               banner="lab file drop"),
            "proftpd-anon": lambda: fb.start_proftpd(base / "p1", *PRO_ANON, anonymous=True),
            "proftpd-hard": lambda: fb.start_proftpd(base / "p2", *PRO_HARD, anonymous=False),
            "smtp": lambda: dm.start_postfix(_mk(base / "s1"), *SMTP, SMTP_ODD[1],
                                             banner="$myhostname lab relay"),
            "dovecot": lambda: dm.start_dovecot(_mk(base / "d1"), MAIL, 143, 110,
                                                greeting="lab mail"),
            "dovecot-odd": lambda: dm.start_dovecot(_mk(base / "d2"), MAIL, 4143, 4110,
                                                    greeting="lab mail"),
        }
        with dm.running_lab(starts) as running:
            yield running


def _mk(path: dm.Path) -> dm.Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def identify(where: tuple[str, int]) -> Service:
    service, errors = asyncio.run(identify_tcp(*where, budget=15.0))
    assert service is not None, errors
    return service


@pytest.mark.parametrize("name,where,expected", [
    ("ftp-drop", FTP_DROP, "ftp"), ("ftp-odd", FTP_ODD, "ftp"),
    ("proftpd-anon", PRO_ANON, "ftp"), ("proftpd-hard", PRO_HARD, "ftp"),
    ("smtp", SMTP, "smtp"), ("smtp", SMTP_ODD, "smtp"),
    ("dovecot", IMAP, "imap"), ("dovecot", POP3, "pop3"),
    ("dovecot-odd", IMAP_ODD, "imap"), ("dovecot-odd", POP3_ODD, "pop3"),
], ids=lambda v: f"{v[0]}:{v[1]}" if isinstance(v, tuple) else str(v))
def test_unusual_greeting_is_named_by_behaviour(
    lab: dm.Lab, name: str, where: tuple[str, int], expected: str
) -> None:
    lab.need(name)
    service = identify(where)
    assert service.name == expected, service
    assert service.confidence == "confirmed", service
    assert service.product is None, service  # no product claimed from a banner that names none
    assert "lab" in service.banner, service


def _run(check_id: str, where: tuple[str, int], service: Service) -> tuple[str, ...]:
    spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
    ep = Endpoint(where[0], where[1], Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks([spec], ep, service))
    assert len(results) == 1, results
    result = results[0]
    return (result.status.value, result.confidence.value if result.confidence else "",
            result.summary)


@pytest.mark.parametrize("name,where,root", [
    ("ftp-drop", FTP_DROP, "ftp-root"), ("proftpd-anon", PRO_ANON, "anon-root")])
def test_ftp_checks_run_on_the_server_identification_named(
    lab: dm.Lab, name: str, where: tuple[str, int], root: str
) -> None:
    lab.need(name)
    service = identify(where)
    status, confidence, summary = _run("ftp-anonymous-login", where, service)
    assert (status, confidence) == (CheckStatus.FINDING.value, Confidence.CONFIRMED.value), summary
    status, confidence, summary = _run("ftp-anonymous-write", where, service)
    assert (status, confidence) == (CheckStatus.FINDING.value, Confidence.CONFIRMED.value), summary
    incoming = lab[name].workdir / root / "incoming"
    assert list(incoming.iterdir()) == []  # the proof upload was deleted


@pytest.mark.parametrize("name,where", [("ftp-odd", FTP_ODD), ("proftpd-hard", PRO_HARD)])
def test_ftp_checks_pass_on_the_hardened_twins(
    lab: dm.Lab, name: str, where: tuple[str, int]
) -> None:
    lab.need(name)
    service = identify(where)
    for check_id in ("ftp-anonymous-login", "ftp-anonymous-write"):
        status, _, summary = _run(check_id, where, service)
        assert status == CheckStatus.PASSED.value, summary


def _imap_without_names(conn: object) -> None:
    """An IMAP server whose greeting names neither product nor protocol (a faithful fake:
    dovecot always puts its CAPABILITY list in the greeting)."""
    conn.sendall(b"* OK lab mail\r\n")  # type: ignore[attr-defined]
    line = conn.recv(1024)  # type: ignore[attr-defined]
    tag = line.split(b" ", 1)[0]
    if b"CAPABILITY" in line.upper():
        conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag  # type: ignore[attr-defined]
                     + b" OK done\r\n")
    else:
        conn.sendall(tag + b" BAD unknown command\r\n")  # type: ignore[attr-defined]


def test_imap_greeting_without_names_is_confirmed_by_capability() -> None:
    from threaded_server import ThreadedServer

    with ThreadedServer("127.0.85.7", 4144, _imap_without_names):
        service = identify(("127.0.85.7", 4144))
    assert service.name == "imap" and service.confidence == "confirmed", service
    assert service.method == "imap-capability", service


def test_scan_names_the_odd_ftp_server_and_runs_both_ftp_checks(
    lab: dm.Lab, tmp_path: dm.Path
) -> None:
    """End to end, as the issue saw it: `mamori scan` of vsftpd greeting "220 lab file drop"."""
    import json

    from conftest import run_mamori

    lab.need("ftp-drop")
    proc = run_mamori("scan", FTP_DROP[0], "-p", f"T:{FTP_DROP[1]}", "--format", "json",
                      "--db", str(tmp_path / "m.db"))
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    text = json.dumps(doc)
    (host,) = doc["hosts"]
    (endpoint,) = [e for e in host["endpoints"] if e["port"] == FTP_DROP[1]]
    assert endpoint["service"]["name"] == "ftp", endpoint
    assert "replies matched no known protocol" not in text
    assert "ftp-anonymous-login" in text and "ftp-anonymous-write" in text
