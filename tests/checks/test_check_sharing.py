"""File-sharing checks: smb-guest-shares and smb1-enabled against real smbd (open, default,
hardened), nfs-exports-visible against a faithful portmapper + mountd, afp-exposed against a
faithful netatalk-style DSI server and against real nginx (not AFP). Plus the parsers."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_sharing as fs
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.model import CheckStatus, Confidence, Severity
from mamori.protocols import dcerpc, ntlmssp, smb1, smb2, sunrpc

SMB_OPEN, SMB_DEFAULT, SMB_HARD = "127.0.64.1", "127.0.64.2", "127.0.64.3"
SMB_NO_ENUM = "127.0.64.4"
RPC_HOST, AFP_HOST, WEB_HOST = "127.0.64.10", "127.0.64.11", "127.0.64.12"
SMB_PORT = 14450


def _samba(tmp_path_factory: pytest.TempPathFactory, host: str, profile: str) -> Iterator[
        dm.Daemon]:
    workdir = tmp_path_factory.mktemp(f"smb-{profile}")
    yield from dm.daemon_fixture(lambda: fs.start_samba(workdir, host, SMB_PORT, profile))


@pytest.fixture(scope="module")
def smb_open(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dm.Daemon]:
    yield from _samba(tmp_path_factory, SMB_OPEN, "open")


@pytest.fixture(scope="module")
def smb_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dm.Daemon]:
    yield from _samba(tmp_path_factory, SMB_DEFAULT, "default")


@pytest.fixture(scope="module")
def smb_hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dm.Daemon]:
    yield from _samba(tmp_path_factory, SMB_HARD, "hardened")


# --- SMB: real smbd ------------------------------------------------------------------------------


@pytest.mark.daemon
def test_samba_binds_only_its_own_address(smb_open: dm.Daemon, smb_hardened: dm.Daemon) -> None:
    assert dm.listeners_on_wildcard([smb_open.proc.pid, smb_hardened.proc.pid]) == []


@pytest.mark.daemon
def test_guest_share_is_listed_and_opened(smb_open: dm.Daemon) -> None:
    result = run_check("smb-guest-shares", SMB_OPEN, SMB_PORT, "smb")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.severity is Severity.HIGH  # grade open-share
    assert result.evidence is not None
    facts = result.evidence.facts
    assert "public (disk)" in facts["shares"] and "backup (disk)" in facts["shares"]
    assert facts["open_shares"] == "public"  # backup takes no guests
    assert facts["listed_by"] == "anonymous"
    assert "NetrShareEnum" in (result.evidence.request or "")
    assert "public" in result.summary


@pytest.mark.daemon
def test_default_samba_lists_share_names_to_anonymous(smb_default: dm.Daemon) -> None:
    result = run_check("smb-guest-shares", SMB_DEFAULT, SMB_PORT, "smb")
    assert_finding(result)
    assert result.severity is Severity.MEDIUM  # grade listing: names only, no share opens
    assert result.evidence is not None
    assert result.evidence.facts["shares"] == "backup (disk)"
    assert "open_shares" not in result.evidence.facts


@pytest.mark.daemon
def test_hardened_samba_passes_share_listing(smb_hardened: dm.Daemon) -> None:
    result = run_check("smb-guest-shares", SMB_HARD, SMB_PORT, "smb")
    assert_passed(result)
    assert result.evidence is not None
    assert "access denied" in (result.evidence.reply or "")
    assert "logon failure" in (result.evidence.reply or "")


@pytest.mark.daemon
def test_guest_logon_without_enumeration_passes(tmp_path: Path) -> None:
    with dm.running(fs.start_samba, tmp_path, SMB_NO_ENUM, SMB_PORT, "no-enum"):
        result = run_check("smb-guest-shares", SMB_NO_ENUM, SMB_PORT, "smb")
    assert_passed(result)
    assert result.evidence is not None
    reply = result.evidence.reply or ""
    # Both ways in were tried: the made-up user got a guest session, then was refused the list.
    assert "guest logon: granted as guest session" in reply
    assert "WERROR 0x00000005" in reply


@pytest.mark.daemon
def test_smb1_accepted_is_a_finding(smb_open: dm.Daemon) -> None:
    result = run_check("smb1-enabled", SMB_OPEN, SMB_PORT, "smb")
    assert_finding(result)
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["smb1_dialect"] == "NT LM 0.12"
    assert facts["security"] == "user"
    assert facts["domain"] == "MAMORI"
    assert "NT LM 0.12" in (result.evidence.request or "")


@pytest.mark.daemon
@pytest.mark.parametrize("host", [SMB_DEFAULT, SMB_HARD])
def test_smb2_only_samba_passes_smb1(host: str, smb_default: dm.Daemon,
                                     smb_hardened: dm.Daemon) -> None:
    assert_passed(run_check("smb1-enabled", host, SMB_PORT, "smb"))


def test_smb_checks_not_tested_when_nothing_listens() -> None:
    for check in ("smb-guest-shares", "smb1-enabled"):
        result = run_check(check, "127.0.64.99", SMB_PORT, "smb")
        assert result.status is CheckStatus.NOT_TESTED, result.summary
        assert "refused" in result.summary


# --- NFS: faithful portmapper + mountd ------------------------------------------------------

_WORLD = [sunrpc.Export("/srv/photos", ()), sunrpc.Export("/home", ("192.168.1.0/24",))]


def test_world_export_is_a_high_finding() -> None:
    with fs.RpcService(RPC_HOST, 111, 20048, _WORLD) as rpc:
        result = run_check("nfs-exports-visible", RPC_HOST, 111, "rpcbind")
    assert_finding(result)
    assert result.severity is Severity.HIGH  # grade everyone
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["exports"] == "/srv/photos (everyone); /home (192.168.1.0/24)"
    assert facts["export_count"] == "2" and facts["everyone"] == "yes"
    assert facts["mountd_port"] == "20048"
    assert (sunrpc.PORTMAP, 2, sunrpc.PMAPPROC_GETPORT) in rpc.calls
    assert (sunrpc.MOUNT, 3, sunrpc.MOUNTPROC_EXPORT) in rpc.calls


def test_restricted_export_is_a_medium_finding() -> None:
    exports = [sunrpc.Export("/srv/backup", ("192.168.1.10", "192.168.1.11"))]
    with fs.RpcService(RPC_HOST, 111, 20048, exports):
        result = run_check("nfs-exports-visible", RPC_HOST, 111, "rpcbind")
    assert_finding(result)
    assert result.severity is Severity.MEDIUM
    assert result.evidence is not None
    assert result.evidence.facts["everyone"] == "no"


def test_no_mountd_registered_passes() -> None:
    # An NFSv4-only server: rpcbind answers, but no mountd is registered with it.
    with fs.RpcService(RPC_HOST, 111, 20048, _WORLD, register_mountd=False) as rpc:
        result = run_check("nfs-exports-visible", RPC_HOST, 111, "rpcbind")
    assert_passed(result)
    assert (sunrpc.MOUNT, 3, sunrpc.MOUNTPROC_EXPORT) not in rpc.calls


def test_empty_export_list_passes() -> None:
    with fs.RpcService(RPC_HOST, 111, 20048, []):
        assert_passed(run_check("nfs-exports-visible", RPC_HOST, 111, "rpcbind"))


def test_not_rpc_is_not_tested(tmp_path: Path) -> None:
    with dm.running(dm.start_nginx, tmp_path, WEB_HOST, 18111):
        result = run_check("nfs-exports-visible", WEB_HOST, 18111, "rpcbind")
    assert result.status is CheckStatus.NOT_TESTED, result.summary


# --- AFP: faithful DSI server, and real nginx on the port ------------------------------------


def test_afp_with_guest_is_a_medium_finding() -> None:
    with fs.afp_server(AFP_HOST, 10548, "homenas", ["DHX2", "DHCAST128", "No User Authent"]):
        result = run_check("afp-exposed", AFP_HOST, 10548, "afp")
    assert_finding(result)
    assert result.severity is Severity.MEDIUM
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["server_name"] == "homenas"
    assert facts["afp_versions"].startswith("AFP2.2, AFPX03, AFP3.1")
    assert facts["guest"] == "yes"
    assert "guest" in result.summary


def test_afp_without_guest_is_a_low_finding() -> None:
    with fs.afp_server(AFP_HOST, 10549, "studio", ["DHX2"]):
        result = run_check("afp-exposed", AFP_HOST, 10549, "afp")
    assert_finding(result)
    assert result.severity is Severity.LOW
    assert result.evidence is not None
    assert result.evidence.facts["uams"] == "DHX2"
    assert result.evidence.facts["guest"] == "no"


def test_web_server_on_the_afp_port_passes(tmp_path: Path) -> None:
    with dm.running(dm.start_nginx, tmp_path, WEB_HOST, 10550):
        result = run_check("afp-exposed", WEB_HOST, 10550, "afp")
    assert_passed(result)


# --- parsers: real shapes round-trip, random and truncated bytes never raise -----------------


def _share_stub(names: list[tuple[str, int]]) -> bytes:
    def wstr(s: str) -> bytes:
        raw = (s + "\0").encode("utf-16-le")
        out = struct.pack("<III", len(raw) // 2, 0, len(raw) // 2) + raw
        return out + b"\0" * (-len(out) % 4)

    out = struct.pack("<IIIII", 1, 1, 0x20000, len(names), 0x20004) + struct.pack("<I", len(names))
    for i, (_, stype) in enumerate(names):
        out += struct.pack("<III", 0x20008 + 8 * i, stype, 0x2000C + 8 * i)
    for name, _ in names:
        out += wstr(name) + wstr("remark")
    return out + struct.pack("<III", len(names), 0, 0)


def test_share_enum_stub_round_trip() -> None:
    parsed = dcerpc.parse_share_enum(_share_stub([("public", 0), ("IPC$", 0x80000003)]))
    assert parsed is not None
    shares, werror = parsed
    assert werror == 0
    assert [(s.name, s.kind, s.special) for s in shares] == [
        ("public", "disk", False), ("IPC$", "ipc", True)]


def test_export_list_round_trip() -> None:
    assert sunrpc.parse_exports(sunrpc.build_exports_result(_WORLD)) == _WORLD


def test_truncated_replies_never_raise() -> None:
    stub = _share_stub([("public", 0), ("photos", 0)])
    exports = sunrpc.build_exports_result(_WORLD)
    for cut in range(len(stub)):
        assert dcerpc.parse_share_enum(stub[:cut]) is None
    for cut in range(len(exports)):
        assert sunrpc.parse_exports(exports[:cut]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    ntlmssp.parse_challenge(data)
    ntlmssp.parse_challenge(ntlmssp.SIGNATURE + b"\x02\0\0\0" + data)
    reply = smb2.parse_reply(data)
    framed = smb2.parse_reply(b"\0" + len(data).to_bytes(3, "big") + b"\xfeSMB@\0" + data)
    for r in (reply, framed):
        if r is not None:
            smb2.negotiate_dialect(r)
            smb2.session_setup_result(r)
            smb2.tree_connect_share_type(r)
            smb2.create_file_id(r)
            smb2.read_data(r)
    smb1.parse_negotiate_reply(data)
    smb1.parse_negotiate_reply(b"\0" + len(data).to_bytes(3, "big") + b"\xffSMBr" + data)
    pdu = dcerpc.parse_pdu(data)
    if pdu is not None:
        dcerpc.bind_accepted(pdu)
        dcerpc.response_stub(pdu)
    dcerpc.parse_share_enum(data)
    dcerpc.parse_share_enum(struct.pack("<II", 1, 1) + data)
    sunrpc.parse_reply(data, 1)
    sunrpc.parse_getport(data)
    sunrpc.parse_dump(data)
    sunrpc.parse_exports(data)
    sunrpc.record_complete(data)
