"""Remote access and file transfer checks against real daemons, both ways.

mosquitto (anonymous on / password file), inetutils telnetd (and sshd as the "not telnet"
service on a telnet port), vsftpd (anonymous off / read-only / upload), rsync --daemon (open
module / auth users) and TigerVNC's Xvnc (SecurityTypes None / VncAuth). Each daemon runs
once per module on its own 127.0.63.x address. Plus the parsers on random and cut bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_remote as fr
from checks_helpers import assert_finding, assert_passed
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
from mamori.protocols import ftp, rsync, telnet, vnc

MQTT_OPEN, MQTT_AUTH = ("127.0.63.1", 18831), ("127.0.63.2", 18832)
TELNET, NOT_TELNET = ("127.0.63.3", 12323), ("127.0.63.4", 12324)
FTP_OFF, FTP_READ, FTP_WRITE = ("127.0.63.5", 12121), ("127.0.63.6", 12122), ("127.0.63.7", 12123)
RSYNC_OPEN, RSYNC_AUTH = ("127.0.63.8", 18731), ("127.0.63.9", 18732)
VNC_NONE, VNC_AUTH = ("127.0.63.10", 15931), ("127.0.63.11", 15932)
NOBODY = ("127.0.63.12", 12999)


def check(check_id: str, where: tuple[str, int], service: str) -> CheckResult:
    """Run one catalog check (loaded from its own file) against a live endpoint."""
    spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
    ep = Endpoint(where[0], where[1], Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks([spec], ep, Service(name=service)))
    assert len(results) == 1, results
    return results[0]


def confirmed(result: CheckResult) -> dict[str, str]:
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED, result.summary
    assert result.evidence is not None
    return dict(result.evidence.facts)


@pytest.fixture(scope="module")
def daemons() -> Iterator[dm.Lab]:
    """Every daemon of this module, started once; a test skips if its daemon could not run."""
    with fr.world_readable_dir() as base:
        starters = {
            "mqtt-open": lambda: fr.start_mosquitto(base / "mq1", *MQTT_OPEN, anonymous=True),
            "mqtt-auth": lambda: fr.start_mosquitto(base / "mq2", *MQTT_AUTH, anonymous=False),
            "telnetd": lambda: dm.start_telnetd(_mk(base / "tn"), *TELNET),
            "sshd": lambda: dm.start_sshd(_mk(base / "ssh"), *NOT_TELNET),
            "ftp-off": lambda: fr.start_vsftpd(base / "ftp1", *FTP_OFF, anonymous=False),
            "ftp-read": lambda: fr.start_vsftpd(base / "ftp2", *FTP_READ, anonymous=True),
            "ftp-write": lambda: fr.start_vsftpd(base / "ftp3", *FTP_WRITE, anonymous=True,
                                                 upload=True),
            "rsync-open": lambda: fr.start_rsyncd(base / "rs1", *RSYNC_OPEN, auth=False),
            "rsync-auth": lambda: fr.start_rsyncd(base / "rs2", *RSYNC_AUTH, auth=True),
            "vnc-none": lambda: fr.start_xvnc(base / "vnc1", *VNC_NONE, 631, password=False),
            "vnc-auth": lambda: fr.start_xvnc(base / "vnc2", *VNC_AUTH, 632, password=True),
        }
        with dm.running_lab(starters) as lab:
            yield lab


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_no_daemon_listens_on_a_wildcard_address(daemons: dm.Lab) -> None:
    pids = [d.proc.pid for d in daemons.values()]
    assert dm.listeners_on_wildcard(pids) == []


# --- MQTT --------------------------------------------------------------------------------------


def test_anonymous_mosquitto_is_a_confirmed_finding(daemons: dm.Lab) -> None:
    daemons.need("mqtt-open")
    facts = confirmed(check("mqtt-anonymous", MQTT_OPEN, "mqtt"))
    assert facts["return_code"] == "0" and facts["subscribe"] == "granted"
    assert facts["broker_version"].startswith("mosquitto version 2.")


def test_mosquitto_with_a_password_file_passes(daemons: dm.Lab) -> None:
    daemons.need("mqtt-auth")
    result = check("mqtt-anonymous", MQTT_AUTH, "mqtt")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["return_code"] == "5"
    assert result.evidence.facts["meaning"] == "not authorized"


# --- Telnet ------------------------------------------------------------------------------------


def test_inetutils_telnetd_is_a_confirmed_finding(daemons: dm.Lab) -> None:
    daemons.need("telnetd")
    result = check("telnet-exposed", TELNET, "telnet")
    facts = confirmed(result)
    assert facts["login_prompt"].endswith("login:")
    assert "DO TERMINAL-TYPE" in facts["options"]
    assert result.evidence is not None and "\\xff\\xfc\\x18" in (result.evidence.request or "")


def test_a_service_that_is_not_telnet_on_the_port_passes(daemons: dm.Lab) -> None:
    daemons.need("sshd")
    result = check("telnet-exposed", NOT_TELNET, "telnet")
    assert_passed(result)
    assert result.evidence is not None and "SSH-2.0" in (result.evidence.reply or "")


# --- FTP ---------------------------------------------------------------------------------------


def test_vsftpd_anonymous_login_is_a_confirmed_finding(daemons: dm.Lab) -> None:
    daemons.need("ftp-read")
    facts = confirmed(check("ftp-anonymous-login", FTP_READ, "ftp"))
    assert facts["pwd"] == "/"
    assert "README.txt" in facts["names"] and "incoming" in facts["names"]


def test_vsftpd_without_anonymous_login_passes(daemons: dm.Lab) -> None:
    daemons.need("ftp-off")
    result = check("ftp-anonymous-login", FTP_OFF, "ftp")
    assert_passed(result)
    assert result.evidence is not None and result.evidence.facts["login_reply"].startswith("530")


def test_vsftpd_anonymous_upload_is_a_confirmed_finding(daemons: dm.Lab) -> None:
    daemons.need("ftp-write")
    facts = confirmed(check("ftp-anonymous-write", FTP_WRITE, "ftp"))
    assert facts["directory"] == "incoming"
    assert facts["verified"].startswith("SIZE ")
    assert facts["cleanup"] == "deleted"
    incoming = daemons["ftp-write"].workdir / "ftp-root" / "incoming"
    assert list(incoming.iterdir()) == []  # the probe removed its file


def test_vsftpd_read_only_anonymous_passes_the_write_check(daemons: dm.Lab) -> None:
    daemons.need("ftp-read")
    result = check("ftp-anonymous-write", FTP_READ, "ftp")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.reply is not None and "550" in result.evidence.reply
    assert list((daemons["ftp-read"].workdir / "ftp-root" / "incoming").iterdir()) == []


def test_write_check_on_a_server_without_anonymous_login_passes(daemons: dm.Lab) -> None:
    daemons.need("ftp-off")
    assert_passed(check("ftp-anonymous-write", FTP_OFF, "ftp"))


# --- rsync -------------------------------------------------------------------------------------


def test_open_rsync_module_is_a_confirmed_finding(daemons: dm.Lab) -> None:
    daemons.need("rsync-open")
    facts = confirmed(check("rsync-modules-readable", RSYNC_OPEN, "rsync"))
    assert facts["open_module"] == "backup"
    assert "notes.txt" in facts["files"] and "photos/" in facts["files"]
    assert "passwords.kdbx" in facts["files"]


def test_rsync_module_with_auth_users_passes(daemons: dm.Lab) -> None:
    daemons.need("rsync-auth")
    result = check("rsync-modules-readable", RSYNC_AUTH, "rsync")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["auth_required"] == "backup"


# --- VNC ---------------------------------------------------------------------------------------


def test_xvnc_with_security_none_is_a_confirmed_finding(daemons: dm.Lab) -> None:
    daemons.need("vnc-none")
    facts = confirmed(check("vnc-no-authentication", VNC_NONE, "vnc"))
    assert facts["desktop_name"].startswith("mamori-test-desktop")
    assert facts["geometry"] == "640x480"
    assert facts["security_types"] == "None"


def test_xvnc_with_vnc_auth_passes(daemons: dm.Lab) -> None:
    daemons.need("vnc-auth")
    result = check("vnc-no-authentication", VNC_AUTH, "vnc")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["security_types"] == "VNC Authentication"


# --- wrong peers are "not tested", never "passed" ----------------------------------------------


@pytest.mark.parametrize("check_id,service", [
    ("mqtt-anonymous", "mqtt"), ("rsync-modules-readable", "rsync"),
    ("vnc-no-authentication", "vnc"), ("ftp-anonymous-login", "ftp"),
    ("ftp-anonymous-write", "ftp"), ("telnet-exposed", "telnet"),
])
def test_nothing_listening_is_not_tested(check_id: str, service: str) -> None:
    result = check(check_id, NOBODY, service)
    assert result.status is CheckStatus.NOT_TESTED
    assert "refused" in result.summary


@pytest.mark.parametrize("check_id,service", [
    ("mqtt-anonymous", "mqtt"), ("rsync-modules-readable", "rsync"),
    ("vnc-no-authentication", "vnc"),
])
def test_another_protocol_on_the_port_is_not_tested(
    daemons: dm.Lab, check_id: str, service: str
) -> None:
    daemons.need("ftp-read")  # an FTP greeting is nobody's MQTT, rsync or RFB
    result = check(check_id, FTP_READ, service)
    assert result.status is CheckStatus.NOT_TESTED, result.summary


# --- parsers -----------------------------------------------------------------------------------

# What rsync 3.x sent after "@RSYNCD: OK" for "--server --sender -d . pub/" at protocol 29:
# checksum seed, one MSG_DATA frame holding ".", "hello.txt", "sub", the end marker and io_error.
RSYNC_FLIST = bytes.fromhex(
    "1cc9116b"
    "34000007"
    "19012e00100000db54096bed410000"
    "980968656c6c6f2e747874060000"
    "00a48100009803737562001000"
    "00ed4100000000000000"
)


def test_rsync_file_list_capture_parses() -> None:
    data, messages, whole = rsync.demultiplex(RSYNC_FLIST[4:])
    assert whole and messages == []
    parsed = rsync.parse_file_list(data)
    assert parsed is not None and parsed.complete
    assert [(e.name, e.is_dir) for e in parsed.entries] == [
        (".", True), ("hello.txt", False), ("sub", True)]
    assert parsed.entries[1].size == 6


def test_ftp_replies() -> None:
    multi = b"junk\r\n230-Welcome\r\n230-more\r\n230 Login successful.\r\n257 next"
    reply = ftp.parse_reply(multi)
    assert reply is not None and reply.code == 230 and len(reply.lines) == 3
    assert ftp.parse_reply(multi[: reply.size - 3]) is None
    assert ftp.parse_epsv(ftp.Reply(229, ("229 Entering Extended Passive Mode (|||40123|)",), 0)) \
        == 40123
    assert ftp.parse_pasv(ftp.Reply(227, ("227 Entering Passive Mode (10,0,0,1,156,64).",), 0)) \
        == 40000
    assert ftp.parse_pwd(ftp.Reply(257, ('257 "/a ""b""" is the current directory',), 0)) \
        == '/a "b"'
    assert ftp.parse_listing(b"drwxr-xr-x    2 0        0            40 Jan 01 12:00 incoming\r\n"
                             b"-rw-r--r--    1 0        0            21 Jan 01  2024 a b.txt\r\n") \
        == ["incoming", "a b.txt"]
    assert ftp.parse_listing(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(ValueError):
        ftp.command("STOR", "x\r\nDELE y")


def test_vnc_messages() -> None:
    assert vnc.parse_version(b"RFB 003.889\n") == (3, 889)
    assert vnc.client_version((3, 889)) == (3, 8)
    offer = vnc.parse_security(b"\x02\x01\x02", (3, 8))
    assert offer is not None and offer.types == (1, 2)
    refused = vnc.parse_security(b"\x00\x00\x00\x00\x05nope!", (3, 8))
    assert refused is not None and refused.types == () and refused.reason == "nope!"
    init = (b"\x01\x40\x00\xc8\x20\x18\x00\x01\x00\xff\x00\xff\x00\xff\x10\x08\x00\x00\x00\x00"
            b"\x00\x00\x00\x0bmamori-test")
    parsed = vnc.parse_server_init(init)
    assert parsed is not None and (parsed.width, parsed.height, parsed.name) == (
        320, 200, "mamori-test")
    assert vnc.parse_server_init(b"+OK\r\n250 OK\r\n230 OK\r\n$2\r\nOK\r\n") is None


def test_telnet_stream_split_and_refusal() -> None:
    chunk = telnet.split_stream(b"\xff\xfd\x18\xff\xfb\x01hi\xff\xff\xff\xfa\x18\x01\xff\xf0ok\xff")
    assert chunk.commands == (("DO", 24), ("WILL", 1))
    assert chunk.text == b"hi\xffok" and chunk.rest == b"\xff"
    assert telnet.refuse(chunk.commands) == b"\xff\xfc\x18\xff\xfd\x01"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    reply = ftp.parse_reply(data)
    if reply is not None:
        ftp.parse_pasv(reply), ftp.parse_epsv(reply), ftp.parse_pwd(reply), ftp.parse_size(reply)
    ftp.parse_listing(data)
    rsync.parse_greeting(data)
    rsync.parse_module_list(data)
    rsync.parse_module_reply(data)
    rsync.demultiplex(data)
    rsync.parse_file_list(data)
    for version in ((3, 3), (3, 7), (3, 8)):
        vnc.parse_security(data, version)
    vnc.parse_version(data)
    vnc.parse_server_init(data)
    vnc.parse_security_result(data)
    telnet.split_stream(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(RSYNC_FLIST)), st.binary(max_size=8))
def test_cut_and_spliced_captures_never_raise(cut: int, tail: bytes) -> None:
    body = RSYNC_FLIST[4:cut] + tail if cut > 4 else tail
    data, _messages, _whole = rsync.demultiplex(body)
    parsed = rsync.parse_file_list(data)
    assert parsed is None or len(parsed.entries) <= 3 + len(tail)
    rsync.parse_file_list(RSYNC_FLIST[12:cut] + tail)
    init = b"\x01\x40\x00\xc8\x20\x18\x00\x01\x00\xff\x00\xff\x00\xff\x10\x08" + b"\0" * 8
    vnc.parse_server_init(init[: cut % (len(init) + 1)] + tail)
