"""The post-quantum hybrid SSH key exchanges, pure parts: ML-KEM-768 against a published
known answer, the hybrid secret K = HASH(kem_secret || x25519_secret) as a string against
the spec's formula on known inputs, and a server side built from another ML-KEM
implementation (pqcrypto's) agreeing with ours. Real sshd: tests/checks/test_check_ssh_modern.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from mamori.protocols import ssh_kex as wire
from mamori.protocols import ssh_pq
from mamori.protocols import ssh_transport as crypto

KAT = json.loads((Path(__file__).parent.parent / "data" / "mlkem768_kat.json").read_text())

# RFC 7748 6.1: Alice's private key, Bob's public key, and their shared secret.
ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
X25519_SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_mlkem768_known_answer() -> None:
    kem = ssh_pq.MlKem768(bytes.fromhex(KAT["seed"]))
    assert kem.public == bytes.fromhex(KAT["ek"])
    assert kem.decapsulate(bytes.fromhex(KAT["c"])) == bytes.fromhex(KAT["K"])


def test_mlkem768x25519_secret_is_sha256_of_both_as_a_string() -> None:
    kem = ssh_pq.MlKem768(bytes.fromhex(KAT["seed"]))
    alice = x25519.X25519PrivateKey.from_private_bytes(ALICE)
    kex = crypto.KexAgreement("mlkem768x25519-sha256", kem=kem, x25519_key=alice)
    # Q_C = ML-KEM encapsulation key || X25519 public key (draft-ietf-sshm-mlkem-hybrid-kex)
    assert kex.public[:1184] == bytes.fromhex(KAT["ek"]) and len(kex.public) == 1216
    k = kex.shared_secret(bytes.fromhex(KAT["c"]) + BOB_PUBLIC)
    expected = hashlib.sha256(bytes.fromhex(KAT["K"]) + X25519_SHARED).digest()
    assert k == b"\x00\x00\x00\x20" + expected  # a string, never an mpint
    # Key derivation and exchange hash use SHA-256 for this method.
    assert kex.hash(b"abc") == hashlib.sha256(b"abc").digest()


@pytest.mark.parametrize("name,hash_name,ct_size", [
    ("mlkem768x25519-sha256", "sha256", 1088),
    ("sntrup761x25519-sha512", "sha512", 1039),
    ("sntrup761x25519-sha512@openssh.com", "sha512", 1039),
])
def test_hybrid_agrees_with_a_server_side(name: str, hash_name: str, ct_size: int) -> None:
    """The server side: encapsulate with pqcrypto (for ML-KEM another implementation than
    ours), X25519 with a fresh key, K = HASH(kem_secret || x25519_secret)."""
    from pqcrypto.kem import ml_kem_768, sntrup_761

    client = crypto.KexAgreement(name)
    server_kem = ml_kem_768 if name.startswith("mlkem") else sntrup_761
    kem_public, x_public = client.public[:-32], client.public[-32:]
    assert len(kem_public) == server_kem.PUBLIC_KEY_SIZE
    ciphertext, kem_secret = server_kem.encaps(kem_public)
    assert len(ciphertext) == ct_size
    server_x = x25519.X25519PrivateKey.generate()
    x_secret = server_x.exchange(x25519.X25519PublicKey.from_public_bytes(x_public))
    server_share = ciphertext + server_x.public_key().public_bytes_raw()
    expected = hashlib.new(hash_name, kem_secret + x_secret).digest()
    assert client.shared_secret(server_share) == wire.string(expected)


@pytest.mark.parametrize("name", ["mlkem768x25519-sha256", "sntrup761x25519-sha512"])
def test_hybrid_share_of_the_wrong_size_is_an_error(name: str) -> None:
    client = crypto.KexAgreement(name)
    for size in (0, 32, 1071 if name.startswith("mlkem") else 1120, 5000):
        with pytest.raises(wire.SshError):
            client.shared_secret(b"\x01" * size)


def test_hybrid_reply_fits_the_parser() -> None:
    share = b"\x02" * (1088 + 32)
    payload = (bytes([wire.MSG_KEX_ECDH_REPLY]) + wire.string(wire.string(b"ssh-ed25519")
               + wire.string(b"k" * 32)) + wire.string(share) + wire.string(b"sig"))
    reply = wire.parse_ecdh_reply(payload)
    assert reply is not None and reply.server_public == share
    assert reply.host_key_type == "ssh-ed25519"


def test_hybrids_are_offered_when_installed() -> None:
    offered = crypto.usable_kex_algorithms()
    assert offered[0] == "curve25519-sha256"  # classical first: cheapest
    for name in crypto.HYBRID_KEX:
        assert name in offered
