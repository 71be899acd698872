"""smb-signing-not-required and smb-encryption-unavailable against real smbd: samba's defaults
(signing enabled, not required; AES-GCM offered), encryption switched off, SMB 2.1 at most, and
the hardened twin (signing mandatory, SMB3 only, encryption required). Plus the parser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

import daemons as dm
import fixtures_sharing as fs
from checks_helpers import assert_finding, assert_passed, run_check
from mamori.model import CheckStatus, Confidence, Severity
from mamori.protocols import smb2, smb_security

pytestmark = pytest.mark.daemon

HOSTS = {"default": "127.0.84.21", "no-encryption": "127.0.84.22",
         "signed-encrypted": "127.0.84.23", "smb2-only": "127.0.84.24"}
PORT = 14450
SIGNING, ENCRYPTION = "smb-signing-not-required", "smb-encryption-unavailable"


@pytest.fixture(scope="module")
def sambas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dm.Daemon]]:
    def start(profile: str) -> dm.Daemon:
        return fs.start_samba(tmp_path_factory.mktemp(profile), HOSTS[profile], PORT, profile)

    with dm.running_all({p: (lambda p=p: start(p)) for p in HOSTS}) as started:
        yield started


def test_samba_defaults_do_not_require_signing(sambas: dict[str, dm.Daemon]) -> None:
    result = run_check(SIGNING, HOSTS["default"], PORT, "smb")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    assert result.severity is Severity.MEDIUM
    assert result.evidence is not None
    facts = result.evidence.facts
    assert facts["signing"] == "enabled" and facts["dialect"] == "3.1.1"
    assert facts["preauth"] == "SHA-512"  # the 3.1.1 negotiate contexts were understood
    assert "NEGOTIATE" in result.evidence.test


def test_samba_defaults_offer_encryption(sambas: dict[str, dm.Daemon]) -> None:
    result = run_check(ENCRYPTION, HOSTS["default"], PORT, "smb")
    assert_passed(result)
    assert result.evidence is not None
    assert result.evidence.facts["cipher"].startswith("AES-")


def test_encryption_switched_off_is_a_finding(sambas: dict[str, dm.Daemon]) -> None:
    result = run_check(ENCRYPTION, HOSTS["no-encryption"], PORT, "smb")
    assert_finding(result)
    assert result.severity is Severity.LOW
    assert result.evidence is not None
    assert result.evidence.facts["cipher"] == "none"
    assert "no cipher offered" in result.summary


def test_smb2_only_server_has_no_encryption(sambas: dict[str, dm.Daemon]) -> None:
    result = run_check(ENCRYPTION, HOSTS["smb2-only"], PORT, "smb")
    assert_finding(result)
    assert result.evidence is not None
    assert result.evidence.facts["dialect"] == "2.1"
    assert "SMB 2.1" in result.summary


def test_hardened_samba_is_clean(sambas: dict[str, dm.Daemon]) -> None:
    for check in (SIGNING, ENCRYPTION):
        result = run_check(check, HOSTS["signed-encrypted"], PORT, "smb")
        assert_passed(result)
        assert result.evidence is not None
        assert result.evidence.facts["signing"] == "required"
        assert result.evidence.facts["encryption"] == "yes"


def test_a_non_smb_server_is_not_tested(sambas: dict[str, dm.Daemon]) -> None:
    result = run_check(SIGNING, HOSTS["default"], 1, "smb")  # nothing listens on port 1
    assert result.status is CheckStatus.NOT_TESTED


def _reply(body: bytes) -> smb2.Reply:
    message = b"\xfeSMB" + b"\0" * 60 + body
    return smb2.Reply(smb2.NEGOTIATE, 0, 1, 0, 0, 0, body, message)


def test_parser_reads_security_mode_of_a_2_1_reply() -> None:
    body = (bytes.fromhex("4100") + (3).to_bytes(2, "little") + (0x0210).to_bytes(2, "little")
            + b"\0\0" + b"\0" * 16 + (0x40).to_bytes(4, "little") + b"\0" * 36)
    facts = smb_security.parse_negotiate(_reply(body))
    assert facts is not None
    assert facts.signing_required and facts.dialect == "2.1" and not facts.encryption


def test_request_offers_3_1_1_with_contexts() -> None:
    frame = smb_security.build_negotiate(0, b"g" * 16, b"s" * 32)
    message = frame[4:]
    assert len(message) == int.from_bytes(frame[1:4], "big")
    offset = int.from_bytes(message[64 + 28:64 + 32], "little")
    assert offset % 8 == 0 and message[offset:offset + 2] == b"\x01\x00"  # preauth first
    assert b"\x11\x03" in message[100:112]


@given(st.binary(max_size=300))
def test_parser_never_raises(body: bytes) -> None:
    smb_security.parse_negotiate(_reply(body))
