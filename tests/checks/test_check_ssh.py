"""SSH checks against real sshd: one with password login and weak algorithms turned on, one
hardened (keys only, OpenSSH's default algorithms). Plus the pure wire and crypto parts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_crypto as fc
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.checks.probes.ssh import judge_algorithms
from mamori.model import CheckStatus, Confidence
from mamori.protocols import ssh_kex as wire
from mamori.protocols import ssh_transport as crypto

WEAK = ("127.0.66.30", 16430)
HARDENED = ("127.0.66.31", 16431)


@pytest.fixture(scope="module")
def sshds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    work = tmp_path_factory.mktemp("ssh")
    with dm.running_all({
        "weak": lambda: fc.start_sshd(work / "weak", *WEAK, fc.SSHD_WEAK),
        "hardened": lambda: fc.start_sshd(work / "hardened", *HARDENED, fc.SSHD_HARDENED),
    }) as sshds:
        assert not dm.listeners_on_wildcard([d.proc.pid for d in sshds.values()])
        yield


@pytest.mark.daemon
def test_password_authentication_offered(sshds: None) -> None:
    result = run_check("ssh-password-authentication", *WEAK, "ssh")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["password_methods"] == "password"
    assert "publickey" in facts["methods"] and facts["none_accepted"] == "no"
    assert facts["software"].startswith("SSH-2.0-OpenSSH")
    assert "method=none" in (result.evidence.request or "")


@pytest.mark.daemon
def test_keys_only_sshd_passes(sshds: None) -> None:
    result = run_check("ssh-password-authentication", *HARDENED, "ssh")
    assert_passed(result)
    assert result.evidence is not None and result.evidence.facts["methods"] == "publickey"


@pytest.mark.daemon
def test_root_offered_passwords_is_likely_only(sshds: None) -> None:
    result = run_check("ssh-root-login", *WEAK, "ssh")
    assert_finding(result)
    # sshd answers root like anyone else whatever PermitRootLogin says: never "confirmed".
    assert result.confidence is Confidence.LIKELY
    assert result.evidence is not None and result.evidence.facts["user"] == "root"
    assert "cannot be seen from outside" in result.summary
    assert_passed(run_check("ssh-root-login", *HARDENED, "ssh"))


@pytest.mark.daemon
def test_weak_algorithms_named_with_reasons(sshds: None) -> None:
    result = run_check("ssh-weak-algorithms", *WEAK, "ssh")
    assert_finding(result)
    assert result.evidence is not None
    weak = result.evidence.facts["weak"]
    assert "kex diffie-hellman-group1-sha1 (1024-bit-group, sha1)" in weak
    assert "cipher 3des-cbc (64-bit-block, cbc-mode)" in weak
    assert "mac hmac-md5 (md5)" in weak


@pytest.mark.daemon
def test_default_algorithms_pass(sshds: None) -> None:
    result = run_check("ssh-weak-algorithms", *HARDENED, "ssh")
    assert_passed(result)
    assert result.evidence is not None
    # Still offered by OpenSSH's defaults: reported as context, not as a finding.
    assert "hmac-sha1" in result.evidence.facts["legacy"]


def test_nothing_listening_is_not_tested() -> None:
    for check_id in ("ssh-weak-algorithms", "ssh-password-authentication"):
        result = run_check(check_id, "127.0.66.32", 16432, "ssh")
        assert result.status is CheckStatus.NOT_TESTED
        assert "refused" in result.summary


# --- pure parts -------------------------------------------------------------------------------

_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-@.", min_size=1, max_size=20)
_NAMES = st.lists(_NAME, min_size=1, max_size=6).map(tuple)


@given(_NAMES, _NAMES, _NAMES, _NAMES)
def test_kexinit_round_trip(kex: tuple[str, ...], hk: tuple[str, ...], ciphers: tuple[str, ...],
                            macs: tuple[str, ...]) -> None:
    parsed = wire.parse_kexinit(wire.build_kexinit(os.urandom(16), kex, hk, ciphers, macs))
    assert parsed is not None
    assert (parsed.kex, parsed.host_key, parsed.ciphers_c2s, parsed.macs_s2c) == (
        kex, hk, ciphers, macs)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    wire.parse_kexinit(data)
    wire.parse_kexinit(bytes([wire.MSG_KEXINIT]) + data)
    wire.parse_ecdh_reply(bytes([wire.MSG_KEX_ECDH_REPLY]) + data)
    wire.parse_userauth_reply(bytes([wire.MSG_USERAUTH_FAILURE]) + data)
    wire.parse_disconnect(bytes([wire.MSG_DISCONNECT]) + data)
    wire.find_ident(data)
    try:
        wire.split_plain_packet(data)
    except wire.SshError:
        pass


@given(st.integers(min_value=0, max_value=200))
def test_truncated_kexinit_is_none(cut: int) -> None:
    full = wire.build_kexinit(b"c" * 16, ("curve25519-sha256",), ("ssh-ed25519",),
                              ("aes128-ctr",), ("hmac-sha2-256",))
    if cut < len(full):
        assert wire.parse_kexinit(full[:cut]) is None
        packet = wire.frame(full)
        assert wire.split_plain_packet(packet[:cut]) is None or cut >= len(packet)


def test_frame_split_round_trip() -> None:
    for size in range(0, 40):
        payload = bytes(range(size))
        packet = wire.frame(payload, padding=os.urandom(24))
        assert len(packet) % 8 == 0
        got = wire.split_plain_packet(packet + b"rest")
        assert got == (payload, len(packet))


@pytest.mark.parametrize("cipher,mac", [
    ("aes128-gcm@openssh.com", None), ("aes256-gcm@openssh.com", None),
    ("aes128-ctr", "hmac-sha2-256"), ("aes256-ctr", "hmac-sha2-512"),
    ("chacha20-poly1305@openssh.com", None),
])
def test_sealed_packets_open_and_tampering_is_caught(cipher: str, mac: str | None) -> None:
    kex = crypto.KexAgreement("curve25519-sha256")
    peer = crypto.KexAgreement("curve25519-sha256")
    k = kex.shared_secret(peer.public)
    assert k == peer.shared_secret(kex.public)
    keys = crypto.direction_keys(kex, k, b"h" * 32, cipher, mac, client_to_server=True)
    sealer, opener = crypto.PacketSealer(keys, 3), crypto.PacketOpener(keys, 3)
    stream = b"".join(sealer.seal(bytes([n]) * n) for n in (5, 50, 1))
    for n in (5, 50, 1):
        got = opener.open(stream)
        assert got is not None and got[0] == bytes([n]) * n
        stream = stream[got[1]:]
    assert stream == b""
    bad = bytearray(crypto.PacketSealer(keys, 3).seal(b"\x05hello"))
    bad[-1] ^= 1
    with pytest.raises(wire.SshError):
        crypto.PacketOpener(keys, 3).open(bytes(bad))


def test_judge_algorithms_uses_the_table() -> None:
    kexinit = wire.KexInit(("curve25519-sha256", "diffie-hellman-group14-sha1"), ("ssh-rsa",),
                           ("aes128-ctr",), ("arcfour",), ("hmac-sha2-256",), ("hmac-sha1",),
                           ("none",), ("none",))
    fields = judge_algorithms(kexinit)
    assert fields["weak_count"] == "3"
    assert "cipher arcfour (rc4)" in fields["weak"]
    assert "mac hmac-sha1 (sha1)" in fields["legacy"]


def test_ident_with_preamble(tmp_path: Path) -> None:
    found = wire.find_ident(b"hello there\r\nSSH-2.0-OpenSSH_9.2p1 Debian\r\n\x00\x00")
    assert found is not None and found[0] == b"SSH-2.0-OpenSSH_9.2p1 Debian"
