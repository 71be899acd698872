"""Terrapin (CVE-2023-48795) and post-quantum-only key exchange against real SSH servers.

- tinysshd 20230101 (Debian 12): ChaCha20-Poly1305 only and no strict key exchange, so open
  to Terrapin: a real vulnerable server.
- Debian 12's OpenSSH 9.2p1 carries the backported fix: it offers kex-strict-s-v00@openssh.com
  even with ChaCha20 and CBC + EtM turned on, and must stay clean; so must an sshd with the
  catalog's stop-gap lines (ChaCha20 and EtM MACs removed).
- sshd with ``KexAlgorithms sntrup761x25519-sha512@openssh.com`` (or the same without
  ``@openssh.com``) only: the login checks must complete a key exchange and pass or find,
  never "not tested". tinysshd (its own sntrup761 code) completes one too, under
  chacha20-poly1305, its only cipher. (mlkem768x25519-sha256 needs OpenSSH 9.9, which
  Debian 12 lacks: tests/protocols/test_ssh_hybrid_kex.py covers it.)
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator

import pytest

import daemons as dm
import fixtures_crypto as fc
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.checks.observation import CheckOptions
from mamori.checks.probes import ssh
from mamori.checks.probes.ssh import judge_terrapin
from mamori.model import CheckStatus, Confidence
from mamori.net.stream import BoundedStream
from mamori.protocols import ssh_kex as wire
from threaded_server import ThreadedServer

TINY = ("127.0.66.33", 16433)
STRICT = ("127.0.66.34", 16434)
STOPGAP = ("127.0.66.35", 16435)
PQ_PASSWORD = ("127.0.66.36", 16436)
PQ_KEYS = ("127.0.66.37", 16437)
LIAR = ("127.0.21.50", 16450)

SNTRUP_ONLY = "KexAlgorithms sntrup761x25519-sha512@openssh.com\n"
SSHD_TERRAPIN_MODES = (fc.SSHD_HARDENED + "Ciphers chacha20-poly1305@openssh.com,aes128-cbc\n"
                       "MACs hmac-sha2-256-etm@openssh.com\n")
SSHD_STOPGAP = (fc.SSHD_HARDENED + "Ciphers -chacha20-poly1305@openssh.com\n"
                "MACs -*-etm@openssh.com\n")
SSHD_PQ_PASSWORD = fc.SSHD_WEAK.replace("KexAlgorithms +diffie-hellman-group1-sha1\n", "") \
    + SNTRUP_ONLY


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dm.Lab]:
    work = tmp_path_factory.mktemp("ssh-modern")
    with dm.running_lab({
        "tinysshd": lambda: fc.start_tinysshd(work / "tiny", *TINY),
        "strict": lambda: fc.start_sshd(work / "strict", *STRICT, SSHD_TERRAPIN_MODES),
        "stopgap": lambda: fc.start_sshd(work / "stopgap", *STOPGAP, SSHD_STOPGAP),
        "pq-password": lambda: fc.start_sshd(work / "pqp", *PQ_PASSWORD, SSHD_PQ_PASSWORD),
        # The name without @openssh.com (OpenSSH 9.9; Debian 12's 9.2p1 knows it too).
        "pq-keys": lambda: fc.start_sshd(work / "pqk", *PQ_KEYS, fc.SSHD_HARDENED
                                         + "KexAlgorithms sntrup761x25519-sha512\n"),
    }) as lab:
        assert not dm.listeners_on_wildcard([d.proc.pid for d in lab.values()])
        yield lab


# --- Terrapin -----------------------------------------------------------------------------------


@pytest.mark.daemon
def test_terrapin_found_on_tinysshd(lab: dm.Lab) -> None:
    lab.need("tinysshd")
    result = run_check("ssh-terrapin", *TINY, "ssh")
    assert_finding(result)
    # Inferred from the KEXINIT, as ssh-audit does: never "confirmed".
    assert result.confidence is Confidence.LIKELY
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["terrapin_modes"] == "chacha20-poly1305@openssh.com"
    assert facts["strict_kex"] == "no"
    assert facts["software"].startswith("SSH-2.0-tinyssh_")
    assert "CVE-2023-48795" in result.summary and "CVE-2023-48795" in result.references
    assert "kex-strict-s-v00@openssh.com" in result.texts["ja"].summary


@pytest.mark.daemon
def test_strict_kex_sshd_with_the_same_modes_stays_clean(lab: dm.Lab) -> None:
    lab.need("strict")
    result = run_check("ssh-terrapin", *STRICT, "ssh")
    assert_passed(result)
    assert result.evidence is not None
    facts = result.evidence.facts
    # Debian 12's OpenSSH 9.2p1 offers the marker (backported fix), so the modes it offers
    # are not exploitable.
    assert facts["strict_kex"] == "yes"
    assert facts["terrapin_modes"] == (
        "chacha20-poly1305@openssh.com; aes128-cbc with hmac-sha2-256-etm@openssh.com")


@pytest.mark.daemon
def test_stopgap_lines_remove_the_affected_modes(lab: dm.Lab) -> None:
    # The remediation's lines are accepted by sshd (start_sshd runs sshd -t) and leave no
    # affected mode behind.
    lab.need("stopgap")
    result = run_check("ssh-terrapin", *STOPGAP, "ssh")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["terrapin_modes"] == "none"
    assert "etm" not in result.evidence.facts["macs"]


@pytest.mark.parametrize("ciphers,macs,strict,verdict,modes", [
    (("chacha20-poly1305@openssh.com",), ("hmac-sha2-256",), False, "yes",
     "chacha20-poly1305@openssh.com"),
    (("chacha20-poly1305@openssh.com",), ("hmac-sha2-256",), True, "no",
     "chacha20-poly1305@openssh.com"),
    (("aes256-ctr", "aes128-cbc", "rijndael-cbc@lysator.liu.se"),
     ("hmac-sha2-256", "hmac-sha1-etm@openssh.com"), False, "yes",
     "aes128-cbc/rijndael-cbc@lysator.liu.se with hmac-sha1-etm@openssh.com"),
    (("aes128-cbc",), ("hmac-sha2-256",), False, "no", "none"),  # CBC without EtM
    (("aes128-ctr",), ("hmac-sha2-256-etm@openssh.com",), False, "no", "none"),  # CTR + EtM
    (("aes256-gcm@openssh.com",), ("hmac-sha2-256",), False, "no", "none"),
])
def test_judge_terrapin(ciphers: tuple[str, ...], macs: tuple[str, ...], strict: bool,
                        verdict: str, modes: str) -> None:
    kex = ("curve25519-sha256",) + (("kex-strict-s-v00@openssh.com",) if strict else ())
    fields = judge_terrapin(wire.KexInit(kex, ("ssh-ed25519",), ciphers, ciphers, macs, macs,
                                         ("none",), ("none",)))
    assert fields["terrapin"] == verdict
    assert fields["terrapin_modes"] == modes
    assert fields["strict_kex"] == ("yes" if strict else "no")


def test_client_marker_does_not_count() -> None:
    # kex-strict-c-v00 is what a client sends; a server offering only that is not protected.
    kexinit = wire.KexInit(("curve25519-sha256", "kex-strict-c-v00@openssh.com"),
                           ("ssh-ed25519",), ("chacha20-poly1305@openssh.com",),
                           ("chacha20-poly1305@openssh.com",), ("hmac-sha2-256",),
                           ("hmac-sha2-256",), ("none",), ("none",))
    assert judge_terrapin(kexinit)["terrapin"] == "yes"


# --- post-quantum-only key exchange -------------------------------------------------------------


@pytest.mark.daemon
def test_sntrup_only_sshd_is_tested(lab: dm.Lab) -> None:
    lab.need("pq-password")
    # The algorithms are read from the KEXINIT as before (no key exchange needed there).
    assert_finding(run_check("ssh-weak-algorithms", *PQ_PASSWORD, "ssh"))  # 3des, hmac-md5
    result = run_check("ssh-password-authentication", *PQ_PASSWORD, "ssh")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.evidence is not None
    facts = result.evidence.facts
    # We prefer curve25519: picking sntrup761 shows the server offered nothing else.
    assert facts["kex"] == "sntrup761x25519-sha512@openssh.com"
    assert facts["host_key_type"] == "ssh-ed25519"
    assert facts["password_methods"] == "password"
    assert "sntrup761x25519-sha512@openssh.com" in result.evidence.test
    assert run_check("ssh-root-login", *PQ_PASSWORD, "ssh").status is CheckStatus.FINDING


@pytest.mark.daemon
def test_sntrup_only_keys_only_sshd_passes(lab: dm.Lab) -> None:
    lab.need("pq-keys")
    for check_id in ("ssh-password-authentication", "ssh-root-login"):
        result = run_check(check_id, *PQ_KEYS, "ssh")
        assert_passed(result)
        assert result.evidence is not None
        assert result.evidence.facts["methods"] == "publickey"
        assert result.evidence.facts["kex"] == "sntrup761x25519-sha512"


@pytest.mark.daemon
def test_tinysshd_login_checks_run_under_chacha20_poly1305(lab: dm.Lab) -> None:
    # tinysshd offers chacha20-poly1305@openssh.com and nothing else: before it was
    # implemented these were "not tested".
    lab.need("tinysshd")
    result = run_check("ssh-password-authentication", *TINY, "ssh")
    assert_passed(result)
    assert result.evidence is not None and result.evidence.facts["methods"] == "publickey"


@pytest.mark.daemon
def test_sntrup761_key_exchange_with_tinysshd(lab: dm.Lab) -> None:
    """A second, independent sntrup761x25519 server: offering only that method, the
    server's SERVICE_ACCEPT must arrive under the keys both sides derived from it."""
    lab.need("tinysshd")

    async def handshake() -> tuple[str, str, bytes]:
        stream = await BoundedStream.open(*TINY, CheckOptions().limits)
        session = ssh._Session(stream)
        try:
            await session.identify()
            raw, kexinit = await ssh._server_kexinit(session)
            kex, host_key = await ssh.key_exchange(
                session, raw, kexinit, ("sntrup761x25519-sha512@openssh.com",))
            await session.send(wire.build_service_request("ssh-userauth"))
            accept = await session.receive_skipping({wire.MSG_SERVICE_ACCEPT})
        finally:
            await session.stream.close()
        return kex, host_key, accept

    kex, host_key, accept = asyncio.run(handshake())
    assert (kex, host_key) == ("sntrup761x25519-sha512@openssh.com", "ssh-ed25519")
    assert accept == bytes([wire.MSG_SERVICE_ACCEPT]) + wire.string(b"ssh-userauth")


def _lying_sshd(share: bytes) -> ThreadedServer:
    """Offers only sntrup761x25519, answers the client's share with ``share`` and a made-up
    host key and signature, then NEWKEYS and bytes that no key exchange produced."""

    def handle(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-Liar_1.0\r\n" + wire.frame(wire.build_kexinit(
            b"c" * 16, ("sntrup761x25519-sha512@openssh.com",), ("ssh-ed25519",),
            ("aes128-ctr",), ("hmac-sha2-256",))))
        got = b""
        while len(got) < 1158 + 32 and (chunk := conn.recv(4096)):
            got += chunk
        host_key = wire.string(b"ssh-ed25519") + wire.string(b"k" * 32)
        reply = (bytes([wire.MSG_KEX_ECDH_REPLY]) + wire.string(host_key) + wire.string(share)
                 + wire.string(b"signature"))
        conn.sendall(wire.frame(reply) + wire.frame(bytes([wire.MSG_NEWKEYS])) + b"\x5a" * 96)
        conn.recv(4096)

    return ThreadedServer(*LIAR, handle)


@pytest.mark.parametrize("share,why", [
    (b"\x01" * 10, "server share is 10 bytes, not 1071"),
    # Well-sized garbage: our keys are not the server's, so what follows NEWKEYS fails
    # (a length out of range or a MAC that does not verify), never "passed".
    (b"\x01" * (1039 + 32), r"packet length \d+ out of range|packet failed"),
], ids=["short-share", "garbage-share"])
def test_lying_pq_server_is_a_bounded_error(share: bytes, why: str) -> None:
    with _lying_sshd(share):
        result = run_check("ssh-password-authentication", *LIAR, "ssh")
    assert result.status is CheckStatus.NOT_TESTED
    assert re.search(why, result.summary), result.summary
